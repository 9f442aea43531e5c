"""The app under the Redis user the deployment gives it (roles/redis: the default user off, only the
layer's keys and channels, only the commands listed there): with each channel layer, a real gunicorn
serves sockets, delivers an event, watches the layer and limits sign-ins, and Redis denied it nothing."""

import asyncio
import http.client
import json
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
import yaml

from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
from tests.conftest import LAYERS, free_port
from tests.localstack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROLE_DEFAULTS = Path(__file__).resolve().parents[2] / "roles" / "redis" / "defaults" / "main.yml"


def acl_rules(prefix):
    """The app user's rules as roles/redis/templates/users.acl.j2 writes them, for this test's prefix."""
    defaults = yaml.safe_load(ROLE_DEFAULTS.read_text())
    commands = " ".join(f"+{command}" for command in defaults["redis_app_commands"])
    return f"resetkeys resetchannels ~{prefix}* &{prefix}* -@all {commands}"


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    """A redis-server with the deployment's users (and an admin, to read the ACL log): (app URL, admin client)."""
    workdir, port, password, admin = (
        tmp_path_factory.mktemp("redis-acl"),
        free_port(),
        uuid.uuid4().hex,
        uuid.uuid4().hex,
    )
    users = ["default off", f"nurcrm on >{password} {acl_rules('asgi')}", f"admin on >{admin} ~* &* +@all"]
    argv = [
        shutil.which("redis-server"),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--dir",
        str(workdir),
    ]
    for user in users:
        argv += ["--user", *user.split()]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, username="admin", password=admin, decode_responses=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://nurcrm:{password}@127.0.0.1:{port}/0", client
    server.terminate()
    server.wait(10)


def sign_in(stack, username, password):
    """POST /api/auth/token/ over the stack's unix socket, as nginx forwards it: the status."""
    connection = http.client.HTTPConnection("localhost")
    connection.sock = socket.socket(socket.AF_UNIX)
    connection.sock.connect(str(stack.sock))
    body = json.dumps({"username": username, "password": password})
    headers = {"Content-Type": "application/json", "X-Forwarded-Proto": "https", "Host": "localhost"}
    connection.request("POST", "/api/auth/token/", body, headers)
    status = connection.getresponse().status
    connection.close()
    return status


@pytest.mark.parametrize("layer", LAYERS)
def test_the_app_runs_on_its_redis_user_without_a_denied_command(tmp_path, acl_redis, layer):
    url, admin = acl_redis
    admin.acl_log_reset()
    stack = LocalStack(tmp_path, url, workers=2, layer=layer)
    try:

        async def scenario():
            token = stack.manage("issue_token", "--user", "demo").strip()
            async with stack.connect(f"token={token}") as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_established"
                await asyncio.to_thread(stack.manage, "send_test_notification", "--company", str(DEMO_COMPANY_ID))
                event = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert event["type"] == "table_status_changed", event
                await asyncio.sleep(2.5)  # the layer watch's polls, twice over

        asyncio.run(scenario())
        assert sign_in(stack, "demo", "not-the-password") == 401
    finally:
        stack.stop()
    denied = [(entry["reason"], entry["object"]) for entry in admin.acl_log()]
    assert not denied, f"Redis denied the app's user: {denied}"
    assert "NOPERM" not in stack.logs_text(), stack.logs_text()[-2000:]
