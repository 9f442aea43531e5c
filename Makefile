# The README's commands. Each target installs what it needs first (scripts/setup.sh).
# molecule needs the virtualenv's tools on PATH.
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_LINT_SKIP_SCHEMA_UPDATE := 1

.PHONY: setup demo test lint test-app test-roles test-doctor test-bench test-molecule test-handbuilt test-project test-production test-cluster doctor

setup:
	bash scripts/setup.sh

# Deploy the whole stack into a local container and print how to connect.
demo: setup
	bash scripts/demo.sh

# The doctor against the local stack (make demo first); for production:
#   .venv/bin/nurcrm-doctor -i inventory/prod
doctor: setup
	nurcrm-doctor -i inventory/local

# Every test: lints, the app's, the roles', the doctor's and the benchmark's suites, then molecule: the checklist
# (default scenario), the hand-built server, the CRM's own project, the production path and the cluster, each on
# fresh containers (one scenario at a time: they share this machine's network). scripts/test.sh runs the suites
# without containers (but the benchmark's) beside the default scenario's converge, and its tests once they pass.
test: lint
	bash scripts/test.sh

lint: setup
	ruff check app tools molecule doctor bench tests roles/app/files roles/takeover/files playbooks/library playbooks/filter_plugins
	ruff format --check app tools molecule doctor bench tests roles/app/files roles/takeover/files playbooks/library playbooks/filter_plugins
	yamllint --strict .
	ansible-lint --offline

test-app: setup
	cd app && python -m pytest

# The roles read as files: shell values quoted, each value declared once (defaults, not the argument specs); the
# alert rules through promtool (check and unit tests) and the Alertmanager configuration through amtool.
test-roles: setup
	python -m pytest tests -p no:cacheprovider -o asyncio_default_fixture_loop_scope=function

# The doctor's checks, parsers and command against hand-made facts: no container, seconds.
test-doctor: setup
	python -m pytest doctor/tests -p no:cacheprovider -o asyncio_default_fixture_loop_scope=function

# The benchmark's own logic, and its smoke mode against a local stack (the container's smoke run is
# molecule/default/tests/test_7_benchmark_smoke.py).
test-bench: setup
	python -m pytest bench/tests -p no:cacheprovider -o asyncio_default_fixture_loop_scope=function

test-molecule: setup
	bash scripts/container-host.sh up
	molecule test

# A server set up by hand as the production note's (not by this bundle; molecule/handbuilt): healthy by the
# note's acceptance list, and the doctor's walk of it, healthy and with each of the note's faults, changing nothing.
test-handbuilt: setup
	bash scripts/container-host.sh up
	molecule test -s handbuilt

# A Django project that is not app/ (molecule/projects/crm), deployed from a private git repository over SSH by
# the variables of docs/project.md alone: the checklist, its own endpoint, page, uploads and cache, and the doctor.
test-project: setup
	bash scripts/container-host.sh up
	molecule test -s project

# The production path: bootstrap over SSH as root once, then deploy as the deploy user with sudo, a
# certificate from a real ACME server (Pebble), and the checklist tests (molecule/production).
test-production: setup
	bash scripts/container-host.sh up
	molecule test -s production

# Scale-out and high availability: one web host, two app hosts, three Redis hosts under Sentinel and one
# database host, seven containers on their own loopback addresses (molecule/cluster): fan-out across app
# hosts, the Redis master stopped, an app host lost, Sentinels lost, and the doctor naming each broken host.
test-cluster: setup
	bash scripts/container-host.sh up
	molecule test -s cluster

# The benchmark (bench/README.md): brings up or reuses the container stack (molecule converge), measures
# fan-out against the floor, the connect burst, idle memory, and a deploy and a rollback under 300 open
# screens (bench/rolling.py) into bench/results/, then writes bench/REPORT.md and bench/report.png. About 25 minutes.
# Deploy timings destroy the container, so they
# run only by hand: `python -m bench deploy --results bench/results`.
.PHONY: bench bench-smoke bench-cluster
bench: setup
	python -m bench all --results bench/results

# The benchmark on molecule/cluster (issue 14): brings up or reuses the cluster (molecule converge -s cluster;
# one scenario at a time on this machine), measures fan-out through the web host to both app hosts against
# the floor, the app hosts' socket deliveries per CPU-second, and the rolling deploy and rollback under 300 open
# screens, then rewrites bench/REPORT.md (its Cluster and Deploys under load sections). About 15 minutes.
bench-cluster: setup
	python -m bench all --target cluster --results bench/results

# The benchmark's smoke mode against the running container stack (after `make demo` or `molecule converge`):
# 50 clients, every event delivered once and well-formed, a burst of 50 without an error; never speed.
bench-smoke: setup
	python -m bench smoke
