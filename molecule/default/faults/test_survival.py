"""Faults a live stack must survive, each with the client's view asserted: Redis restarted under
connected clients, Redis down during an order, a worker killed, gunicorn and nginx reloaded, and
the host rebooted. Runs on the converged local stack after test_faults.py; the reboot runs last."""

import asyncio
import json
import subprocess
import time
import urllib.error

import pytest
import testinfra
from websockets.exceptions import ConnectionClosed

from doctor.site import next_of_type, receive, request, socket_to
from doctor.walk import walk
from tools.fixtures import (
    issue_token,
    no_timed_walks_fixture,  # noqa: F401 (a fixture: pytest finds it here)
    site_fixture,  # noqa: F401
    tables_via_rest,
    wait_workers,
)
from tools.waiting import wait_for

SERVICE = "gunicorn"
WORKERS = 3


@pytest.fixture(scope="module")
def host(pytestconfig):
    return testinfra.get_host("ansible://nurcrm-local", ansible_inventory=pytestconfig.option.ansible_inventory)


@pytest.fixture
def token(host):
    return issue_token(host)


def workers(host):
    """PIDs of gunicorn's workers: the children of the unit's main process."""
    master = host.check_output(f"systemctl show -p MainPID --value {SERVICE}")
    return set(host.check_output(f"pgrep -P {master} || true").split())


async def change_a_table(site, token, table):
    """PATCH the table to another status over REST; the new status."""
    status = "reserved" if table["status"] != "reserved" else "free"
    code, _ = await asyncio.to_thread(
        request, site, "PATCH", f"/api/cafe/tables/{table['id']}/", token, {"status": status}
    )
    assert code == 200
    return status


def test_after_a_redis_restart_no_client_stays_connected_but_deaf(host, site, token):
    """Every client either receives the next event on its open socket, or was closed and, on
    reconnecting, gets a snapshot equal to the database."""

    async def scenario():
        sockets = [await socket_to(site, f"token={token}") for _ in range(6)]
        table = (await asyncio.gather(*(receive(ws) for ws in sockets)))[0]["tables"][0]
        await asyncio.to_thread(host.check_output, "systemctl restart redis-server")
        await asyncio.sleep(3)  # the layer notices within about a second
        new_status = await change_a_table(site, token, table)
        outcomes = []
        for ws in sockets:
            try:
                event, _ = await next_of_type(ws, "table_status_changed")
                assert (event["data"]["id"], event["data"]["status"]) == (table["id"], new_status)
                outcomes.append("kept receiving")
            except ConnectionClosed:
                async with socket_to(site, f"token={token}") as again:
                    hello = await receive(again)
                    snapshot = {t["id"]: t["status"] for t in hello["tables"]}
                    assert snapshot == await tables_via_rest(site, token)
                outcomes.append("reconnected")
            except TimeoutError:
                outcomes.append("connected but deaf")
            finally:
                await ws.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert "connected but deaf" not in outcomes, outcomes


def test_an_order_created_while_redis_is_down_is_saved_and_its_notification_sent_once_redis_is_back(host, site, token):
    """201 and the order saved; its event waits in the outbox (logged), and a worker's relay publishes it
    when Redis answers again (issue 24)."""
    since = host.check_output("date +%s.%N")

    def log():
        return host.check_output(f"journalctl -u {SERVICE} --since @{since} --no-pager -o cat")

    host.check_output("systemctl stop redis-server")
    try:
        _, tables = asyncio.run(asyncio.to_thread(request, site, "GET", "/api/cafe/tables/", token))
        table = (tables["results"] if isinstance(tables, dict) else tables)[0]
        order = {"table": table["id"], "items": [{"name": "Lagman", "quantity": 1, "price": "300.00"}]}
        try:
            status, created = request(site, "POST", "/api/cafe/orders/", token, order)
        except urllib.error.HTTPError as error:
            pytest.fail(f"creating an order with Redis down answered {error.code}")
        assert status == 201
        assert request(site, "GET", f"/api/cafe/orders/{created['id']}/", token)[1]["id"] == created["id"]
        waiting = log()
        assert "notification order.created to group cafe_tables_" in waiting, waiting[-2000:]
        assert "it waits in the outbox" in waiting, waiting[-2000:]
    finally:
        host.check_output("systemctl start redis-server")
    wait_for(lambda: "outbox relay: published" in log(), 30, lambda: f"the relay's line in {log()[-2000:]}")


def test_a_killed_worker_is_replaced_and_new_sockets_open_within_5_seconds(host, site, token):
    before = workers(host)
    victim = sorted(before)[0]
    host.check_output(f"kill -KILL {victim}")
    killed = time.monotonic()

    async def open_one():
        async with socket_to(site, f"token={token}") as ws:
            return (await receive(ws))["type"]

    assert asyncio.run(open_one()) == "connection_established"
    assert time.monotonic() - killed < 5
    wait_for(lambda: len(workers(host)) == WORKERS and victim not in workers(host), 5, "a replacement worker")
    wait_workers(host, WORKERS, SERVICE)


def keep_connecting(site, token, while_running):
    """Open a socket every 50 ms while `while_running()` runs in a thread; (attempts, failures).
    Each from its own loopback address, as many clients would: nginx limits handshakes per address."""

    async def attempt(n):
        try:
            async with socket_to(
                site, f"token={token}", host=site.ipv4, local_addr=(f"127.0.1.{n % 250 + 1}", 0)
            ) as ws:
                return None if (await receive(ws))["type"] == "connection_established" else "no hello"
        except Exception as error:  # every kind of failure counts, and says what it was
            return f"{type(error).__name__}: {error}"

    async def scenario():
        running = asyncio.create_task(asyncio.to_thread(while_running))
        results = []
        while not running.done():
            results.append(asyncio.create_task(attempt(len(results))))
            await asyncio.sleep(0.05)
        await running
        return await asyncio.gather(*results)

    results = asyncio.run(scenario())
    return len(results), [r for r in results if r]


def test_a_gunicorn_reload_fails_no_new_connection(host, site, token):
    before = workers(host)

    def reload_and_wait():
        host.check_output(f"systemctl reload {SERVICE}")
        wait_for(lambda: len(workers(host)) == WORKERS and not workers(host) & before, 30, "new workers")
        time.sleep(1)

    attempts, failures = keep_connecting(site, token, reload_and_wait)
    assert attempts > 20 and not failures, failures[:5]
    wait_workers(host, WORKERS, SERVICE)


def test_open_sockets_keep_working_across_an_nginx_reload(host, site, token):
    async def scenario():
        sockets = [await socket_to(site, f"token={token}") for _ in range(3)]
        table = (await asyncio.gather(*(receive(ws) for ws in sockets)))[0]["tables"][0]
        await asyncio.to_thread(host.check_output, "systemctl reload nginx")
        await asyncio.sleep(1)
        for ws in sockets:
            await ws.send(json.dumps({"action": "ping"}))
            assert (await receive(ws))["type"] == "pong"
        new_status = await change_a_table(site, token, table)
        for ws in sockets:
            event, _ = await next_of_type(ws, "table_status_changed")
            assert event["data"]["status"] == new_status
            await ws.close()

    asyncio.run(scenario())


def test_after_a_reboot_every_service_is_back_and_the_doctor_passes(host, pytestconfig):
    """`docker restart` of the container: systemd starts every layer, no playbook rerun."""
    subprocess.run(["docker", "restart", "nurcrm-local"], check=True, capture_output=True, timeout=120)
    wait_for(
        lambda: host.run("systemctl is-system-running").stdout.strip() in {"running", "degraded"}, 120, "systemd up"
    )
    for service in ("nginx", "redis-server", "postgresql", SERVICE):
        assert host.service(service).is_running, f"{service} did not come back"
    wait_workers(host, WORKERS, SERVICE)
    _, results = walk(pytestconfig.option.ansible_inventory)
    failing = [(r.check, r.evidence) for r in results if r.status != "pass"]
    assert not failing, failing
