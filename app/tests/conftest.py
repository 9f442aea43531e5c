"""Shared fixtures: tenants, tokens, a WebSocket client for the full ASGI stack, a real Redis."""

import shutil
import socket
import subprocess
import time
import uuid
from contextlib import asynccontextmanager
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import redis
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.cafe.models import Table
from apps.users.models import Branch, Company, User
from core.asgi import application  # imported once, here: its django.setup() reconfigures logging
from nurcrm_realtime.layers import channel_layers

ORIGIN = b"https://app.nurcrm.kg"


@pytest.fixture
def make_company(db):
    def make(name="Cafe", branches=("Main",), tables=2):
        company = Company.objects.create(name=name)
        made = [Branch.objects.create(company=company, name=branch) for branch in branches]
        for branch in made:
            for number in range(1, tables + 1):
                Table.objects.create(company=company, branch=branch, number=number)
        return company, made

    return make


@pytest.fixture
def tenant(make_company):
    """A company with branches Main and Terrace, two tables each, and a staff user."""
    company, branches = make_company("Tenant", branches=("Main", "Terrace"))
    user = User.objects.create_user("staff", password="pw-staff-1", company=company)
    return company, branches, user


@pytest.fixture
def other_tenant(make_company):
    company, branches = make_company("Other")
    user = User.objects.create_user("rival", password="pw-rival-1", company=company)
    return company, branches, user


def token_for(user, ttl=None):
    token = AccessToken.for_user(user)
    if ttl is not None:
        token.set_exp(lifetime=timedelta(seconds=ttl))
    return str(token)


@pytest.fixture
def api():
    def client_for(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
        return client

    return client_for


@asynccontextmanager
async def socket_to(path="/ws/cafe/tables/", token=None, origin=ORIGIN, subprotocols=None, **query):
    """A WebsocketCommunicator on core.asgi.application, the app gunicorn serves; always disconnected."""
    params = dict(query, **({"token": token} if token is not None else {}))
    url = path + (f"?{urlencode(params)}" if params else "")
    headers = [(b"origin", origin)] if origin else []
    communicator = WebsocketCommunicator(application, url, headers=headers, subprotocols=subprotocols)
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def connect_ok(communicator):
    """Connect, expect acceptance and the connection_established snapshot; return the snapshot."""
    connected, _ = await communicator.connect()
    assert connected, "the handshake was refused"
    hello = await communicator.receive_json_from()
    assert hello["type"] == "connection_established", hello
    return hello


async def close_code(communicator):
    """Connect and return the application close code the server sent after accepting."""
    connected, _ = await communicator.connect()
    assert connected, "expected accept-then-close, got a refused handshake"
    message = await communicator.receive_output()
    assert message["type"] == "websocket.close", message
    return message.get("code")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A real redis-server on a free loopback port, in a folder of its own; restartable."""

    def __init__(self, workdir):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not shutil.which(binary):
            pytest.fail("redis-server is not installed: run `make setup` (it installs Debian's redis-server)")
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def client(self):
        """A client that does not retry: redis-py's default retries made SHUTDOWN itself a 4 s outage."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0))

    def start(self):
        import redis

        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client, deadline = self.client(), time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    pytest.fail(f"redis-server did not answer PING on port {self.port}")
                time.sleep(0.05)

    def stop(self):
        self.process.terminate()
        self.process.wait(10)

    def restart(self):
        """SHUTDOWN, as `systemctl restart redis-server` does, then start again on the same port:
        down for some 20 ms, all data gone (no persistence, as in production)."""
        import redis

        try:
            self.client().shutdown(nosave=True)
        except redis.ConnectionError:
            pass
        self.process.wait(10)
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server started for this test session: its URL."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


LAYERS = ("redis", "redis-pubsub")


@pytest.fixture(params=LAYERS, ids=LAYERS)
def redis_layer(request, settings, redis_server):
    """Point the app at the real Redis with one of the two layers and a prefix of this test's own:
    (the layer's name, the prefix, a Redis client)."""
    prefix = f"asgi{uuid.uuid4().hex[:8]}"
    settings.REDIS_URL = redis_server
    settings.CHANNEL_LAYER = request.param
    settings.CHANNEL_LAYER_PREFIX = prefix
    settings.CHANNEL_LAYERS = channel_layers(request.param, redis_server, prefix=prefix)
    return request.param, prefix, redis.Redis.from_url(redis_server, decode_responses=True)


@pytest.fixture
def restartable_redis(tmp_path):
    """A redis-server of this test's own, which it may restart."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()
