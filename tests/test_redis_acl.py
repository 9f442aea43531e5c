"""The app's Redis user as the redis role writes it (roles/redis/templates/users.acl.j2, rendered by Ansible
itself), loaded by a real redis-server: the channel layer's keys and channels only, and a project's other
uses (a cache, say) only when redis_app_extra_* name them (docs/project.md)."""

import shutil
import socket
import subprocess
import time

import pytest
import redis

from tests import rendering

PASSWORD = "s3cret-app"
pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server (scripts/setup.sh)")


def render(tmp_path, **extra):
    """users.acl.j2 as the role renders it, with the wiring's prefix."""
    variables = {"redis_app_user": "nurcrm", "redis_app_key_prefix": "asgi", "redis_password": PASSWORD}
    variables |= {"redis_sentinel": False, "redis_monitor_password": "", **extra}
    return rendering.render(tmp_path, "redis", "users.acl.j2", **variables)


def serve(tmp_path, acl):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--aclfile", str(acl), "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, username="nurcrm", password=PASSWORD)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, client
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def test_by_default_the_app_user_touches_only_the_layers_keys(tmp_path):
    process, client = serve(tmp_path, render(tmp_path))
    try:
        client.set("asgi:probe", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("cache:1:menu", "1")
    finally:
        process.terminate()
        process.wait(10)


def test_a_projects_cache_is_allowed_when_named(tmp_path):
    acl = render(tmp_path, redis_app_extra_keys=["cache:*"], redis_app_extra_commands=["mget", "incrby"])
    process, client = serve(tmp_path, acl)
    try:
        client.set("cache:1:menu", "1")
        assert client.mget("cache:1:menu", "asgi:none") == [b"1", None]
        assert client.incrby("cache:1:hits", 2) == 2
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("celery:task", "1")  # still nothing else
    finally:
        process.terminate()
        process.wait(10)


def test_each_other_client_gets_its_own_user_with_its_own_keys(tmp_path):
    """redis_extra_users: the CRM's Celery broker keeps working as its own user, and only on its keys."""
    celery = {"name": "celery", "password": "s3cret-celery", "keys": ["celery*", "_kombu*", "unacked*"]}
    reader = {"name": "reports", "password": "s3cret-reports", "keys": ["report:*"], "commands": ["@read"]}
    process, client = serve(tmp_path, render(tmp_path, redis_extra_users=[celery, reader]))
    try:
        broker = redis.Redis(port=client.connection_pool.connection_kwargs["port"], username="celery",
                             password="s3cret-celery")  # fmt: skip
        broker.lpush("celery", "task")
        assert broker.brpop("celery", 1) == (b"celery", b"task")
        with pytest.raises(redis.exceptions.NoPermissionError):
            broker.set("asgi:probe", "1")  # not the channel layer's keys
        with pytest.raises(redis.exceptions.NoPermissionError):
            broker.flushall()  # nor the dangerous commands
        reports = redis.Redis(port=broker.connection_pool.connection_kwargs["port"], username="reports",
                              password="s3cret-reports")  # fmt: skip
        assert reports.get("report:daily") is None
        with pytest.raises(redis.exceptions.NoPermissionError):
            reports.set("report:daily", "1")  # @read only
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=broker.connection_pool.connection_kwargs["port"]).ping()  # the default user stays off
        assert "s3cret" not in (tmp_path / "users.acl").read_text()
    finally:
        process.terminate()
        process.wait(10)
