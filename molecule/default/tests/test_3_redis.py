"""Checklist item 3, Redis: it answers PING, every worker is on the same Redis (URL, database,
prefix), and a connected client's group shows up where channels_redis keeps it; the doctor's redis
and groups steps."""

import asyncio

import pytest
from conftest import DEMO_COMPANY, assert_check_passes, checks_of, receive, socket_to

testinfra_hosts = ["ansible://app"]
ITEMS = (3,)


@pytest.mark.parametrize("check", checks_of(ITEMS))
def test_the_doctors_check_passes(walk, check):
    assert_check_passes(walk, check)


def test_redis_cli_shows_a_connected_clients_group(app_redis_cli, app_facts, site, token):
    """What an operator types: ZRANGE asgi:group:cafe_tables_<company> (RedisChannelLayer)
    or PUBSUB NUMSUB asgi__group__cafe_tables_<company> (RedisPubSubChannelLayer)."""
    env = app_facts.gunicorn["env"]
    prefix, group = env["CHANNEL_LAYER_PREFIX"] or "asgi", f"cafe_tables_{DEMO_COMPANY}"

    async def check():
        async with socket_to(site, f"token={token}") as ws:
            assert (await receive(ws))["type"] == "connection_established"
            if env["CHANNEL_LAYER"] in (None, "redis"):
                members = app_redis_cli("ZRANGE", f"{prefix}:group:{group}", "0", "-1").split()
                assert any(member.startswith("specific.") for member in members), members
            else:
                numsub = app_redis_cli("PUBSUB", "NUMSUB", f"{prefix}__group__{group}").split()
                assert int(numsub[1]) >= 1, numsub

    asyncio.run(check())
