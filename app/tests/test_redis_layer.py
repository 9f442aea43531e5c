"""Against a real Redis (checklist item 3): both channels_redis layers carry events, groups live where redis-cli looks.

RedisChannelLayer keeps a group as the sorted set `asgi:group:<name>` (ZRANGE);
RedisPubSubChannelLayer publishes on `asgi__group__<name>` (PUBSUB NUMSUB).
"""

import asyncio
import io
import uuid

import channels_redis.utils
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.utils.module_loading import import_string

from apps.cafe.consumers import TableStatusConsumer
from apps.cafe.groups import company_group
from apps.cafe.models import Table
from apps.cafe.views import send_table_status_changed_notification
from core.asgi import application
from nurcrm_realtime.layers import channel_layers
from tests.conftest import ORIGIN, connect_ok, socket_to, token_for

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


async def test_notification_from_sync_code_reaches_a_consumer_through_redis(redis_layer, tenant):
    """async_to_sync(group_send) in the real sender, a consumer on the real Redis layer, one event delivered."""
    company, (main, _), user = tenant
    table = await database_sync_to_async(lambda: Table.objects.filter(branch=main).first())()
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        await database_sync_to_async(send_table_status_changed_notification)(table)
        event = await ws.receive_json_from(timeout=5)
    assert (event["type"], event["data"]["id"]) == ("table_status_changed", str(table.id))


async def test_group_of_a_connected_consumer_is_visible_in_redis(redis_layer, tenant):
    """While a socket is open its group is the sorted set asgi:group:<name> holding its channel
    (RedisChannelLayer), or a pub/sub channel asgi__group__<name> with a subscriber (pub/sub layer)."""
    backend, prefix, client = redis_layer
    company, _, user = tenant
    group = company_group(company.id)
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        if backend == "redis":
            key = f"{prefix}:group:{group}"
            assert client.type(key) == "zset"
            members = client.zrange(key, 0, -1)
            assert len(members) == 1 and members[0].startswith("specific.")
        else:
            assert client.pubsub_numsub(f"{prefix}__group__{group}") == [(f"{prefix}__group__{group}", 1)]
            assert client.keys(f"{prefix}:group:*") == []
    if backend == "redis":
        assert client.zcard(f"{prefix}:group:{group}") == 0, "disconnect must leave the group"


async def test_send_test_notification_reports_groups_and_listeners(redis_layer, tenant):
    """The command sends through the real sender and counts each group's listeners from Redis."""
    backend, prefix, _ = redis_layer
    company, (main, _), user = tenant
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        out = io.StringIO()
        await database_sync_to_async(call_command)(
            "send_test_notification", "--company", str(company.id), "--branch", str(main.id), stdout=out
        )
        event = await ws.receive_json_from(timeout=5)
    assert event["type"] == "table_status_changed" and event["data"]["branch_id"] == str(main.id)
    lines = out.getvalue().splitlines()
    assert f"  {company_group(company.id)}: 1 " in "\n".join(lines)
    assert any(line.startswith(f"  {company_group(company.id)}_{main.id}: 0 ") for line in lines)


async def test_an_idle_socket_outlives_the_layers_blocking_read(redis_layer, tenant):
    """Idle longer than RedisChannelLayer's 5 s BZPOPMIN: the consumer is alive and still receives.

    With redis-py 8's default 5 s read timeout the consumer died here of "Timeout reading from Redis"."""
    company, (main, _), user = tenant
    table = await database_sync_to_async(lambda: Table.objects.filter(branch=main).first())()
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        assert await ws.receive_nothing(timeout=6.5, interval=0.5)
        await ws.send_json_to({"action": "ping"})
        assert (await ws.receive_json_from(timeout=5))["type"] == "pong"
        await database_sync_to_async(send_table_status_changed_notification)(table)
        assert (await ws.receive_json_from(timeout=5))["type"] == "table_status_changed"


async def test_the_layer_works_at_once_after_redis_restarts(restartable_redis):
    """After Redis restarts, the layer's pooled connections are dead; the next group_add and
    group_send are retried on fresh ones instead of failing (in a handshake: an HTTP 500)."""
    config = channel_layers("redis", restartable_redis.url)["default"]
    layer = import_string(config["BACKEND"])(**config["CONFIG"])
    channel = await layer.new_channel()
    await layer.group_add("restart", channel)
    restartable_redis.restart()
    await layer.group_add("restart", channel)
    await layer.group_send("restart", {"type": "after.restart"})
    assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "after.restart"
    await layer.flush()


@pytest.mark.parametrize("refusal", ["expired-token", "foreign-branch"])
async def test_a_refused_socket_leaves_nothing_running(redis_layer, tenant, other_tenant, refusal):
    """A refused socket's application ends with its disconnect: no consumer lives on polling Redis
    (which also held up every worker's graceful shutdown)."""
    if refusal == "expired-token":
        query = f"token={token_for(tenant[2], ttl=-5)}"
    else:
        query = f"token={token_for(tenant[2])}&branch_id={other_tenant[1][0].id}"
    communicator = WebsocketCommunicator(application, f"/ws/cafe/tables/?{query}", headers=[(b"origin", ORIGIN)])
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_output())["type"] == "websocket.close"
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    done, _ = await asyncio.wait([communicator.future], timeout=3)
    assert done, "the refused socket's application is still running"


@pytest.mark.parametrize("delay_ms", [0.5, 1, 2])
async def test_a_receive_cancelled_as_it_starts_ends(redis_server, delay_ms):
    """Channels cancels the layer's receive when a socket closes and waits for it to end. A cancel
    in its first millisecond used to be lost (redis-py), so the consumer of a socket that closed at
    once lived on. Each of 20 such receives must end."""
    config = channel_layers("redis", redis_server, prefix=f"asgi{uuid.uuid4().hex[:8]}")["default"]
    layer = import_string(config["BACKEND"])(**config["CONFIG"])
    still_running = 0
    for _ in range(20):
        receiving = asyncio.ensure_future(layer.receive(await layer.new_channel()))
        await asyncio.sleep(delay_ms / 1000)
        receiving.cancel()
        done, _ = await asyncio.wait([receiving], timeout=3)
        still_running += not done
    assert still_running == 0, f"{still_running} of 20 cancelled receives still run"
    await layer.flush()


async def test_a_handshake_that_fails_after_the_join_leaves_the_group(redis_layer, tenant, monkeypatch):
    """No disconnect follows a handshake that failed (here the snapshot read): the consumer must
    still leave its group, or a dead channel stays a member (and fools redis-cli and the doctor)."""
    backend, prefix, client = redis_layer
    company, _, user = tenant

    async def broken_snapshot(self):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(TableStatusConsumer, "_snapshot", broken_snapshot)
    communicator = WebsocketCommunicator(
        application, f"/ws/cafe/tables/?token={token_for(user)}", headers=[(b"origin", ORIGIN)]
    )
    with pytest.raises(RuntimeError, match="the database went away"):
        await communicator.connect()
    group = company_group(company.id)
    if backend == "redis":
        assert client.zcard(f"{prefix}:group:{group}") == 0
    else:
        assert client.pubsub_numsub(f"{prefix}__group__{group}") == [(f"{prefix}__group__{group}", 0)]


async def test_the_internals_the_layers_rely_on_are_still_there(redis_server):
    """nurcrm_realtime.layers subclasses channels_redis's pub/sub layer and redis-py's PubSub and uses their
    private names (both pinned in requirements.txt): an upgrade that moves one fails here first, naming it."""
    layer = import_string(channel_layers("redis-pubsub", redis_server)["default"]["BACKEND"])(hosts=[redis_server])
    loop_layer = layer._get_layer()
    shard = loop_layer._shards[0]
    shard._ensure_redis()
    needed = {
        "RedisPubSubChannelLayer": (layer, ["_layers", "_args", "_kwargs", "_get_layer"]),
        "RedisPubSubLoopLayer": (loop_layer, ["_shards", "_get_shard", "_subscribe_to_channel", "channels", "groups"]),
        "RedisSingleShardConnection": (shard, ["host", "channel_layer", "_redis", "_pubsub", "_receive_message"]),
        "redis.asyncio.client.PubSub": (shard._pubsub, ["on_connect", "connection_pool"]),
        "channels_redis.utils": (channels_redis.utils, ["_wrap_close", "create_pool", "decode_hosts"]),
    }
    missing = [f"{owner}.{name}" for owner, (obj, names) in needed.items() for name in names if not hasattr(obj, name)]
    assert not missing, f"moved in this release of channels_redis or redis-py: {missing}"
    assert type(shard._pubsub).__name__ == "_ResubscribingPubSub", "the layer watch would not hear of a resubscribe"
    await layer.flush()
