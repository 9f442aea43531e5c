"""nurcrm_realtime as another project uses it: a consumer of its own on RealtimeConsumer, with none of this
project's settings beyond Django's, and `manage.py check` naming a setting that cannot work.

The rest of what the app does (the guard, the layer watch, the fan-out, the spread, the shedding) is proven
through this project's consumer, which uses the app the same way (test_ws_guard, test_layer_reset,
test_fanout, test_balance, test_consumer).
"""

import json

import pytest
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core import checks
from django.urls import path

from nurcrm_realtime import asgi, fanout, metrics
from nurcrm_realtime.consumer import RealtimeConsumer
from nurcrm_realtime.layers import channel_layers
from tests.conftest import ORIGIN


class MenuConsumer(RealtimeConsumer):
    """A stranger's socket: one group for everyone, a hello of its own, one forwarded event, one action."""

    forward_events = ("menu_changed",)

    def group_name(self):
        return "menu"

    async def hello(self):
        return {"type": "menu", "items": ["plov"]}

    async def act(self, action, message):
        if action == "echo":
            return await self.send_json({"type": "echo", "text": message.get("text")})
        return await super().act(action, message)


class Visitor(AnonymousUser):
    pk = 7


def with_user(app):
    async def middleware(scope, receive, send):
        return await app(dict(scope, user=Visitor()), receive, send)

    return middleware


APPLICATION = asgi.application(None, with_user(URLRouter([path("ws/menu/", MenuConsumer.as_asgi())])))


async def test_a_projects_own_consumer_gets_its_hello_pong_errors_events_and_actions(db):
    ws = WebsocketCommunicator(APPLICATION, "/ws/menu/", headers=[(b"origin", ORIGIN)])
    connected, _ = await ws.connect()
    assert connected
    try:
        assert await ws.receive_json_from() == {"type": "menu", "items": ["plov"]}
        await ws.send_json_to({"action": "ping"})
        assert (await ws.receive_json_from())["type"] == "pong"
        await ws.send_to(text_data="{not json")
        assert (await ws.receive_json_from())["code"] == "invalid_json"
        await ws.send_json_to({"action": "echo", "text": "salam"})
        assert await ws.receive_json_from() == {"type": "echo", "text": "salam"}
        await ws.send_json_to({"action": "dance"})
        assert (await ws.receive_json_from())["code"] == "unknown_action"
        await get_channel_layer().group_send("menu", {"type": "menu.changed", "data": {"plov": 350}})
        assert await ws.receive_json_from() == {"type": "menu_changed", "data": {"plov": 350}}
    finally:
        await ws.disconnect()


async def test_a_foreign_origin_is_refused_and_counted_as_the_projects_own_are():
    refused = metrics.HANDSHAKES.labels(outcome="origin")
    before = refused._value.get()
    ws = WebsocketCommunicator(APPLICATION, "/ws/menu/", headers=[(b"origin", b"https://evil.example")])
    connected, _ = await ws.connect()
    assert not connected
    assert refused._value.get() == before + 1


def test_the_forwarded_events_are_declared_by_the_consumers_that_forward_them():
    assert {"menu_changed", "table_status_changed"} <= fanout.FORWARDED
    assert json.loads(fanout.frame({"type": "menu.changed", "data": 1})) == {"type": "menu_changed", "data": 1}
    assert MenuConsumer.menu_changed.__name__ == "menu_changed"


def test_a_consumer_that_does_not_name_its_group_says_so():
    with pytest.raises(NotImplementedError, match="group_name"):
        RealtimeConsumer().group_name()


def realtime_checks():
    return [(found.id, found.msg) for found in checks.run_checks(tags=["nurcrm_realtime"])]


def test_the_projects_settings_pass_the_apps_checks():
    assert realtime_checks() == []


@pytest.mark.parametrize(
    ("name", "value", "id"),
    [
        ("WS_MESSAGE_RATE", 0, "nurcrm_realtime.E001"),
        ("WS_MAX_SOCKETS_PER_USER", "50", "nurcrm_realtime.E001"),
        ("WS_REBALANCE_GRACE", -1, "nurcrm_realtime.E001"),
        ("CHANNEL_LAYER_REJOIN_INTERVAL", 86400, "nurcrm_realtime.E002"),
    ],
)
def test_a_setting_that_cannot_work_is_named_by_manage_py_check(settings, name, value, id):
    setattr(settings, name, value)
    found = realtime_checks()
    assert [found_id for found_id, _ in found] == [id], found
    assert name in found[0][1]


def test_channels_redis_own_layer_is_a_warning_naming_the_apps_layers(settings):
    settings.CHANNEL_LAYERS = channel_layers("redis", "redis://127.0.0.1:1/0")
    assert realtime_checks() == []
    settings.CHANNEL_LAYERS["default"]["BACKEND"] = "channels_redis.pubsub.RedisPubSubChannelLayer"
    found = realtime_checks()
    assert [found_id for found_id, _ in found] == ["nurcrm_realtime.W001"], found
