"""Checklist item 4, Django settings as the deployed env gives them: ALLOWED_HOSTS,
ASGI_APPLICATION = "core.asgi.application", CHANNEL_LAYERS on Redis."""

import json

import pytest
from conftest import manage

testinfra_hosts = ["ansible://app"]

SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({'ALLOWED_HOSTS': s.ALLOWED_HOSTS,"
    " 'ASGI_APPLICATION': s.ASGI_APPLICATION, 'BACKEND': s.CHANNEL_LAYERS['default']['BACKEND'], 'DEBUG': s.DEBUG}))"
)


@pytest.fixture(scope="module")
def settings(host):
    return json.loads(manage(host, "shell", "--verbosity", "0", "-c", SHOW).splitlines()[-1])


def test_allowed_hosts_is_an_explicit_list_with_the_public_name(settings, site):
    assert "*" not in settings["ALLOWED_HOSTS"]
    assert site.server_name in settings["ALLOWED_HOSTS"]


def test_asgi_application_is_core_asgi(settings):
    assert settings["ASGI_APPLICATION"] == "core.asgi.application"


def test_channel_layer_backend_is_redis(settings):
    assert settings["BACKEND"] in (
        "channels_redis.core.RedisChannelLayer",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
    )


def test_debug_is_off(settings):
    assert settings["DEBUG"] is False
