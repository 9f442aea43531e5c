#!/usr/bin/python3
"""The takeover's backup of a host set up by hand, and the way back from it (roles/takeover, docs/takeover.md).

    backup.py make DIR --paths P... [--databases D...] [--redis-port N] [--user U] [--bundle-paths B...]
    backup.py restore DIR
    backup.py verify DIR

`make` writes into DIR (root only, 0700): files.tar (every path named, with owners, modes, ACLs and extended
attributes), redis.rdb (a dump taken by Redis itself), one pg_dump per database and the cluster's roles
(globals.sql), and manifest.json: each file's SHA-256, each folder's entries, the units enabled, the app user's
shell, and which of the bundle's own paths did not exist yet. `restore` puts all of it back as it was: the
files (and nothing more inside the folders it held), the bundle's own paths removed, the data of Redis and
PostgreSQL, the units enabled and started again. `verify` compares the host with the manifest and prints what
differs; both exit 1 when anything does.

Standard library only, as root, on the host itself: GNU tar for what Python's tarfile cannot keep (ACLs,
extended attributes), and the servers' own tools for their data.
"""

import argparse
import datetime
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys

MANIFEST = "manifest.json"
ARCHIVE = "files.tar"
REDIS_DUMP = "redis.rdb"
GLOBALS = "globals.sql"


class Failed(Exception):
    """One line for the operator: what failed, and where."""


def run(argv, **options):
    done = subprocess.run(argv, capture_output=True, text=True, **options)
    if done.returncode != 0:
        raise Failed(f"{' '.join(argv[:4])}: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout


def redis_auth(conf="/etc/redis/redis.conf"):
    """The environment redis-cli signs in with where redis.conf sets a requirepass (as survey.py reads it), else
    None: the password never goes on a command line."""
    try:
        with open(conf, errors="replace") as handle:
            match = re.search(r"^[ \t]*requirepass[ \t]+(.+?)[ \t]*$", handle.read(), re.M)
    except OSError:
        return None
    return {**os.environ, "REDISCLI_AUTH": match[1].strip("\"'")} if match else None


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inventory(paths):
    """{path: what it is} for every path and everything under it: a file's owner, mode and SHA-256, a folder's
    owner and mode, a link's target. Sockets and pipes are left out (a running server makes them again)."""
    found = {}

    def note(path):
        info = os.lstat(path)
        owner = f"{info.st_uid}:{info.st_gid} {stat.S_IMODE(info.st_mode):o}"
        if stat.S_ISLNK(info.st_mode):
            found[path] = f"link {os.readlink(path)}"
        elif stat.S_ISDIR(info.st_mode):
            found[path] = f"dir {owner}"
        elif stat.S_ISREG(info.st_mode):
            found[path] = f"file {owner} {sha256(path)}"

    for top in paths:
        if not os.path.lexists(top):
            continue
        note(top)
        if os.path.isdir(top) and not os.path.islink(top):
            for folder, dirs, files in os.walk(top):
                for name in dirs + files:
                    note(os.path.join(folder, name))
    return found


def outermost(paths):
    """The paths without those inside another of them: tar would store such a file twice, the second time as a
    hard link to itself, which it then cannot extract."""
    kept = []
    for path in sorted({os.path.normpath(path) for path in paths}):
        if not any(path.startswith(top.rstrip("/") + "/") for top in kept):
            kept.append(path)
    return kept


def enabled_units():
    out = subprocess.run(
        ["systemctl", "list-unit-files", "--state=enabled", "--no-legend", "--plain"], capture_output=True, text=True
    ).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def as_postgres(argv, **options):
    return run(["runuser", "-u", "postgres", "--", *argv], **options)


def piped(argv, stdin=None, stdout=None):
    """A program reading or writing a file of root's (a dump), its errors one line."""
    done = subprocess.run(argv, stdin=stdin, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)
    if done.returncode != 0:
        raise Failed(f"{' '.join(argv[:6])}: {done.stderr.decode(errors='replace').strip()[-300:]}")


def make(folder, paths, databases, redis_port, user, bundle_paths):
    os.makedirs(folder, mode=0o700, exist_ok=False)
    paths = outermost(path for path in paths if os.path.lexists(path))
    manifest = {
        "made": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": os.uname().nodename,
        "paths": paths,
        "files": inventory(paths),
        "absent": sorted(path for path in bundle_paths if not os.path.lexists(path)),
        "enabled_units": enabled_units(),
        "user": None,
        "redis": None,
        "databases": [],
    }
    if paths:
        run(["tar", "--create", "--acls", "--xattrs", "--numeric-owner", "-f", os.path.join(folder, ARCHIVE),
             "-C", "/", *(path.lstrip("/") for path in paths)])  # fmt: skip
    try:
        entry = pwd.getpwnam(user)
        manifest["user"] = {"name": user, "shell": entry.pw_shell}
    except KeyError:
        pass
    if redis_port:
        dump = os.path.join(folder, REDIS_DUMP)
        run(["redis-cli", "-p", str(redis_port), "--no-auth-warning", "--rdb", dump], timeout=300, env=redis_auth())
        manifest["redis"] = {"port": redis_port, "dump": REDIS_DUMP, "sha256": sha256(dump)}
    for name in databases:
        target = os.path.join(folder, f"db-{name}.dump")
        with open(target, "wb") as handle:  # written by root: postgres cannot reach into the backup's folder
            piped(["runuser", "-u", "postgres", "--", "pg_dump", "--format=custom", name], stdout=handle)
        manifest["databases"].append({"name": name, "dump": os.path.basename(target), "sha256": sha256(target)})
    if databases:
        with open(os.path.join(folder, GLOBALS), "w") as handle:
            handle.write(as_postgres(["pg_dumpall", "--globals-only"], timeout=300))
    with open(os.path.join(folder, MANIFEST), "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
    os.chmod(os.path.join(folder, MANIFEST), 0o600)
    return manifest


def load(folder):
    try:
        with open(os.path.join(folder, MANIFEST)) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise Failed(f"{folder} holds no readable {MANIFEST}: {exc}") from None


def differences(manifest):
    """What on the host differs from the manifest: each a line."""
    now = inventory(manifest["paths"])
    lines = []
    for path, was in sorted(manifest["files"].items()):
        if path not in now:
            lines.append(f"missing: {path}")
        elif now[path] != was:
            lines.append(f"changed: {path} (was {was}, is {now[path]})")
    lines += [f"added: {path}" for path in sorted(set(now) - set(manifest["files"]))]
    lines += [f"still there: {path}" for path in manifest["absent"] if os.path.lexists(path)]
    return lines


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def systemctl(*args):
    subprocess.run(["systemctl", *args], capture_output=True, text=True)


def restore(folder):
    manifest = load(folder)
    # What the bundle runs stops first: its units are among the paths it made (absent before).
    units = [os.path.basename(p) for p in manifest["absent"] if p.startswith("/etc/systemd/system/")]
    units = [unit for unit in units if unit.endswith((".service", ".timer"))]
    for unit in units:
        systemctl("disable", "--now", unit)
    for path in manifest["absent"]:
        remove(path)
    # Inside the folders it held, nothing more than it held; then the files themselves, owners and all.
    now = inventory(manifest["paths"])
    for path in sorted(set(now) - set(manifest["files"]), key=len, reverse=True):
        remove(path)
    if manifest["paths"]:
        run(["tar", "--extract", "--acls", "--xattrs", "--numeric-owner", "--same-owner", "--same-permissions",
             "--overwrite", "--recursive-unlink", "-f", os.path.join(folder, ARCHIVE), "-C", "/"])  # fmt: skip
    if manifest["user"]:
        run(["usermod", "--shell", manifest["user"]["shell"], manifest["user"]["name"]])
    systemctl("daemon-reload")
    if manifest["redis"]:
        restore_redis(folder, manifest["redis"])
    for database in manifest["databases"]:
        restore_database(folder, database)
    if manifest["databases"]:
        # The roles as they were, passwords included; CREATE ROLE of an existing role fails harmlessly.
        with open(os.path.join(folder, GLOBALS), "rb") as handle:
            subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-d", "postgres"], stdin=handle,
                           capture_output=True, timeout=300)  # fmt: skip
    # The units restored from the archive run their own processes again (the hand-made gunicorn), those enabled
    # before are enabled again, and nginx reads its sites as they were.
    enabled = set(manifest["enabled_units"])
    for unit in sorted(enabled - set(enabled_units())):
        systemctl("enable", unit)
    restored = {os.path.basename(p) for p in manifest["files"] if p.startswith("/etc/systemd/system/")}
    for unit in sorted(u for u in restored if u.endswith(".service") and u in enabled):
        systemctl("restart", unit)
    if shutil.which("nginx"):
        systemctl("reload-or-restart", "nginx")
    return differences(manifest)


def restore_redis(folder, redis):
    dump = os.path.join(folder, redis["dump"])
    if sha256(dump) != redis["sha256"]:
        raise Failed(f"{dump} is not the dump the backup took (its SHA-256 differs)")
    systemctl("stop", "redis-server")
    target = "/var/lib/redis/dump.rdb"
    shutil.copyfile(dump, target)
    shutil.chown(target, "redis", "redis")
    os.chmod(target, 0o660)
    aof = "/var/lib/redis/appendonlydir"
    if os.path.isdir(aof):
        shutil.rmtree(aof)  # the restored redis.conf says whether it keeps one; the dump is the data
    systemctl("start", "redis-server")


def restore_database(folder, database):
    dump = os.path.join(folder, database["dump"])
    if sha256(dump) != database["sha256"]:
        raise Failed(f"{dump} is not the dump the backup took (its SHA-256 differs)")
    name = database["name"]
    as_postgres(["psql", "-X", "-q", "-d", "postgres", "-c",
                 f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"])  # fmt: skip
    as_postgres(["dropdb", "--if-exists", name])
    with open(dump, "rb") as handle:
        piped(
            ["runuser", "-u", "postgres", "--", "pg_restore", "--create", "--exit-on-error", "-d", "postgres"], handle
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("make")
    made.add_argument("folder")
    made.add_argument("--paths", nargs="*", default=[])
    made.add_argument("--databases", nargs="*", default=[])
    made.add_argument("--redis-port", type=int, default=0)
    made.add_argument("--user", default="nur")
    made.add_argument("--bundle-paths", nargs="*", default=[])
    for name in ("restore", "verify"):
        commands.add_parser(name).add_argument("folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "make":
            manifest = make(args.folder, args.paths, args.databases, args.redis_port, args.user, args.bundle_paths)
            print(json.dumps({"folder": args.folder, "files": len(manifest["files"]), "made": manifest["made"]}))
            return 0
        lines = restore(args.folder) if args.command == "restore" else differences(load(args.folder))
    except Failed as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines) if lines else "the host is as the backup found it")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
