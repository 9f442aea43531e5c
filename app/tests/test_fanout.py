"""A broadcast encoded once per worker and, with the pub/sub layer, written straight to each socket by
the layer's reader (nurcrm_realtime.fanout): the same frames, in the same order, as through the handlers.

Against a real Redis; the last test runs the real server (gunicorn, uvicorn) with a client that
stops reading.
"""

import asyncio
import json
import socket
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils.module_loading import import_string

from apps.cafe.consumers import TableStatusConsumer
from apps.cafe.groups import company_group
from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
from apps.cafe.models import Table
from apps.cafe.notifications import TABLE_STATUS_CHANGED, _broadcast, table_payload
from nurcrm_realtime import fanout
from nurcrm_realtime.layers import channel_layers
from tests.conftest import connect_ok, socket_to, token_for
from tests.localstack import LocalStack

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
CLOSED_BEHIND = "broadcasts behind: closing it with 1013"


@pytest.fixture
def handlers_called(monkeypatch):
    """How many frames went out through the consumer's handlers (the rest went through an outlet)."""
    calls = []
    send_event = TableStatusConsumer.send_event

    async def counted(self, kind, event):
        calls.append(kind)
        await send_event(self, kind, event)

    monkeypatch.setattr(TableStatusConsumer, "send_event", counted)
    return calls


def first_table(company):
    return database_sync_to_async(lambda: Table.objects.filter(company=company).order_by("number").first())()


@database_sync_to_async
def broadcast(table, seq):
    """What send_table_status_changed_notification(table) sends, numbered."""
    _broadcast(TABLE_STATUS_CHANGED, table.company_id, table.branch_id, dict(table_payload(table), seq=seq))


async def test_every_socket_gets_every_broadcast_once_in_order_as_the_handler_would_send_it(
    redis_layer, tenant, handlers_called
):
    """Three sockets, 30 broadcasts: each socket gets the 30 frames, in order, byte for byte the
    encoding of {"type": "table_status_changed", "data": payload}. With the pub/sub layer
    none goes through a handler; with RedisChannelLayer every one does (its reads are per socket)."""
    company, _, user = tenant
    table = await first_table(company)
    async with socket_to(token=token_for(user)) as a, socket_to(token=token_for(user)) as b:
        async with socket_to(token=token_for(user)) as c:
            sockets = (a, b, c)
            for ws in sockets:
                await connect_ok(ws)
            for seq in range(30):
                await broadcast(table, seq)
            frames = [[await ws.receive_from(timeout=5) for _ in range(30)] for ws in sockets]
            for ws in sockets:
                assert await ws.receive_nothing(timeout=0.3)
    expected = [
        json.dumps({"type": "table_status_changed", "data": dict(table_payload(table), seq=seq)}) for seq in range(30)
    ]
    assert frames == [expected] * 3
    assert len(handlers_called) == (0 if redis_layer[0] == "redis-pubsub" else 90)


async def test_a_broadcast_during_the_handshake_follows_the_hello(redis_layer, tenant, monkeypatch):
    """An event that arrives after the consumer joined its group but before it accepted (here: sent
    while the snapshot is read) reaches the client after connection_established, not before it."""
    company, _, user = tenant
    table = await first_table(company)
    snapshot = TableStatusConsumer.__dict__["_snapshot"]  # database_sync_to_async's descriptor

    async def snapshot_with_a_change(self):
        await broadcast(table, 1)
        await asyncio.sleep(0.3)  # the layer's reader has the event before the hello goes out
        return await snapshot.__get__(self, type(self))()

    monkeypatch.setattr(TableStatusConsumer, "_snapshot", snapshot_with_a_change)
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)  # the first frame is connection_established
        event = await ws.receive_json_from(timeout=5)
    assert (event["type"], event["data"]["seq"]) == ("table_status_changed", 1)


async def test_an_event_from_any_sender_takes_the_fast_path(redis_layer, tenant, handlers_called):
    """group_send by another sender (an operator's shell): with the pub/sub layer the layer encodes the
    frame once and no handler runs, as for the app's own notifications; with RedisChannelLayer the
    handler builds the same frame."""
    company, _, user = tenant
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        await get_channel_layer().group_send(company_group(company.id), {"type": "order.created", "data": {"id": "x"}})
        frame = await ws.receive_json_from(timeout=5)
    assert frame == {"type": "order_created", "data": {"id": "x"}}
    assert handlers_called == ([] if redis_layer[0] == "redis-pubsub" else ["order_created"])


def test_only_the_events_the_consumer_forwards_are_encoded_by_the_layer():
    """Each forwarded type has a handler that forwards it as it is; anything else is the consumer's."""
    assert set(TableStatusConsumer.forward_events) <= fanout.FORWARDED
    for kind in TableStatusConsumer.forward_events:
        assert getattr(TableStatusConsumer, kind), kind
    assert fanout.frame({"type": "table.status_changed", "data": {"id": 1}}) == (
        '{"type": "table_status_changed", "data": {"id": 1}}'
    )
    assert fanout.frame({"type": "websocket.receive", "text": "{}"}) is None
    assert fanout.frame({"type": "order.created"}) is None


async def test_a_closed_socket_is_no_longer_written_to(settings, redis_server, tenant):
    """After a disconnect the worker holds no outlet for the socket and the group has no member."""
    settings.CHANNEL_LAYERS = channel_layers("redis-pubsub", redis_server, prefix=f"asgi{uuid.uuid4().hex[:8]}")
    company, _, user = tenant
    layer = get_channel_layer()
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        assert len(layer._get_layer().outlets) == 1
    await asyncio.sleep(0.1)
    assert layer._get_layer().outlets == {}
    assert layer._get_layer().groups == {}


# --- The outlet's order and backpressure ----------------------------------------------------------


class Socket:
    """A consumer's send as uvicorn's: it returns at once unless the transport is full (`stuck`)."""

    def __init__(self, name):
        self.channel_name, self.frames, self.closed = name, [], None
        self.writable = asyncio.Event()
        self.writable.set()

    async def send(self, text_data):
        await self.writable.wait()
        self.frames.append(text_data)

    async def close(self, code):
        self.closed = code


async def test_a_stuck_socket_holds_up_neither_the_others_nor_its_own_order():
    fast, stuck = Socket("fast"), Socket("stuck")
    outlets = [fanout.Outlet(fast), fanout.Outlet(stuck)]
    for outlet in outlets:
        outlet.open()
    stuck.writable.clear()
    for n in range(5):
        for outlet in outlets:
            outlet.put(f"frame {n}")
    assert fast.frames == [f"frame {n}" for n in range(5)], "written at once, without a task"
    assert stuck.frames == []
    stuck.writable.set()
    await asyncio.sleep(0.05)
    assert stuck.frames == [f"frame {n}" for n in range(5)]
    outlets[1].put("frame 5")
    assert stuck.frames[-1] == "frame 5", "back to writing at once"


async def test_frames_before_open_wait_for_it():
    socket_ = Socket("connecting")
    outlet = fanout.Outlet(socket_)
    outlet.put("early")
    await asyncio.sleep(0.05)
    assert socket_.frames == []
    outlet.open()
    outlet.put("late")
    await asyncio.sleep(0.05)
    assert socket_.frames == ["early", "late"]


async def overflowed(name):
    """A socket that stopped reading while more than the backlog was put to its outlet."""
    socket_ = Socket(name)
    outlet = fanout.Outlet(socket_)
    outlet.open()
    socket_.writable.clear()
    for n in range(fanout.BACKLOG + 2):
        outlet.put(f"frame {n}")
    await asyncio.sleep(0.05)
    return socket_


async def test_a_socket_too_far_behind_is_closed_with_1013(caplog):
    socket_ = await overflowed("behind")
    assert socket_.closed == 1013
    assert CLOSED_BEHIND in caplog.text
    socket_.writable.set()
    await asyncio.sleep(0.05)
    assert socket_.frames == [], "a closed outlet writes nothing more"


# --- The real server ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_closed_while_the_others_keep_up(tmp_path, redis_server):
    """gunicorn with one uvicorn worker and the pub/sub layer: one client stops reading. Its socket's
    buffers fill, its outlet falls behind and the worker closes it (1013); a reading client gets
    every frame, in order, meanwhile."""
    stack = LocalStack(tmp_path, redis_server, workers=1, layer="redis-pubsub")
    token = stack.manage("issue_token", "--user", "demo").strip()
    config = channel_layers("redis-pubsub", redis_server, prefix=stack.env["CHANNEL_LAYER_PREFIX"])["default"]
    sender = import_string(config["BACKEND"])(**config["CONFIG"])
    reader = await stack.connect(f"token={token}", max_size=None)
    stalled = await stack.connect(f"token={token}", max_size=None)
    try:
        for ws in (reader, stalled):
            assert json.loads(await ws.recv())["type"] == "connection_established"
        stalled.transport.pause_reading()  # as a client whose network stalled: the kernel buffers fill
        stalled.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        padding = "x" * 4000
        sent, got, closed = 0, [], False
        # In rounds of 100 frames, until the worker closes the stalled socket (the kernel's and the
        # transports' buffers hold a few MiB first): the reader reads each round as it goes.
        while not closed and sent < 5000:
            for seq in range(sent, sent + 100):
                event = {"type": TABLE_STATUS_CHANGED, "data": {"seq": seq, "padding": padding}}
                await sender.group_send(company_group(DEMO_COMPANY_ID), event)
            sent += 100
            got += [json.loads(await asyncio.wait_for(reader.recv(), 10))["data"]["seq"] for _ in range(100)]
            closed = CLOSED_BEHIND in stack.logs_text()
        assert closed, f"{sent} frames later the stalled socket is still open"
        assert got == list(range(sent))
        await sender.group_send(company_group(DEMO_COMPANY_ID), {"type": TABLE_STATUS_CHANGED, "data": {"after": 1}})
        assert json.loads(await asyncio.wait_for(reader.recv(), 10))["data"] == {"after": 1}
    finally:
        await reader.close()
        stalled.transport.abort()
        await sender.flush()
        stack.stop()
