"""Bad input to the deployment fails before anything changes: a mistyped variable, and the
committed placeholder secrets of inventory/prod (refused before its host is even contacted)."""

import json
import subprocess

import pytest
from conftest import playbook


def test_a_mistyped_variable_fails_in_preflight_naming_it(inventory):
    returncode, output = playbook("-i", inventory, "-e", "asgi_workers=three")
    assert returncode != 0
    assert "argument 'asgi_workers' is of type str" in output
    assert "ok=0 changed=0" in output, output[-1500:]


def test_production_placeholders_fail_loudly_without_touching_the_host():
    returncode, output = playbook("-i", "inventory/prod")
    assert returncode != 0
    assert "app_secret_key still holds the committed placeholder" in output, output[-1500:]
    assert "Gathering" not in output and "UNREACHABLE" not in output


def test_an_empty_redis_password_fails_in_preflight(inventory):
    returncode, output = playbook("-i", inventory, "-e", '{"redis_password": ""}')
    assert returncode != 0
    assert "redis_password is empty" in output and "changed=0" in output, output[-1500:]


def test_keeping_fewer_than_two_releases_fails_in_preflight(inventory):
    """A rollback goes back to the release before the current one: it must be kept."""
    returncode, output = playbook("-i", inventory, "-e", '{"app_releases_kept": 1}')
    assert returncode != 0
    assert "app_releases_kept is 1: keep at least 2 releases" in output and "changed=0" in output, output[-1500:]


def test_a_git_deploy_must_pin_a_commit(inventory):
    """A branch or tag moves under a deploy; a commit does not."""
    returncode, output = playbook("-i", inventory, "-e", '{"app_git_repo": "https://example.org/nurcrm.git"}')
    assert returncode != 0
    assert "app_git_version must be a full commit id" in output and "changed=0" in output, output[-1500:]


def monitored(inventory):
    listed = json.loads(subprocess.run(["ansible-inventory", "-i", inventory, "--list"], capture_output=True,
                                       check=True).stdout)  # fmt: skip
    return bool(listed.get("monitoring", {}).get("hosts"))


@pytest.mark.parametrize(
    ("variables", "said"),
    [
        ({"monitoring_webhook_url": ""}, "a monitoring host needs a receiver for its alerts"),
        ({"redis_monitor_password": ""}, "redis_monitor_password (the exporter's Redis user"),
    ],
)
def test_monitoring_without_its_receiver_or_exporter_password_fails_in_preflight(inventory, variables, said):
    if not monitored(inventory):
        pytest.skip("this inventory has no monitoring group")
    returncode, output = playbook("-i", inventory, "-e", json.dumps(variables))
    assert returncode != 0
    assert said in output and "changed=0" in output, output[-1500:]
