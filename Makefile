# The README's commands. Each target installs what it needs first (scripts/setup.sh).
.PHONY: setup test lint test-app

setup:
	bash scripts/setup.sh

# Every test: lints, then the app's suites.
test: lint test-app

lint: setup
	.venv/bin/ruff check app tools
	.venv/bin/ruff format --check app tools

test-app: setup
	cd app && ../.venv/bin/python -m pytest
