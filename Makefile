# The README's commands. Each target installs what it needs first (scripts/setup.sh).
# molecule needs the virtualenv's tools on PATH.
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_LINT_SKIP_SCHEMA_UPDATE := 1

.PHONY: setup demo test lint test-app test-molecule test-faults doctor

setup:
	bash scripts/setup.sh

# Deploy the whole stack into a local container and print how to connect.
demo: setup
	bash scripts/demo.sh

# The doctor against the local stack (make demo first); for production:
#   .venv/bin/nurcrm-doctor -i inventory/prod
doctor: setup
	nurcrm-doctor -i inventory/local

# Every test: lints, the app's suites, then molecule: the checklist (default scenario) and
# the doctor's fault scenario, each on a fresh container (one at a time: they share ports).
test: lint test-app test-molecule test-faults

lint: setup
	ruff check app tools molecule doctor
	ruff format --check app tools molecule doctor
	yamllint --strict .
	ansible-lint --offline

test-app: setup
	cd app && python -m pytest

test-molecule: setup
	bash scripts/container-host.sh up
	molecule test

test-faults: setup
	bash scripts/container-host.sh up
	molecule test -s faults
