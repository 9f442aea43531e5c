"""Fixtures of the checklist tests: the hosts of each layer, the doctor's facts, a client of the site.

The tests run against whatever inventory pytest is given (molecule passes the local one). The
checks they share with the doctor (doctor/checks.py) judge facts that doctor/walk.py gathers
read-only; the rest drive the stack as a client would (REST, WebSocket) and read the hosts.
"""

import asyncio
import json
import shlex
import urllib.request

import pytest
import testinfra
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from doctor.walk import gather

# The demo tenant that seed_demo creates (app/apps/cafe/management/commands/seed_demo.py).
DEMO_COMPANY = "5eed0000-0000-4000-8000-000000000001"
DEMO_BRANCHES = {"Main hall": "5eed0000-0000-4000-8000-0000000000b1", "Terrace": "5eed0000-0000-4000-8000-0000000000b2"}
DEMO_USER = "demo"
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
def facts(pytestconfig):
    """Everything the doctor sees, gathered once."""
    return gather(pytestconfig.option.ansible_inventory)[1]


def assert_passes(result):
    assert result.status == "pass", f"{result.check}: {result.evidence} -> fix: {result.fix}"


@pytest.fixture(scope="session")
def site(facts):
    return facts.site


@pytest.fixture(scope="session")
def app_env_file(facts):
    return facts.gunicorn["env_file"]


@pytest.fixture(scope="session")
def used_tokens():
    return []


def manage(app, *args):
    """manage.py on the app host, as the app user with the deployed settings."""
    return app.check_output("nurcrm-manage " + shlex.join(args))


@pytest.fixture(scope="session")
def token(app, used_tokens):
    """A fresh access token of the demo user, minted on the app host."""
    value = manage(app, "issue_token", "--user", DEMO_USER)
    used_tokens.append(value)
    return value


def request(site, method, path, token=None, body=None):
    """An HTTPS request to the site; (status, JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(site.url(path, scheme="https"), data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, context=site.tls_context(), timeout=10) as response:
        return response.status, json.loads(response.read() or b"null")


def socket_to(site, query=""):
    url = site.url() + (f"?{query}" if query else "")
    return connect(url, origin=site.origin, ssl=site.tls_context(), open_timeout=10)


async def receive(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def close_code(ws, timeout=5):
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), timeout)
    return closed.value.rcvd.code
