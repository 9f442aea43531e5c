"""Fixtures of the checklist tests: the hosts of each layer, the doctor's facts, a client of the site.

The tests run against whatever inventory pytest is given (molecule passes the local one). Each
test file proves its checklist items (ITEMS): the doctor's checks of those items, taken from the
registry (doctor/registry.py) and judged on facts that doctor/walk.py gathers read-only, must all
pass; the rest of the file drives the stack as a client would (REST, WebSocket) and reads the hosts.
"""

import asyncio
import os
import shlex

import pytest
import testinfra
from websockets.exceptions import ConnectionClosed

from doctor.hosts import Hosts
from doctor.registry import REGISTRY, STEPS, evaluate
from doctor.site import receive, request, socket_to  # noqa: F401 (the tests import them from here)
from doctor.walk import gather
from tools.fixtures import (  # noqa: F401 (the tests import DEMO_COMPANY and DEMO_USER from here; pytest finds inventory)
    DEMO_COMPANY,
    DEMO_USER,
    ROOT,
    inventory_fixture,
    issue_token,
    playbook,
)

# The demo tenant's branches, as seed_demo creates them (its company and user: tools/fixtures.py).
DEMO_BRANCHES = {"Main hall": "5eed0000-0000-4000-8000-0000000000b1", "Terrace": "5eed0000-0000-4000-8000-0000000000b2"}
# The scenario running these tests: default (the local stack through docker) or production (over SSH,
# with an ACME certificate); a few tests belong to one of them alone.
SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME", "default")
# The production note's fixed values.
SOCKET = "/home/nur/asgi.sock"
SERVICE = "gunicorn"


def hosts_of(config, group):
    return testinfra.get_hosts(
        [f"ansible://{group}"], connection="ansible", ansible_inventory=config.option.ansible_inventory
    )


@pytest.fixture(scope="session")
def web(pytestconfig):
    return hosts_of(pytestconfig, "web")[0]


@pytest.fixture(scope="session")
def app(pytestconfig):
    return hosts_of(pytestconfig, "app")[0]


@pytest.fixture(scope="session")
def redis_host(pytestconfig):
    return hosts_of(pytestconfig, "redis")[0]


@pytest.fixture(scope="session")
def db_host(pytestconfig):
    return hosts_of(pytestconfig, "db")[0]


@pytest.fixture(scope="session")
def facts(pytestconfig):
    """Everything the doctor sees, gathered once."""
    return gather(pytestconfig.option.ansible_inventory)


@pytest.fixture(scope="session")
def walk(facts):
    """The doctor's judgement of those facts: every registered check on each of its hosts."""
    return evaluate(facts)


def checks_of(items):
    """The names of the doctor's checks that prove these checklist items, in walk order."""
    steps = {step.name for step in STEPS if step.item in items}
    return [registered.name for registered in REGISTRY if registered.step in steps]


def assert_check_passes(walk, check):
    results = [r for r in walk if r.check == check]
    registered = next(r for r in REGISTRY if r.name == check)
    if not results and registered.when:  # e.g. Sentinel's checks on a standalone Redis: no result at all
        pytest.skip(f"{check} does not apply to this deployment ({registered.when.__name__} is false)")
    if not results and registered.only:  # e.g. the settings read through the app where the bundle did not deploy
        pytest.skip(f"{check} does not apply to these hosts ({registered.only.__name__} is false on each)")
    assert results, f"{check} did not run"
    failing = [f"{r.host}: {r.status} {r.evidence} -> fix: {r.fix}" for r in results if r.status != "pass"]
    assert not failing, f"{check}: {failing}"


@pytest.fixture(scope="session")
def app_redis(pytestconfig, app_facts):
    """redis-cli on the app host with the app's own REDIS_URL, as the doctor runs it (its password travels in
    the environment, never in arguments: test_6_hardening.py records them): {"rc", "out", "err"}."""
    hosts = Hosts(pytestconfig.option.ansible_inventory)
    return lambda *command: hosts.probe(app_facts.name, mode="redis", service=SERVICE, command=list(command))


@pytest.fixture(scope="session")
def app_redis_cli(app_redis):
    """The same, for a command that must succeed: its output."""

    def redis_cli(*command):
        done = app_redis(*command)
        assert done["rc"] == 0 and not done["out"].startswith(("ERR", "NOPERM", "NOAUTH")), done
        return done["out"]

    return redis_cli


@pytest.fixture(scope="session")
def app_facts(facts):
    """What the doctor saw on the scenario's (one) app host."""
    return facts.of("app")[0]


@pytest.fixture(scope="session")
def site(facts):
    return facts.site


@pytest.fixture(scope="session")
def app_env_file(app_facts):
    return app_facts.gunicorn["env_file"]


@pytest.fixture(scope="session")
def used_tokens():
    return []


def manage(app, *args):
    """manage.py on the app host, as the app user with the deployed settings."""
    return app.check_output("nurcrm-manage " + shlex.join(args))


@pytest.fixture(scope="session")
def token(app, used_tokens):
    """A fresh access token of the demo user, minted on the app host."""
    value = issue_token(app)
    used_tokens.append(value)
    return value


async def close_code(ws, timeout=5):
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), timeout)
    return closed.value.rcvd.code
