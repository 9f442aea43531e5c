"""--check --diff on the converged host, as the deploy user through sudo over SSH: it would change nothing
(the standard: a converged host's check run is clean). The production scenario's: it stands for its
idempotence step too, since a check run reports `changed` for whatever a real second run would change. The
default and project scenarios run molecule's idempotence step, and the cluster's second site.yml
(molecule/cluster/tests/test_6_rolling.py) changes nothing but the release."""

import pytest
from conftest import SCENARIO, playbook

from tools.fixtures import changed_tasks, recap

pytestmark = pytest.mark.skipif(SCENARIO != "production", reason="molecule/production's own")


def test_check_diff_on_the_converged_host_would_change_nothing(inventory):
    rc, output = playbook("-i", inventory, "--check", "--diff")
    assert rc == 0, output[-2000:]
    hosts = recap(output)
    assert hosts, output[-2000:]
    unsettled = {host: changed_tasks(output, host) for host, counts in hosts.items() if counts["changed"]}
    assert not unsettled, f"--check --diff on a converged host would change: {unsettled}"
