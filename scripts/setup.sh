#!/usr/bin/env bash
# Install what this project needs on a fresh Debian 12 machine (run as root):
# Debian packages, then one virtualenv (.venv) with the pinned Python requirements, then promtool and amtool.
# Safe to rerun: it skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server for the app's suites; pebble (an ACME test server) and an SSH client for molecule/production.
APT_PACKAGES=(redis-server pebble openssh-client)

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -q
  apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
fi

# Reinstall only when a requirements file changed since the last install.
stamp=".venv/.requirements-$(cat requirements.txt app/requirements*.txt pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  echo "setup: installing Python requirements into .venv"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  # The app's lock last, hash-checked, as the deploy installs it: its pins win over what the tools
  # above pulled in, and pip check says if a tool can no longer live with them.
  .venv/bin/pip install -q --require-hashes -r app/requirements.txt
  .venv/bin/pip check
  # The doctor's console command, nurcrm-doctor (pyproject.toml).
  .venv/bin/pip install -q -e .
  rm -f .venv/.requirements-*
  touch "$stamp"
fi
# The bundle's own packages (nurcrm_ops, nurcrm_realtime) on the virtualenv's path, as the app role puts them
# in every release's (a .pth): app/'s manage.py, tests and local stacks import them from the checkout.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
[[ "$(cat "$site/nurcrm_bundle.pth" 2>/dev/null)" == "$PWD/roles/app/files" ]] || echo "$PWD/roles/app/files" > "$site/nurcrm_bundle.pth"
# promtool and amtool (Debian's prometheus and prometheus-alertmanager) for the alert rules' tests, taken out of
# the packages rather than installed, so this machine does not start a Prometheus of its own.
if [[ ! -x .venv/bin/promtool || ! -x .venv/bin/amtool ]]; then
  echo "setup: extracting promtool and amtool into .venv/bin"
  mkdir -p .cache/debs
  (cd .cache/debs && { apt-get download -q prometheus prometheus-alertmanager \
    || { apt-get -o DPkg::Lock::Timeout=300 update -q && apt-get download -q prometheus prometheus-alertmanager; }; })
  unpacked=$(mktemp -d)
  for deb in .cache/debs/prometheus_*.deb .cache/debs/prometheus-alertmanager_*.deb; do
    dpkg-deb -x "$deb" "$unpacked"
  done
  install -m 0755 "$unpacked/usr/bin/promtool" "$unpacked/usr/bin/amtool" .venv/bin/
  rm -rf "$unpacked"
fi
echo "setup: ready (.venv)"
