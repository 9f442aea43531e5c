"""Redis loses the channel layer's state while sockets are open: no socket stays connected but deaf.

Production Redis persists nothing, so a restart or a flush drops every group (nurcrm_realtime.layer_watch).
Each client either keeps receiving, after a `tables_snapshot` equal to the database, or is closed
with 1012 and gets the database's tables when it reconnects. Both layers, against a real Redis.
"""

import asyncio
import json
import logging

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from websockets.exceptions import ConnectionClosed

from apps.cafe.group_state import group_state
from apps.cafe.groups import company_group
from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
from apps.cafe.models import Table
from apps.cafe.notifications import table_payload
from apps.cafe.views import send_table_status_changed_notification
from nurcrm_realtime import layer_watch
from nurcrm_realtime.layers import channel_layers
from tests.conftest import connect_ok, socket_to, token_for
from tests.localstack import LocalStack

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

BACKENDS = ("redis", "redis-pubsub")
POLL = 0.2  # the watch's interval in these tests (1 s in production)


def use_layer(settings, backend, server, **options):
    settings.REDIS_URL = server.url
    settings.CHANNEL_LAYER = backend
    settings.CHANNEL_LAYER_PREFIX = "asgi"
    settings.CHANNEL_LAYERS = channel_layers(backend, server.url, **options)
    settings.CHANNEL_LAYER_WATCH_INTERVAL = POLL


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def layer(request, settings, restartable_redis):
    """One of the two layers on a Redis of this test's own; the name of the layer."""
    use_layer(settings, request.param, restartable_redis)
    return request.param


def by_id(tables):
    return sorted(tables, key=lambda table: table["id"])


@database_sync_to_async
def database_tables(company):
    return by_id(table_payload(table) for table in Table.objects.filter(company=company))


@database_sync_to_async
def change_silently(branch):
    """A change whose event never reaches the sockets, as one sent while Redis was down."""
    Table.objects.filter(branch=branch, number=1).update(status=Table.Status.CLEANING)


async def first_table(branch):
    return await database_sync_to_async(lambda: Table.objects.filter(branch=branch).first())()


async def until(condition, timeout=10):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def assert_resynced_and_receiving(ws, company, table):
    """The next frame is a tables_snapshot equal to the database; an event sent after it arrives."""
    snapshot = await ws.receive_json_from(timeout=10)
    assert (snapshot["type"], snapshot["reason"]) == ("tables_snapshot", "channel_layer_reset"), snapshot
    assert by_id(snapshot["tables"]) == await database_tables(company)
    await database_sync_to_async(send_table_status_changed_notification)(table)
    event = await ws.receive_json_from(timeout=10)
    assert (event["type"], event["data"]["id"]) == ("table_status_changed", str(table.id))


@pytest.mark.parametrize("loss", ["restart", "flushall"])
async def test_a_socket_open_while_redis_loses_its_data_gets_a_snapshot_then_events(
    layer, restartable_redis, tenant, loss
):
    """Redis restarted (without persistence) or flushed: the open socket gets the database's tables, then events.

    The restart blocks this test's event loop, so the consumer sees Redis already back and stays
    open; an outage longer than the layer's retries is the 1012 test below."""
    company, (main, _), user = tenant
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        await change_silently(main)
        if loss == "restart":
            restartable_redis.restart()
        else:
            restartable_redis.client().flushall()
        await assert_resynced_and_receiving(ws, company, await first_table(main))


async def test_every_connection_dropped_with_the_data_kept_resyncs_the_socket(layer, restartable_redis, tenant):
    """Every connection to Redis dropped, its data kept (the Sentinels' kill of a demoted master's clients, a
    network blip): events may have been lost meanwhile, so the socket gets a snapshot equal to the database,
    change included, then events."""
    company, (main, _), user = tenant
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        client = restartable_redis.client()
        await change_silently(main)
        client.client_kill_filter(_type="normal")
        client.client_kill_filter(_type="pubsub")
        await assert_resynced_and_receiving(ws, company, await first_table(main))


async def test_a_pubsub_subscription_made_again_resyncs_the_socket(settings, restartable_redis, tenant):
    """Only the pub/sub layer's subscription is cut (the watch's own connection stays): redis-py resubscribes,
    and what was published meanwhile is lost, so the socket gets a snapshot, then events."""
    use_layer(settings, "redis-pubsub", restartable_redis)
    company, (main, _), user = tenant
    group = company_group(company.id)
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        await change_silently(main)
        restartable_redis.client().client_kill_filter(_type="pubsub")
        await until(lambda: group_state(group).members)
        await assert_resynced_and_receiving(ws, company, await first_table(main))


async def test_redis_layer_messages_kept_in_redis_need_no_resync(settings, restartable_redis, tenant):
    """RedisChannelLayer keeps messages in Redis, not on a connection: cutting its consumers' connections
    (not the watch's) loses nothing, and the next frame is the next event."""
    use_layer(settings, "redis", restartable_redis)
    company, (main, _), user = tenant
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        client = restartable_redis.client()
        receiving = [c["id"] for c in client.client_list(_type="normal") if c["cmd"] == "bzpopmin"]
        assert receiving, client.client_list()
        for connection in receiving:
            client.client_kill_filter(_id=connection)
        assert await ws.receive_nothing(timeout=10 * POLL, interval=POLL)
        table = await first_table(main)
        await database_sync_to_async(send_table_status_changed_notification)(table)
        assert (await ws.receive_json_from(timeout=10))["type"] == "table_status_changed"


async def test_a_socket_open_longer_than_group_expiry_is_rejoined(settings, restartable_redis, tenant):
    """RedisChannelLayer drops a group member after group_expiry; the periodic rejoin keeps the socket in."""
    use_layer(settings, "redis", restartable_redis, group_expiry=2)
    settings.CHANNEL_LAYER_REJOIN_INTERVAL = 0.5
    company, (main, _), user = tenant
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        assert await ws.receive_nothing(timeout=3.5, interval=0.5), "a rejoin sends the client nothing"
        table = await first_table(main)
        await database_sync_to_async(send_table_status_changed_notification)(table)
        assert (await ws.receive_json_from(timeout=10))["type"] == "table_status_changed"


async def test_a_socket_is_closed_with_1012_when_redis_stays_down_and_its_reconnect_gets_the_database(
    settings, restartable_redis, tenant
):
    """RedisChannelLayer: Redis down for longer than the layer's retries ends the consumer; the socket
    is closed with 1012 (service restart), and the client's reconnect gets the database's tables."""
    use_layer(settings, "redis", restartable_redis)
    company, (main, _), user = tenant
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        restartable_redis.stop()
        await change_silently(main)
        assert await ws.receive_output(timeout=10) == {"type": "websocket.close", "code": 1012}
    restartable_redis.start()
    async with socket_to(token=token_for(user)) as ws:
        hello = await connect_ok(ws)
    assert by_id(hello["tables"]) == await database_tables(company)


async def test_a_pubsub_socket_stays_open_through_a_redis_outage_and_gets_the_database(
    settings, restartable_redis, tenant
):
    """RedisPubSubChannelLayer reconnects by itself and its consumer never fails: the socket stays
    open, then gets a snapshot standing in for the events lost meanwhile, then events."""
    use_layer(settings, "redis-pubsub", restartable_redis)
    company, (main, _), user = tenant
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        restartable_redis.stop()
        await change_silently(main)
        assert await ws.receive_nothing(timeout=2, interval=POLL)
        restartable_redis.start()
        await assert_resynced_and_receiving(ws, company, await first_table(main))


class Watched:
    """What the watch needs of a consumer."""

    channel_layer_alias = "default"

    def __init__(self, channel_name="specific.watched"):
        self.channel_layer, self.channel_name = get_channel_layer(), channel_name


async def test_redis_down_is_one_warning_however_many_polls_fail(settings, restartable_redis, caplog):
    """The watch logs an outage once, keeps polling, and says when Redis answers again."""
    use_layer(settings, "redis", restartable_redis)
    consumer = Watched()
    await layer_watch.watch(consumer)
    try:
        with caplog.at_level(logging.INFO, logger="nurcrm_realtime.layer_watch"):
            restartable_redis.stop()
            await asyncio.sleep(15 * POLL)  # a failed poll takes the layer's retries, some 0.7 s
            restartable_redis.start()
            await until(lambda: "Redis answers again" in caplog.text)
    finally:
        layer_watch.forget(consumer)
    assert caplog.text.count("Redis unreachable") == 1, caplog.text


async def test_a_pubsub_reset_waits_until_the_channel_is_subscribed_again(settings, restartable_redis):
    """The pub/sub layer loses what is published before redis-py resubscribes the worker, so the watch
    sends a reset only once PUBSUB NUMSUB shows the consumer's channel (here: once it is received on)."""
    use_layer(settings, "redis-pubsub", restartable_redis)
    consumer = Watched("asgispecific.resubscribed-late")
    await layer_watch.watch(consumer)
    try:
        restartable_redis.client().flushall()
        await asyncio.sleep(5 * POLL)
        message = await asyncio.wait_for(consumer.channel_layer.receive(consumer.channel_name), 10)
    finally:
        layer_watch.forget(consumer)
    assert message == {"type": "layer.reset"}


# --- The real server: gunicorn with three uvicorn workers --------------------------------------
CLIENTS = 12
CHANGE = "from apps.cafe.models import Table; Table.objects.filter(number=1).update(status='cleaning')"
SNAPSHOT = (
    "import json; from apps.cafe.models import Table; from apps.cafe.notifications import table_payload; "
    f"print(json.dumps([table_payload(t) for t in Table.objects.filter(company_id='{DEMO_COMPANY_ID}')]))"
)


async def next_frame(ws):
    """The next frame as JSON, or {"type": "closed", "code": ...} if the server closed the socket."""
    try:
        return json.loads(await asyncio.wait_for(ws.recv(), 15))
    except ConnectionClosed as closed:
        return {"type": "closed", "code": closed.rcvd.code if closed.rcvd else None}


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
async def test_every_client_of_three_workers_keeps_receiving_or_is_closed_and_resynced(
    tmp_path, restartable_redis, backend
):
    """Redis stopped for over a second, a table changed meanwhile, Redis started: every client either
    gets a snapshot equal to the database and then the next event, or was closed with 1012 and its
    reconnect's snapshot equals the database. None stays open but deaf."""
    stack = LocalStack(tmp_path, restartable_redis.url, layer=backend)
    token = stack.manage("issue_token", "--user", "demo").strip()
    clients = []
    try:
        for _ in range(CLIENTS):
            clients.append(await stack.connect(f"token={token}"))
            assert (await next_frame(clients[-1]))["type"] == "connection_established"
        restartable_redis.stop()
        await asyncio.to_thread(stack.manage, "shell", "--verbosity", "0", "-c", CHANGE)
        await asyncio.sleep(1)  # longer than the layer's retries: with RedisChannelLayer some sockets close
        restartable_redis.start()
        tables = by_id(json.loads(await asyncio.to_thread(stack.manage, "shell", "--verbosity", "0", "-c", SNAPSHOT)))
        for i, ws in enumerate(clients):
            frame = await next_frame(ws)
            if frame["type"] == "closed":
                assert frame["code"] == 1012, f"client {i}: {frame}"
                clients[i] = await stack.connect(f"token={token}")
                frame = await next_frame(clients[i])
                assert frame["type"] == "connection_established", f"client {i}: {frame}"
            else:
                assert frame["type"] == "tables_snapshot", f"client {i}: {frame}"
            assert by_id(frame["tables"]) == tables, f"client {i}"
        await asyncio.to_thread(stack.manage, "send_test_notification", "--company", str(DEMO_COMPANY_ID))
        for i, ws in enumerate(clients):
            frame = await next_frame(ws)
            # A reconnect may come before its worker's watch saw Redis back: a second snapshot, harmless.
            while frame["type"] == "tables_snapshot":
                assert by_id(frame["tables"]) == tables, f"client {i}"
                frame = await next_frame(ws)
            assert frame["type"] == "table_status_changed", f"client {i}: {frame}"
    finally:
        for ws in clients:
            await ws.close()
        stack.stop()
