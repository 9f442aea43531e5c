"""What the molecule scenarios' tests share, written once: the bundle's root, the demo tenant, the doctor's
console command, the fixtures `inventory` and `site`, and the helpers several scenarios call.

Each scenario's tests/conftest.py imports what it uses from here (molecule/production runs
molecule/default/tests); the default scenario's faults/ has no conftest of its own (pytest would load it as
the module `conftest` too, over tests/'s), so its modules import their fixtures from here themselves.
pytest finds a fixture where it is imported, by the name given in @pytest.fixture: the functions are named
*_fixture so that an argument called `site` or `inventory` is no redefinition of an imported name (ruff's
F811).
"""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra

from doctor.cli import report
from doctor.site import request
from doctor.walk import gather, walk

ROOT = Path(__file__).resolve().parents[1]
# The demo tenant that seed_demo creates (app/apps/cafe/management/commands/seed_demo.py).
DEMO_COMPANY = "5eed0000-0000-4000-8000-000000000001"
DEMO_USER = "demo"
DOCTOR = Path(sys.executable).parent / "nurcrm-doctor"  # the console script, as `make setup` installs it


@pytest.fixture(name="inventory", scope="session")
def inventory_fixture(pytestconfig):
    """The inventory molecule gives pytest (--ansible-inventory), as an absolute path."""
    return str(Path(pytestconfig.option.ansible_inventory).resolve())


@pytest.fixture(name="no_timed_walks", scope="module", autouse=True)
def no_timed_walks_fixture(pytestconfig):
    """A module that breaks the stack and walks it from the controller pauses the monitoring host's timed walks
    (roles/monitoring) where they run: the timer's walk would add its own requests, at a moment no test chooses,
    to the logs a walk reads. Resumed after the module."""
    timer = "nurcrm-doctor.timer"
    hosts = testinfra.get_hosts(["ansible://monitoring"], ansible_inventory=pytestconfig.option.ansible_inventory)
    paused = [host for host in hosts if host.service(timer).is_running]
    for host in paused:
        host.check_output(f"systemctl stop {timer}")
    yield
    for host in paused:
        host.check_output(f"systemctl start {timer}")


@pytest.fixture(name="site", scope="session")
def site_fixture(pytestconfig):
    """How a client reaches the site, as the doctor gathers it from that inventory."""
    return gather(pytestconfig.option.ansible_inventory).site


def walked(inventory):
    """The doctor's walk of every host, as its --json reports it."""
    facts, results = walk(inventory)
    return report(results, facts, 0)


def wait_workers(host, workers=3, service="gunicorn"):
    """Until gunicorn's workers on this host have booted and reported, at most 60 s (the role's own wait,
    roles/asgi/files/nurcrm-ready)."""
    host.check_output(f"nurcrm-ready --workers {workers} --service {service} --timeout 60")


def issue_token(host):
    """A fresh access token of the demo user, minted on this app host."""
    return host.check_output(f"nurcrm-manage issue_token --user {DEMO_USER}")


async def tables_via_rest(site, token):
    """Each table's status as the REST API lists it: {id: status}."""
    _, tables = await asyncio.to_thread(request, site, "GET", "/api/cafe/tables/", token)
    tables = tables["results"] if isinstance(tables, dict) else tables
    return {t["id"]: t["status"] for t in tables}


RECAP = re.compile(r"(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # molecule's environment forces colour on: ANSIBLE_NOCOLOR alone leaves it


def recap(output):
    """ansible-playbook's PLAY RECAP, per host: {host: {"ok", "changed", "unreachable", "failed"}}."""
    last = COLOUR.sub("", output).rsplit("PLAY RECAP", 1)[-1]
    keys = ("ok", "changed", "unreachable", "failed")
    return {host: dict(zip(keys, map(int, counts), strict=True)) for host, *counts in RECAP.findall(last)}


def changed_tasks(output, host):
    """The tasks that reported `changed` on this host, by name, in the order they ran."""
    tasks = re.split(r"\bTASK \[", COLOUR.sub("", output))[1:]
    return [task.split("]", 1)[0] for task in tasks if f"changed: [{host}]" in task]


def playbook(*args, playbook="site.yml"):
    """ansible-playbook from the bundle's root; its stdout and stderr as one plain text (molecule's env colours and
    wraps)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    run = subprocess.run(["ansible-playbook", playbook, *args], cwd=ROOT, capture_output=True, text=True, env=env)
    return run.returncode, " ".join((run.stdout + run.stderr).split())
