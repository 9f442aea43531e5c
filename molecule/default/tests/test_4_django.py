"""Checklist item 4, Django settings as the running workers see them: ALLOWED_HOSTS,
ASGI_APPLICATION = "core.asgi.application", CHANNEL_LAYERS on Redis, DEBUG off."""

import pytest
from conftest import assert_passes

from doctor import checks

testinfra_hosts = ["ansible://app"]

DJANGO_CHECKS = [
    checks.django_allowed_hosts,
    checks.django_asgi_application,
    checks.django_channel_layer,
    checks.django_debug_off,
]


@pytest.mark.parametrize("check", DJANGO_CHECKS, ids=lambda c: c.__name__)
def test_django_settings_pass(facts, check):
    assert_passes(check(facts))


def test_every_worker_reports_the_redis_channel_layer(facts):
    backends = {report["channel_layer"] for report in facts.reports.values()}
    assert backends <= {"core.layers.RedisChannelLayer", "core.layers.RedisPubSubChannelLayer"}
    assert len(facts.reports) == 3
