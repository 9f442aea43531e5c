"""Checklist item 3, Redis: it answers PING, every worker is on the same Redis (URL, database,
prefix), and a connected client's group shows up where channels_redis keeps it."""

import asyncio
import hashlib
import shlex

from conftest import DEMO_COMPANY, SERVICE, receive
from test_2_asgi import worker_pids

testinfra_hosts = ["ansible://app"]

LAYER_SETTINGS = ("REDIS_URL", "CHANNEL_LAYER", "CHANNEL_LAYER_PREFIX")


def redis_cli(host, env_file, *args):
    """redis-cli with the app's own REDIS_URL, read on the host: its password stays there."""
    command = f'set -a; . {env_file}; exec redis-cli --no-auth-warning -u "$REDIS_URL" ' + shlex.join(args)
    return host.check_output(f"bash -c {shlex.quote(command)}")


def fingerprint(value):
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def test_redis_answers_ping(host, app_env_file):
    assert redis_cli(host, app_env_file, "PING") == "PONG"


def test_every_worker_uses_the_same_redis_database_and_prefix(host, app_env):
    """All workers read one REDIS_URL (host, port, database), one layer and one prefix: the env file's."""
    expected = tuple(fingerprint(app_env.get(name, "")) for name in LAYER_SETTINGS)
    for pid in worker_pids(host):
        environ = dict(
            item.split("=", 1) for item in host.file(f"/proc/{pid}/environ").content_string.split("\0") if "=" in item
        )
        seen = tuple(fingerprint(environ.get(name, "")) for name in LAYER_SETTINGS)
        assert seen == expected, f"worker {pid} differs from {SERVICE}'s env file in {LAYER_SETTINGS} (hashes shown)"


def test_channel_layer_is_a_redis_one(app_env):
    assert app_env["CHANNEL_LAYER"] in ("redis", "redis-pubsub")


def test_a_connected_clients_group_appears_in_redis(host, app_env, app_env_file, site, token):
    """RedisChannelLayer: ZRANGE asgi:group:cafe_tables_<company>; pub/sub layer: PUBSUB NUMSUB asgi__group__..."""
    prefix, group = app_env.get("CHANNEL_LAYER_PREFIX", "asgi"), f"cafe_tables_{DEMO_COMPANY}"

    async def check():
        async with site.socket(f"token={token}") as ws:
            assert (await receive(ws))["type"] == "connection_established"
            if app_env["CHANNEL_LAYER"] == "redis":
                members = redis_cli(host, app_env_file, "ZRANGE", f"{prefix}:group:{group}", "0", "-1").split()
                assert any(member.startswith("specific.") for member in members), members
            else:
                numsub = redis_cli(host, app_env_file, "PUBSUB", "NUMSUB", f"{prefix}__group__{group}").split()
                assert int(numsub[1]) >= 1, numsub

    asyncio.run(check())
