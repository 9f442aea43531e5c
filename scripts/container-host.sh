#!/usr/bin/env bash
# Prepare this machine to run molecule's docker scenarios (see /work/shared/containers.md).
#
#   scripts/container-host.sh [up]    install packages, start dockerd, build the base image (default)
#   scripts/container-host.sh engine  install packages, start dockerd only
#   scripts/container-host.sh image   print the image tag the recipe hashes to (no side effects)
#
# Idempotent: re-running skips whatever is already in place. Must run as root.
set -euo pipefail

# --- settings (IMAGE_* values are part of the image recipe and so of its cache hash) -------------
IMAGE_REPO=local/debian12-systemd
IMAGE_SUITE=bookworm
IMAGE_MIRROR=http://deb.debian.org/debian
# python3 + python3-apt: ansible modules (apt needs python3-apt); sudo: become; systemd: PID 1;
# iproute2/procps: facts and testinfra; ca-certificates: HTTPS (bundle is mounted over by molecule);
# dbus: systemctl talks to systemd through it for some operations.
IMAGE_PACKAGES=systemd,systemd-sysv,python3,python3-apt,sudo,iproute2,procps,ca-certificates,dbus
DOCKERD_LOG=/var/log/nurcrm-dockerd.log
DOCKERD_WAIT=60   # seconds to wait for the engine to answer

log() { printf '[container-host] %s\n' "$*"; }
die() { printf '[container-host] ERROR: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $(id -u) -eq 0 ]] || die "run as root (apt-get, dockerd and debootstrap need it)"; }

# --- packages ----------------------------------------------------------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

ensure_packages() {
    local missing=() p
    for p in docker.io debootstrap; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "packages: docker.io and debootstrap already installed"
        return
    fi
    log "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Update once; a stale or empty package list makes the install fail on a fresh machine.
    # A third-party source that is unreachable only warns; Debian's own lists are what we need.
    apt-get update -qq || log "packages: apt-get update reported errors, trying the install anyway"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- engine ------------------------------------------------------------------------------------
ensure_engine() {
    if docker info >/dev/null 2>&1; then
        log "engine: docker already answers"
        return
    fi
    local dockerd
    dockerd=$(command -v dockerd || true)
    [[ -n $dockerd ]] || die "dockerd not found (is docker.io installed?)"
    log "engine: starting $dockerd (no bridge, no iptables), log in $DOCKERD_LOG"
    # --bridge=none/--iptables=false: no 172.17/16 bridge, no NAT rules; containers use host network.
    # setsid+nohup: the daemon outlives this script and the shell that ran it.
    setsid nohup "$dockerd" --bridge=none --iptables=false --ip6tables=false \
        >>"$DOCKERD_LOG" 2>&1 </dev/null &
    local waited=0
    until docker info >/dev/null 2>&1; do
        if ((waited >= DOCKERD_WAIT)); then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "engine: docker did not answer within ${DOCKERD_WAIT}s (see $DOCKERD_LOG)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "engine: docker answers after ${waited}s"
}

# --- base image --------------------------------------------------------------------------------
# Unmount whatever debootstrap left mounted under a rootfs (proc/sys when interrupted), then remove it.
remove_rootfs() {
    local root=$1 m
    awk -v r="$root/" 'index($2 "/", r) == 1 {print $2}' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$root"
}

ROOTFS=""
cleanup_rootfs() {
    [[ -n $ROOTFS && -d $ROOTFS ]] && remove_rootfs "$ROOTFS"
    ROOTFS=""
}

# The image recipe: everything that shapes the image. Its text is hashed into the tag, so editing
# this function or the IMAGE_* settings gives a new tag and a rebuild; nothing else does.
build_rootfs() {
    local root=$1
    debootstrap --variant=minbase --include="$IMAGE_PACKAGES" \
        "$IMAGE_SUITE" "$root" "$IMAGE_MIRROR" >/dev/null
    # Same suites as the host so converge gets security fixes (apt is plain HTTP, works as is).
    cat >"$root/etc/apt/sources.list" <<EOF
deb $IMAGE_MIRROR $IMAGE_SUITE main
deb $IMAGE_MIRROR $IMAGE_SUITE-updates main
deb ${IMAGE_MIRROR}-security $IMAGE_SUITE-security main
EOF
    # Smaller image: no downloaded .debs, no package lists (converge runs apt update anyway).
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
    # ansible's apt cache_valid_time judges freshness by this directory's mtime: make it look
    # ancient, else `update_cache: true, cache_valid_time: N` skips the update and finds no package.
    touch -d @0 "$root/var/lib/apt/lists"
    # Each container must get its own machine id: systemd makes one at boot when the file is empty.
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
}

image_hash() {
    { declare -f build_rootfs; echo "$IMAGE_REPO $IMAGE_SUITE $IMAGE_MIRROR $IMAGE_PACKAGES"; echo 'CMD ["/lib/systemd/systemd"]'; } |
        sha256sum | cut -c1-12
}

# Drop tags of older recipes so rebuilt images don't pile up (an image still used by a container
# stays: docker refuses, and we ignore that).
prune_old_images() {
    local keep=$1 t
    for t in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$IMAGE_REPO"); do
        [[ $t == "$keep" || $t == "$IMAGE_REPO:latest" ]] && continue
        log "image: removing old $t"
        docker image rm "$t" >/dev/null 2>&1 || true
    done
}

ensure_image() {
    local tag
    tag="$IMAGE_REPO:$(image_hash)"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        log "image: $tag already built"
        docker tag "$tag" "$IMAGE_REPO:latest"   # cheap; keeps :latest on the current recipe
        prune_old_images "$tag"
        return
    fi
    # Leftovers of a build killed hard (SIGKILL, power loss) long ago.
    local stale
    while read -r stale; do
        log "image: removing stale $stale"
        remove_rootfs "$stale"
    done < <(find /var/tmp -maxdepth 1 -name 'nurcrm-rootfs.*' -mmin +60)
    ROOTFS=$(mktemp -d /var/tmp/nurcrm-rootfs.XXXXXX)
    # Remove the rootfs on any exit, INT/TERM included. (debootstrap itself rides out a Ctrl-C
    # and finishes; a TERM stops it and the rootfs goes.)
    trap cleanup_rootfs EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local t0=$SECONDS
    log "image: debootstrap $IMAGE_SUITE ($IMAGE_PACKAGES) into $ROOTFS"
    build_rootfs "$ROOTFS"
    log "image: importing as $tag (debootstrap took $((SECONDS - t0))s)"
    # No registry here: docker import a tarball of the rootfs; CMD boots systemd as PID 1.
    tar -C "$ROOTFS" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - "$tag" >/dev/null
    docker tag "$tag" "$IMAGE_REPO:latest"
    cleanup_rootfs
    trap - EXIT INT TERM
    log "image: $tag and $IMAGE_REPO:latest ready in $((SECONDS - t0))s"
    prune_old_images "$tag"
}

main() {
    local cmd=${1:-up}
    case $cmd in
    up)
        need_root
        ensure_packages
        ensure_engine
        ensure_image
        ;;
    engine)
        need_root
        ensure_packages
        ensure_engine
        ;;
    image)
        echo "$IMAGE_REPO:$(image_hash)"
        ;;
    -h | --help | help)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        die "unknown subcommand '$cmd' (use: up | engine | image)"
        ;;
    esac
}

main "$@"
