"""The local run the README shows, for real: gunicorn with 3 uvicorn workers on a unix socket,
redis-server on loopback, seed_demo, issue_token, and a WebSocket client (checklist items 2, 3, 8)."""

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
from tests.localstack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.redis]

WORKERS = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    stack = LocalStack(tmp_path_factory.mktemp("local-run"), redis_server, workers=WORKERS)
    yield stack
    stack.stop()


def test_gunicorn_runs_three_uvicorn_workers_on_the_unix_socket(stack):
    assert len(stack.worker_pids()) == WORKERS
    assert stack.sock.is_socket()
    assert "uvicorn_worker.UvicornWorker" in stack.log.read_text()


async def test_a_notification_sent_from_the_command_line_reaches_a_connected_client(stack):
    token = stack.manage("issue_token", "--user", "demo").strip()
    async with stack.connect(f"token={token}") as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert hello["type"] == "connection_established" and len(hello["tables"]) == 9
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"
        output = await asyncio.to_thread(stack.manage, "send_test_notification", "--company", str(DEMO_COMPANY_ID))
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert event["type"] == "table_status_changed"
    assert f"cafe_tables_{DEMO_COMPANY_ID}: 1 consumer(s)" in output


async def test_an_expired_token_is_closed_with_4401_by_the_real_server(stack):
    token = stack.manage("issue_token", "--user", "demo", "--ttl", "-1").strip()
    async with stack.connect(f"token={token}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4401


def test_tokens_never_reach_the_server_log(stack):
    """Runs after the sockets above: uvicorn logged their paths, with the token redacted."""
    log = stack.logs_text()
    assert "token=[redacted]" in log
    assert "eyJhbGciOi" not in log, "a JWT (they all start with this header) is in the log"
