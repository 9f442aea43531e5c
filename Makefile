# The README's commands. Each target installs what it needs first (scripts/setup.sh).
# molecule needs the virtualenv's tools on PATH.
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_LINT_SKIP_SCHEMA_UPDATE := 1

.PHONY: setup demo test lint test-app test-molecule

setup:
	bash scripts/setup.sh

# Deploy the whole stack into a local container and print how to connect.
demo: setup
	bash scripts/demo.sh

# Every test: lints, the app's suites, then molecule's full sequence on a fresh container.
test: lint test-app test-molecule

lint: setup
	ruff check app tools molecule
	ruff format --check app tools molecule
	yamllint --strict .
	ansible-lint --offline

test-app: setup
	cd app && python -m pytest

test-molecule: setup
	bash scripts/container-host.sh up
	molecule test
