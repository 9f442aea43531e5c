"""Bad input to the deployment fails before anything changes: a mistyped variable, and the
committed placeholder secrets of inventory/prod (refused before its host is even contacted)."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def playbook(*args):
    return subprocess.run(["ansible-playbook", "site.yml", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def inventory(pytestconfig):
    return str(Path(pytestconfig.option.ansible_inventory).resolve())


def test_a_mistyped_variable_fails_in_preflight_naming_it(inventory):
    run = playbook("-i", inventory, "-e", "asgi_workers=three")
    assert run.returncode != 0
    assert "argument 'asgi_workers' is of type str" in run.stdout + run.stderr
    assert "changed=0" in run.stdout and "ok=0" in run.stdout, run.stdout[-1500:]


def test_production_placeholders_fail_loudly_without_touching_the_host():
    run = playbook("-i", "inventory/prod")
    assert run.returncode != 0
    assert "app_secret_key still holds the committed placeholder" in run.stdout
    assert "Gathering" not in run.stdout and "UNREACHABLE" not in run.stdout
