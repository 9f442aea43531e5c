"""Checklist item 4, Django settings as the running workers see them: ALLOWED_HOSTS,
ASGI_APPLICATION = "core.asgi.application", CHANNEL_LAYERS on Redis, DEBUG off; and its database.
The doctor's database and django steps."""

import pytest
from conftest import assert_check_passes, checks_of

testinfra_hosts = ["ansible://app"]
ITEMS = (4,)


@pytest.mark.parametrize("check", checks_of(ITEMS))
def test_the_doctors_check_passes(walk, check):
    assert_check_passes(walk, check)


def test_every_worker_reports_the_redis_channel_layer(app_facts):
    backends = {report["channel_layer"] for report in app_facts.reports.values()}
    assert backends <= {"nurcrm_realtime.layers.RedisChannelLayer", "nurcrm_realtime.layers.RedisPubSubChannelLayer"}
    assert len(app_facts.reports) == 3
