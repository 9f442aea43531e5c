#!/usr/bin/env bash
# `make test`, after the lints: every suite and scenario of the Makefile, in its order, with one overlap. First,
# alone: the benchmark's suite (its smoke test against a local stack reaches loopback's web ports, where the
# default scenario's container listens) and the app's tests marked slow (real gunicorn workers, whose pace a
# loaded machine changes: a rebalance test failed beside a converge). The other suites that need no container
# (the app's other tests, make test-roles test-doctor) run beside the default scenario's create, converge and
# idempotence, where neither side asserts a time, and the default scenario's tests start only once they have
# passed. The scenarios then run one at a time: they share this machine's network.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

make --no-print-directory test-bench
(cd app && python -m pytest -m slow)

mkdir -p .cache
suites_log=.cache/test-suites.log
{ (cd app && python -m pytest -m "not slow") && make --no-print-directory test-roles test-doctor; } >"$suites_log" 2>&1 &
suites=$!
# Stopped with this script, whichever way it ends.
trap 'kill "$suites" 2>/dev/null || true' EXIT

# molecule test's sequence for the default scenario (molecule/default/molecule.yml), split at its tests.
bash scripts/container-host.sh up
molecule destroy
molecule syntax
molecule create
molecule converge
molecule idempotence

suites_status=0
wait "$suites" || suites_status=$?
cat "$suites_log"
if ((suites_status != 0)); then
    echo "make test: the suites without containers failed (above)" >&2
    molecule destroy
    exit 1
fi

molecule verify
molecule destroy

make --no-print-directory test-handbuilt test-project test-production test-cluster
