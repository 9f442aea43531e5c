"""Checklist item 3, Redis: it answers PING, every worker is on the same Redis (URL, database,
prefix), and a connected client's group shows up where channels_redis keeps it."""

import asyncio
import shlex

import pytest
from conftest import DEMO_COMPANY, assert_passes, receive, socket_to

from doctor import checks

testinfra_hosts = ["ansible://app"]

REDIS_CHECKS = [checks.redis_reachable, checks.redis_authenticated, checks.workers_share_redis]


@pytest.mark.parametrize("check", REDIS_CHECKS, ids=lambda c: c.__name__)
def test_redis_passes(facts, check):
    assert_passes(check(facts))


def test_the_group_of_the_doctors_socket_exists(facts):
    assert_passes(checks.group_exists(facts))


def redis_cli(host, env_file, *args):
    """redis-cli with the app's own REDIS_URL, read on the host: its password stays there."""
    command = f'set -a; . {env_file}; exec redis-cli --no-auth-warning -u "$REDIS_URL" ' + shlex.join(args)
    return host.check_output(f"bash -c {shlex.quote(command)}")


def test_redis_cli_shows_a_connected_clients_group(host, facts, app_env_file, site, token):
    """What an operator types: ZRANGE asgi:group:cafe_tables_<company> (RedisChannelLayer)
    or PUBSUB NUMSUB asgi__group__cafe_tables_<company> (RedisPubSubChannelLayer)."""
    env = facts.gunicorn["env"]
    prefix, group = env["CHANNEL_LAYER_PREFIX"] or "asgi", f"cafe_tables_{DEMO_COMPANY}"

    async def check():
        async with socket_to(site, f"token={token}") as ws:
            assert (await receive(ws))["type"] == "connection_established"
            if env["CHANNEL_LAYER"] in (None, "redis"):
                members = redis_cli(host, app_env_file, "ZRANGE", f"{prefix}:group:{group}", "0", "-1").split()
                assert any(member.startswith("specific.") for member in members), members
            else:
                numsub = redis_cli(host, app_env_file, "PUBSUB", "NUMSUB", f"{prefix}__group__{group}").split()
                assert int(numsub[1]) >= 1, numsub

    asyncio.run(check())
