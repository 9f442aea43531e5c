"""The socket at ws/cafe/tables/: checklist items 6-8 (connect, ping, events, bad input)."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from apps.cafe.consumers import TableStatusConsumer
from apps.cafe.models import Table
from apps.cafe.views import send_table_status_changed_notification
from tests.conftest import close_code, connect_ok, socket_to, token_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_valid_token_gets_connection_established_with_a_snapshot(tenant):
    """A valid JWT in ?token= is accepted and the first frame carries every table's status."""
    company, branches, user = tenant
    async with socket_to(token=token_for(user)) as ws:
        hello = await connect_ok(ws)
    assert hello["company_id"] == str(company.id)
    assert hello["branch_id"] is None
    assert len(hello["tables"]) == 4
    assert {t["status"] for t in hello["tables"]} == {"free"}


async def test_the_hello_names_the_release_the_worker_runs(tenant, settings):
    """Clients (and the rolling deploy's checks) see which release answered them."""
    settings.RELEASE = "3f2a9c1b7d4e"
    async with socket_to(token=token_for(tenant[2])) as ws:
        assert (await connect_ok(ws))["release"] == "3f2a9c1b7d4e"


async def test_handshakes_past_the_workers_limit_are_shed_with_1013_and_the_next_one_is_served(
    tenant, settings, monkeypatch
):
    """A reconnect storm: with WS_MAX_PENDING_HANDSHAKES=2 and slow snapshots, of five handshakes at once two
    get their hello and three are closed with 1013 (try again later) at once; once they are through, a
    handshake is served again."""
    settings.WS_MAX_PENDING_HANDSHAKES = 2
    snapshot = TableStatusConsumer.__dict__["_snapshot"]

    async def slow_snapshot(self):
        await asyncio.sleep(0.5)
        return await snapshot.__get__(self, type(self))()

    monkeypatch.setattr(TableStatusConsumer, "_snapshot", slow_snapshot)
    token = token_for(tenant[2])

    async def first_frame():
        async with socket_to(token=token) as ws:
            connected, _ = await ws.connect(timeout=5)
            assert connected
            message = await ws.receive_output(timeout=5)
            return message.get("code") if message["type"] == "websocket.close" else json.loads(message["text"])["type"]

    firsts = await asyncio.gather(*(first_frame() for _ in range(5)))
    assert sorted(firsts, key=str) == [1013, 1013, 1013, "connection_established", "connection_established"]
    assert TableStatusConsumer.handshaking == 0
    assert await first_frame() == "connection_established"


async def test_ping_gets_pong(tenant):
    """{"action": "ping"} is answered with {"type": "pong"}."""
    async with socket_to(token=token_for(tenant[2])) as ws:
        await connect_ok(ws)
        await ws.send_json_to({"action": "ping"})
        assert (await ws.receive_json_from())["type"] == "pong"


async def test_token_in_subprotocol_is_answered_with_the_fixed_protocol_name(tenant):
    """A token offered as a subprotocol authenticates; the server answers `nurcrm.bearer`, never the token."""
    token = token_for(tenant[2])
    async with socket_to(subprotocols=[settings.WS_AUTH_SUBPROTOCOL, token]) as ws:
        connected, subprotocol = await ws.connect()
        assert connected
        assert subprotocol == settings.WS_AUTH_SUBPROTOCOL
        assert (await ws.receive_json_from())["type"] == "connection_established"


@pytest.mark.parametrize(
    "token",
    [None, "", "not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"],
    ids=["missing", "empty", "malformed", "bad-signature"],
)
async def test_missing_or_malformed_token_is_closed_with_4401(tenant, token):
    """No usable token: accepted, then closed with 4401."""
    async with socket_to(token=token) as ws:
        assert await close_code(ws) == 4401


async def test_expired_token_is_closed_with_4401(tenant):
    """An expired token: accepted, then closed with 4401."""
    async with socket_to(token=token_for(tenant[2], ttl=-5)) as ws:
        assert await close_code(ws) == 4401


async def test_refusal_keeps_the_subprotocol_so_browsers_see_the_code(tenant):
    """A bad token sent as a subprotocol is refused after accepting with the protocol name."""
    async with socket_to(subprotocols=[settings.WS_AUTH_SUBPROTOCOL, "garbage"]) as ws:
        connected, subprotocol = await ws.connect()
        assert (connected, subprotocol) == (True, settings.WS_AUTH_SUBPROTOCOL)
        assert (await ws.receive_output())["code"] == 4401


async def test_token_of_a_deactivated_user_is_closed_with_4401(tenant):
    """A token outliving its user's access is refused."""
    user = tenant[2]
    token = token_for(user)
    user.is_active = False
    await database_sync_to_async(user.save)()
    async with socket_to(token=token) as ws:
        assert await close_code(ws) == 4401


async def test_branch_of_another_company_is_closed_with_4403(tenant, other_tenant):
    """branch_id must belong to the user's company."""
    foreign_branch = other_tenant[1][0]
    async with socket_to(token=token_for(tenant[2]), branch_id=str(foreign_branch.id)) as ws:
        assert await close_code(ws) == 4403


async def test_malformed_branch_id_is_closed_with_4400(tenant):
    """branch_id that is not a UUID is a bad request."""
    async with socket_to(token=token_for(tenant[2]), branch_id="main") as ws:
        assert await close_code(ws) == 4400


async def test_user_without_company_is_closed_with_4403(db):
    """A user of no company sees no cafe."""
    from apps.users.models import User

    loner = await database_sync_to_async(User.objects.create_user)("loner", password="pw-loner-1")
    async with socket_to(token=token_for(loner)) as ws:
        assert await close_code(ws) == 4403


async def test_foreign_origin_is_refused_at_the_handshake(tenant):
    """An Origin outside ALLOWED_HOSTS never reaches the consumer."""
    async with socket_to(token=token_for(tenant[2]), origin=b"https://evil.example") as ws:
        connected, _ = await ws.connect()
        assert not connected


async def test_unknown_path_is_refused_at_the_handshake(tenant):
    """A WebSocket to a path with no route is refused, not crashed on."""
    async with socket_to(path="/ws/cafe/nope/", token=token_for(tenant[2])) as ws:
        connected, _ = await ws.connect()
        assert not connected


BAD_FRAMES = {
    "malformed-json": ({"text_data": "{not json"}, "invalid_json"),
    "json-array": ({"text_data": "[1, 2]"}, "invalid_message"),
    "json-string": ({"text_data": '"ping"'}, "invalid_message"),
    "unknown-action": ({"text_data": json.dumps({"action": "drop_tables"})}, "unknown_action"),
    "no-action": ({"text_data": json.dumps({"hello": 1})}, "unknown_action"),
    "binary": ({"bytes_data": b"\x00\x01"}, "binary_not_supported"),
    "deep-nesting": ({"text_data": "[" * 100_000 + "]" * 100_000}, "message_too_large"),
    "deep-nesting-under-limit": ({"text_data": "[" * 30_000 + "]" * 30_000}, "invalid_json"),
    "oversized": ({"text_data": json.dumps({"action": "ping", "pad": "x" * 70_000})}, "message_too_large"),
}


@pytest.mark.parametrize("frame,code", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_bad_frame_gets_an_error_reply_and_the_socket_stays_open(tenant, frame, code):
    """Each kind of bad frame is answered with {"type": "error"}; a ping afterwards still works."""
    async with socket_to(token=token_for(tenant[2])) as ws:
        await connect_ok(ws)
        await ws.send_to(**frame)
        reply = await ws.receive_json_from()
        assert (reply["type"], reply["code"]) == ("error", code)
        await ws.send_json_to({"action": "ping"})
        assert (await ws.receive_json_from())["type"] == "pong"


async def _first_table(branch):
    return await database_sync_to_async(lambda: Table.objects.filter(branch=branch).first())()


async def test_table_status_change_reaches_the_company_socket(tenant):
    """send_table_status_changed_notification(table) arrives as {"type": "table_status_changed", "data": ...}."""
    company, branches, user = tenant
    table = await _first_table(branches[0])
    async with socket_to(token=token_for(user)) as ws:
        await connect_ok(ws)
        table.status = Table.Status.OCCUPIED
        await database_sync_to_async(table.save)()
        await database_sync_to_async(send_table_status_changed_notification)(table)
        event = await ws.receive_json_from()
    assert event["type"] == "table_status_changed"
    assert event["data"]["id"] == str(table.id)
    assert event["data"]["status"] == "occupied"
    assert event["data"]["branch_id"] == str(branches[0].id)


async def test_branch_socket_gets_its_branch_events_and_not_another_branchs(tenant):
    """A socket scoped with branch_id hears its own branch only."""
    company, (main, terrace), user = tenant
    async with socket_to(token=token_for(user), branch_id=str(main.id)) as ws:
        hello = await connect_ok(ws)
        assert {t["branch_id"] for t in hello["tables"]} == {str(main.id)}
        await database_sync_to_async(send_table_status_changed_notification)(await _first_table(terrace))
        await database_sync_to_async(send_table_status_changed_notification)(await _first_table(main))
        event = await ws.receive_json_from()
        assert event["data"]["branch_id"] == str(main.id)
        assert await ws.receive_nothing(timeout=0.2)


async def test_other_company_events_never_arrive(tenant, other_tenant):
    """Company isolation on the socket: another company's table change is not delivered."""
    async with socket_to(token=token_for(tenant[2])) as ws:
        await connect_ok(ws)
        await database_sync_to_async(send_table_status_changed_notification)(await _first_table(other_tenant[1][0]))
        assert await ws.receive_nothing(timeout=0.2)
