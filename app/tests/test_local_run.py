"""The local run the README shows, for real: gunicorn with 3 uvicorn workers on a unix socket,
redis-server on loopback, seed_demo, issue_token, and a WebSocket client (checklist items 2, 3, 8)."""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from websockets.asyncio.client import unix_connect
from websockets.exceptions import ConnectionClosed

from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID

pytestmark = [pytest.mark.slow, pytest.mark.redis]

APP_DIR = Path(__file__).resolve().parent.parent
WORKERS = 3


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    tmp = tmp_path_factory.mktemp("local-run")
    env = {
        "PATH": os.environ["PATH"],
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "JWT_SIGNING_KEY": uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "localhost",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "REDIS_URL": redis_server,
        "CHANNEL_LAYER_PREFIX": f"asgi{uuid.uuid4().hex[:6]}",
    }

    def manage(*args):
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=APP_DIR, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    manage("migrate", "--verbosity", "0")
    manage("seed_demo")
    sock, log = tmp / "asgi.sock", tmp / "gunicorn.log"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "core.asgi:application",
            "--worker-class",
            "uvicorn_worker.UvicornWorker",
            "--workers",
            str(WORKERS),
            "--bind",
            f"unix:{sock}",
            "--error-logfile",
            str(log),
            "--log-level",
            "info",
        ],
        cwd=APP_DIR,
        env=env,
    )
    deadline = time.monotonic() + 30
    while not (
        sock.exists()
        and len(children(server.pid)) == WORKERS
        and log.read_text().count("Application startup complete") >= WORKERS
    ):
        assert server.poll() is None and time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
        time.sleep(0.1)
    yield {"manage": manage, "sock": str(sock), "log": log, "pid": server.pid}
    server.terminate()
    server.wait(20)


def connect(stack, query):
    return unix_connect(stack["sock"], f"ws://localhost/ws/cafe/tables/?{query}", origin="http://localhost")


def test_gunicorn_runs_three_uvicorn_workers_on_the_unix_socket(stack):
    assert len(children(stack["pid"])) == WORKERS
    assert Path(stack["sock"]).is_socket()
    assert "uvicorn_worker.UvicornWorker" in stack["log"].read_text()


async def test_a_notification_sent_from_the_command_line_reaches_a_connected_client(stack):
    token = stack["manage"]("issue_token", "--user", "demo").strip()
    async with connect(stack, f"token={token}") as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert hello["type"] == "connection_established" and len(hello["tables"]) == 9
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"
        output = await asyncio.to_thread(stack["manage"], "send_test_notification", "--company", str(DEMO_COMPANY_ID))
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert event["type"] == "table_status_changed"
    assert f"cafe_tables_{DEMO_COMPANY_ID}: 1 consumer(s)" in output


async def test_an_expired_token_is_closed_with_4401_by_the_real_server(stack):
    token = stack["manage"]("issue_token", "--user", "demo", "--ttl", "-1").strip()
    async with connect(stack, f"token={token}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4401


def test_tokens_never_reach_the_server_log(stack):
    """Runs after the sockets above: uvicorn logged their paths, with the token redacted."""
    log = stack["log"].read_text()
    assert "token=[redacted]" in log
    assert "eyJhbGciOi" not in log, "a JWT (they all start with this header) is in the log"
