"""Fixtures of the cluster scenario (issue 14): the hosts by name and address, the current Redis master as
the Sentinels see it, which app host holds each socket, and a client of the site through the web host.

The containers share this machine's network, so the tests read the app hosts' connections from here:
every WebSocket is one TCP connection from the web host's address to an app host's address:8000.
"""

import asyncio
import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass

import pytest
import testinfra
from websockets.exceptions import ConnectionClosed

from bench.screens import View
from doctor.site import next_of_type, receive, request, socket_to
from tools.fixtures import (  # noqa: F401 (the tests import wait_workers from here; pytest finds site)
    DEMO_COMPANY,
    ROOT,
    issue_token,
    site_fixture,
    tables_via_rest,
    wait_workers,
    walked,
)
from tools.waiting import wait_for

APP_PORT = 8000
MASTER_NAME = "nurcrm"
SENTINEL_PORT = 26379
# molecule/cluster/inventory/group_vars/redis/vars.yml: a master is down after 2 s, a failover may take 10.
DOWN_AFTER_S, FAILOVER_TIMEOUT_S = 2, 10
# What a Redis host's root passes to redis-cli: the password in REDISCLI_AUTH, read from the host's own
# files, never in an argument.
AS_OPS = "REDISCLI_AUTH=$(cat /etc/redis/nurcrm-ops.secret) redis-cli --user nurcrm-ops --no-auth-warning"
# (Sentinel's own rewrite quotes the value.)
AS_SENTINEL = (
    """REDISCLI_AUTH=$(sed -n 's/^requirepass "\\{0,1\\}\\([^"]*\\)"\\{0,1\\}$/\\1/p' /etc/redis/sentinel.conf)"""
    " redis-cli --no-auth-warning"
)


@dataclass
class Node:
    name: str
    group: str
    address: str
    host: object  # testinfra's

    def run(self, command):
        return self.host.run(command)

    def check_output(self, command):
        return self.host.check_output(command)


# The path as molecule passes it; tools/fixtures.py's `inventory`, the other scenarios', resolves it.
@pytest.fixture(scope="session")
def inventory(pytestconfig):
    return pytestconfig.option.ansible_inventory


@pytest.fixture(scope="session")
def nodes(inventory):
    """Every host of the inventory by name, with its group and address (nurcrm_address)."""
    listed = json.loads(
        subprocess.run(["ansible-inventory", "-i", inventory, "--list"], check=True, capture_output=True).stdout
    )
    hostvars = listed["_meta"]["hostvars"]
    found = {}
    for group in ("web", "app", "redis", "db"):
        for name in listed[group]["hosts"]:
            host = testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)
            found[name] = Node(name, group, hostvars[name]["nurcrm_address"], host)
    return found


def of(nodes, group):
    return [node for node in nodes.values() if node.group == group]


@pytest.fixture(scope="session")
def web(nodes):
    return of(nodes, "web")[0]


@pytest.fixture(scope="session")
def apps(nodes):
    return of(nodes, "app")


@pytest.fixture(scope="session")
def redises(nodes):
    return of(nodes, "redis")


@pytest.fixture
def token(apps):
    return issue_token(apps[0])


def sentinel_master(redises):
    """The master's address as the first Sentinel that answers names it (None if none answers)."""
    for node in redises:
        asked = node.run(
            f"{AS_SENTINEL} -h {node.address} -p {SENTINEL_PORT} SENTINEL get-master-addr-by-name {MASTER_NAME}"
        )
        lines = asked.stdout.split()
        if asked.rc == 0 and len(lines) == 2 and not lines[0].startswith(("ERR", "NOAUTH")):
            return lines[0]
    return None


def master_node(redises):
    address = sentinel_master(redises)
    return next(node for node in redises if node.address == address)


def replication(node):
    """INFO replication of the Redis on this host, as a dict ({} when it does not answer)."""
    out = node.run(f"{AS_OPS} -h {node.address} INFO replication").stdout
    return dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line)


def numsub(redises, channel):
    master = master_node(redises)
    out = master.check_output(f"{AS_OPS} -h {master.address} PUBSUB NUMSUB {channel}").split()
    return int(out[1])


def upstream_connections():
    """Established connections to each app host's :8000, read from this machine (the shared network):
    {app address: number}. nginx keeps no idle upstream connections, so these are the open sockets."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{APP_PORT} )"], capture_output=True, text=True
    ).stdout
    counts = {}
    for line in out.splitlines():
        local = line.split()[2]
        address = local.rsplit(":", 1)[0]
        counts[address] = counts.get(address, 0) + 1
    return counts


BALANCED = 0.6  # the busiest app host's share of the open sockets, at most, once they spread back (issue 24)
BALANCE_S = 60


def spread(apps):
    """The open sockets of each app host ({name: number}), as this machine sees the connections."""
    held = upstream_connections()
    return {app.name: held.get(app.address, 0) for app in apps}


async def until_balanced(apps, timeout=BALANCE_S):
    """Until the busiest app host holds at most BALANCED of the open sockets: (spread before, after, seconds)."""
    before, started = spread(apps), time.monotonic()
    while True:
        now = spread(apps)
        if max(now.values()) <= BALANCED * sum(now.values()):
            return before, now, time.monotonic() - started
        assert time.monotonic() - started < timeout, f"not balanced within {timeout} s: {before} -> {now}"
        await asyncio.sleep(0.5)


def workers_holding_sockets(app):
    """The gunicorn workers on an app host that hold at least one WebSocket (PIDs)."""
    out = app.check_output(f"ss -Htnp state established '( src {app.address} and sport = :{APP_PORT} )'")
    return {part.split("pid=")[1].split(",")[0] for part in out.split() if "pid=" in part}


async def open_spread(site, token, apps, count, timeout=20):
    """`count` sockets, opened until every app host holds some; their hellos come back too."""
    sockets, hellos = [], []
    deadline = time.monotonic() + timeout
    while True:
        while len(sockets) < count:
            ws = await socket_to(site, f"token={token}")
            sockets.append(ws)
            hellos.append(await receive(ws))
        held = upstream_connections()
        if all(held.get(app.address, 0) > 0 for app in apps):
            return sockets, hellos
        assert time.monotonic() < deadline, f"sockets did not spread over the app hosts: {held}"
        count += 2


async def change_a_table(site, token, table_id):
    """PATCH the table to another status over REST; the new status."""
    tables = await tables_via_rest(site, token)
    status = "reserved" if tables[table_id] != "reserved" else "free"
    code, _ = await asyncio.to_thread(
        request, site, "PATCH", f"/api/cafe/tables/{table_id}/", token, {"status": status}
    )
    assert code == 200
    return status


def send_from(app):
    """The checklist's sender (send_test_notification), run on this app host: the table id it announced."""
    out = app.check_output(f"nurcrm-manage send_test_notification --company {DEMO_COMPANY}")
    return re.search(r"\(([0-9a-f-]{36}), ", out).group(1)


async def every_socket_gets(sockets, table_id, timeout=10):
    """Each socket's next table_status_changed is about this table."""
    events = await asyncio.gather(*(next_of_type(ws, "table_status_changed", timeout) for ws in sockets))
    assert [event["data"]["id"] for event, _ in events] == [table_id] * len(sockets)


class Screen(View):
    """One client's view (bench.screens.View, the documented client's rules) on an open socket."""

    def __init__(self, ws, hello):
        super().__init__()
        assert hello["type"] == "connection_established", hello
        self.ws = ws
        self.apply(hello)
        self.reconnected = False

    @classmethod
    async def open(cls, site, token):
        ws = await socket_to(site, f"token={token}")
        return cls(ws, await receive(ws))

    async def until(self, table_id, status, timeout=10):
        """Messages until the screen shows this table with this status, by an event or a snapshot."""
        deadline = time.monotonic() + timeout
        while True:
            self.apply(await receive(self.ws, timeout=max(0.1, deadline - time.monotonic())))
            if self.tables.get(table_id) == status:
                return

    async def close(self):
        await self.ws.close()


def failing(data):
    return [(r["check"], r["host"], r["evidence"]) for r in data["results"] if r["status"] == "fail"]


def wait_healthy(inventory, timeout=60):
    """Until the doctor's walk passes (services restarted, replicas in sync, Sentinels agreed)."""
    last = {}

    def healthy():
        last["data"] = walked(inventory)
        return last["data"]["healthy"]

    try:
        wait_for(healthy, timeout, "a healthy walk", every=1)
    except AssertionError:
        raise AssertionError(f"still failing: {failing(last['data'])}") from None


async def settle(screens, site, token, table_id, since):
    """Change a table; each screen either shows it on its open socket or, closed, reconnects (its new snapshot
    shows it). A screen neither closed nor told is deaf: the test fails naming it. The reconnected screens'
    times from `since` (monotonic) to their new hello come back."""
    status = await change_a_table(site, token, table_id)
    deaf, back_after = [], []
    for index, screen in enumerate(screens):
        try:
            await screen.until(table_id, status)
        except ConnectionClosed:
            screens[index] = await Screen.open(site, token)
            screens[index].reconnected = True
            back_after.append(time.monotonic() - since)
        except TimeoutError:
            deaf.append(index)
    assert not deaf, f"connected but deaf: sockets {deaf}"
    return back_after


def doctor_fix(inventory):
    """`nurcrm-doctor --fix --json` as an operator runs it from the bundle: its exit status and report."""
    done = subprocess.run(
        [str(ROOT / ".venv/bin/nurcrm-doctor"), "-i", inventory, "--fix", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
    )
    return done.returncode, json.loads(done.stdout)


def rerun(fix):
    """A fix line without the `cd <bundle> && ` the doctor puts first when run from elsewhere (as molecule's
    verifier runs it)."""
    return fix.removeprefix(f"cd {shlex.quote(str(ROOT))} && ")
