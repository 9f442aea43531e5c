"""The guard of a worker's open sockets (nurcrm_realtime.guard) in this process: one query for all of them,
a change of the user's company or branch, and sockets refused over the per-user cap.

The real server's closes on deactivation, deletion, password change, expiry and lifetime are in
test_socket_revocation.py."""

import asyncio
import re

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.users.models import User
from nurcrm_realtime import guard as ws_guard
from tests.conftest import connect_ok, socket_to, token_for

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def capture_queries():
    """Record the queries of the thread that runs database_sync_to_async (the guard's too)."""
    capture = CaptureQueriesContext(connection)
    capture.__enter__()
    return capture


@database_sync_to_async
def captured(capture):
    capture.__exit__(None, None, None)
    return [query["sql"] for query in capture.captured_queries]


async def closed_with(ws, timeout=3):
    message = await ws.receive_output(timeout=timeout)
    assert message["type"] == "websocket.close", message
    return message.get("code"), message.get("reason")


async def test_the_users_of_all_open_sockets_are_read_in_one_query_a_second(tenant):
    """Six sockets of three users: each sweep of the worker's guard is one SELECT of users, whatever the count."""
    company = tenant[0]
    users = [tenant[2]] + [
        await database_sync_to_async(User.objects.create_user)(f"staff{n}", password="pw-staff-1", company=company)
        for n in (2, 3)
    ]
    async with socket_to(token=token_for(users[0])) as a1, socket_to(token=token_for(users[0])) as a2:
        async with socket_to(token=token_for(users[1])) as b1, socket_to(token=token_for(users[1])) as b2:
            async with socket_to(token=token_for(users[2])) as c1, socket_to(token=token_for(users[2])) as c2:
                for ws in (a1, a2, b1, b2, c1, c2):
                    await connect_ok(ws)
                capture = await capture_queries()
                await asyncio.sleep(3.5)  # three sweeps
                queries = await captured(capture)
    # 3.5 s hold three or four sweeps, and each made one query: of the three users at once.
    assert len(queries) in (3, 4), queries
    ids = {str(user.pk) for user in users}
    assert all('FROM "users_user"' in sql for sql in queries), queries
    assert [set(re.search(r" IN \(([^)]*)\)", sql)[1].split(", ")) for sql in queries] == [ids] * len(queries)


@pytest.mark.parametrize("change", ["branch", "company"])
async def test_a_socket_is_closed_with_4401_when_its_users_branch_or_company_changes(tenant, other_tenant, change):
    """A company-wide socket of a user then bound to a branch (or moved to another company, by an update
    that no signal sees) is closed within two sweeps: its reconnect gets the scope the user has now."""
    company, (main, _), user = tenant
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        values = {"branch": main} if change == "branch" else {"company": other_tenant[0]}
        await database_sync_to_async(User.objects.filter(pk=user.pk).update)(**values)
        field = "branch_id" if change == "branch" else "company_id"
        assert await closed_with(ws) == (4401, f"user's {field} changed")


async def test_a_user_over_the_socket_cap_is_closed_with_4429_and_a_closed_socket_frees_its_place(tenant, settings):
    """WS_MAX_SOCKETS_PER_USER=2: a third socket is accepted, then closed with 4429; once one of the two
    closes, a new one is admitted. Another user is not affected."""
    settings.WS_MAX_SOCKETS_PER_USER = 2
    user = tenant[2]
    other = await database_sync_to_async(User.objects.create_user)("other", password="pw-other-1", company=tenant[0])
    async with socket_to(token=token_for(user)) as first, socket_to(token=token_for(user)) as second:
        await connect_ok(first)
        await connect_ok(second)
        async with socket_to(token=token_for(user)) as third:
            connected, _ = await third.connect()
            assert connected
            assert await closed_with(third) == (4429, "too many open sockets for this user")
        async with socket_to(token=token_for(other)) as others:
            await connect_ok(others)
        await first.disconnect()
        await asyncio.sleep(0.1)
        async with socket_to(token=token_for(user)) as again:
            await connect_ok(again)


async def test_the_guard_stops_with_the_last_socket(tenant):
    """No socket, no guard: the loop's task ends with the last socket it watched."""
    async with socket_to(token=token_for(tenant[2])) as ws:
        await connect_ok(ws)
        guard = ws_guard._guards[asyncio.get_running_loop()]
    await asyncio.sleep(0.1)
    assert asyncio.get_running_loop() not in ws_guard._guards
    assert guard.task.done()


@pytest.mark.redis
async def test_the_guard_keeps_its_sockets_counted_in_redis_and_re_adds_those_redis_lost(
    redis_layer, tenant, monkeypatch
):
    """With a count TTL of 3 s (renewed every second): the socket's entry outlives the TTL while it is open,
    comes back after Redis lost it, and an entry a killed worker left is dropped once its deadline passed."""
    monkeypatch.setattr(ws_guard, "COUNT_TTL", 3)
    _, prefix, client = redis_layer
    user = tenant[2]
    key = f"{prefix}:nurcrm:sockets:{user.pk}"
    client.zadd(key, {"a-killed-workers-socket": 0})  # its deadline long past
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        assert client.zrange(key, 0, -1) == [
            ws_guard._guards[asyncio.get_running_loop()].sockets.copy().pop().channel_name
        ]
        await asyncio.sleep(3.5)
        assert client.zcard(key) == 1
        client.delete(key)  # as a Redis restart would
        await asyncio.sleep(1.5)
        assert client.zcard(key) == 1 and client.ttl(key) > 0
    await asyncio.sleep(0.2)
    assert client.zcard(key) == 0
