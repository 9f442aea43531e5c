"""The local run the README shows, for real: gunicorn with 3 uvicorn workers on a unix socket,
redis-server on loopback, seed_demo, issue_token, and a WebSocket client (checklist items 2, 3, 8)."""

import asyncio
import json
import subprocess
import sys

import pytest
from websockets.exceptions import ConnectionClosed

from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
from tests.localstack import APP_DIR, LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.redis]

WORKERS = 3
RELEASE = "3f2a9c1b7d4e"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    tmp = tmp_path_factory.mktemp("local-run")
    (tmp / "release.json").write_text(json.dumps({"id": RELEASE}))
    stack = LocalStack(tmp, redis_server, workers=WORKERS, RELEASE_FILE=str(tmp / "release.json"))
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


def reports(tmp_path, stack, releases):
    """Worker reports as gunicorn.conf.py's post_worker_init writes them (this run has no such hook)."""
    for pid, release in zip(stack.worker_pids(), releases, strict=False):
        (tmp_path / f"worker-{pid}.json").write_text(json.dumps({"pid": pid, "release": release}))
    return str(tmp_path)


def selfcheck(stack, release, folder):
    args = ["--release", release, "--workers", str(WORKERS), "--socket", str(stack.sock), "--reports", folder]
    return stack.run_manage("selfcheck", *args)


def test_selfcheck_passes_when_every_worker_serves_the_release(stack, tmp_path):
    done = selfcheck(stack, RELEASE, reports(tmp_path, stack, [RELEASE] * WORKERS))
    assert done.returncode == 0, done.stderr
    assert f"{WORKERS} workers run release {RELEASE}" in done.stdout


SENDER = f"""
import asyncio
from channels.layers import get_channel_layer
from apps.cafe.models import Table
from apps.cafe.notifications import TABLE_STATUS_CHANGED, table_payload
from apps.cafe.groups import recipient_groups
table = Table.objects.filter(company_id="{DEMO_COMPANY_ID}").first()
message = {{"type": TABLE_STATUS_CHANGED, "data": table_payload(table)}}

async def flood():
    layer = get_channel_layer()
    print("sending", flush=True)
    while True:  # about a thousand a second, each as the real sender sends it
        for group in recipient_groups(table.company_id, table.branch_id):
            await layer.group_send(group, message)
        await asyncio.sleep(0.001)

asyncio.run(flood())
"""


def test_selfcheck_passes_on_a_live_host_whose_events_come_before_the_pong(stack, tmp_path):
    """A host rejoins the upstream under load: its company's events reach the check's sockets too."""
    folder = reports(tmp_path, stack, [RELEASE] * WORKERS)
    command = [sys.executable, "manage.py", "shell", "--verbosity", "0", "-c", SENDER]
    with subprocess.Popen(command, cwd=APP_DIR, env=stack.env, stdout=subprocess.PIPE, text=True) as sender:
        try:
            assert sender.stdout.readline().strip() == "sending"
            done = selfcheck(stack, RELEASE, folder)
        finally:
            sender.kill()
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("expected", "reported", "says"),
    [
        (RELEASE, [RELEASE] * (WORKERS - 1), f"workers: {WORKERS - 1} of {WORKERS} workers have reported"),
        (RELEASE, [RELEASE, "0ld0ld0ld0ld", RELEASE], "workers: some run release 0ld0ld0ld0ld, not"),
        ("a1b2c3d4e5f6", ["a1b2c3d4e5f6"] * WORKERS, f"socket: the hello says release '{RELEASE}', not a1b2c3d4e5f6"),
    ],
    ids=["a-worker-missing", "a-worker-on-another-release", "the-socket-serves-another-release"],
)
def test_selfcheck_fails_naming_the_check(stack, tmp_path, expected, reported, says):
    done = selfcheck(stack, expected, reports(tmp_path, stack, reported))
    assert done.returncode == 1
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
