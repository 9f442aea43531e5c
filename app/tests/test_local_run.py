"""The local run app/README.md shows, for real: gunicorn with 3 uvicorn workers on a unix socket,
redis-server on loopback, seed_demo, issue_token, and a WebSocket client (checklist items 2, 3, 8)."""

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
from tests.conftest import free_port
from tests.localstack import APP_DIR, OPS_PATH, LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.redis]

WORKERS = 3
RELEASE = "3f2a9c1b7d4e"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    tmp = tmp_path_factory.mktemp("local-run")
    (tmp / "release.json").write_text(json.dumps({"id": RELEASE}))
    (tmp / "metrics").mkdir()
    stack = LocalStack(
        tmp,
        redis_server,
        workers=WORKERS,
        RELEASE_FILE=str(tmp / "release.json"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),
    )
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


SOCKETS_PER_WORKER = 4


def open_sockets(port):
    """nurcrm_ws_open_sockets as the exporter serves it: {worker pid: sockets open in it}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        families = text_string_to_metric_families(answer.read().decode())
    found = collections.Counter()
    for sample in (s for family in families for s in family.samples if s.name == "nurcrm_ws_open_sockets"):
        found[int(sample.labels["pid"])] += sample.value
    return found


@contextlib.contextmanager
def only_running(pid, workers):
    """The other workers paused (SIGSTOP), so `pid` alone accepts: which worker the kernel wakes for an
    accept is its choice, and on an idle machine it is often the same one every time."""
    others = [other for other in workers if other != pid]
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


async def test_the_exporter_adds_up_the_open_sockets_of_every_worker(stack):
    """4 sockets in each of the three workers: the exporter, a process of its own reading the workers'
    PROMETHEUS_MULTIPROC_DIR, serves each worker's own count; closed, every count is 0."""
    port = free_port()
    command = [sys.executable, "-m", "nurcrm_ops.metrics_server", "--listen", f"127.0.0.1:{port}"]
    command += ["--dir", stack.env["PROMETHEUS_MULTIPROC_DIR"]]
    exporter = subprocess.Popen(command, cwd=APP_DIR, env={"PYTHONPATH": OPS_PATH}, stderr=subprocess.DEVNULL)
    token = stack.manage("issue_token", "--user", "demo").strip()
    workers = stack.worker_pids()
    expected = collections.Counter({pid: SOCKETS_PER_WORKER for pid in workers})
    sockets = []
    try:
        for pid in workers:
            with only_running(pid, workers):
                opened = await asyncio.gather(*(stack.connect(f"token={token}") for _ in range(SOCKETS_PER_WORKER)))
                sockets += opened
                for ws in opened:
                    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_established"
        counts = await asyncio.to_thread(until, lambda: open_sockets(port), lambda c: c == expected)
        assert set(counts) == set(stack.worker_pids()), "a series per worker, and only the workers'"
        for ws in sockets:
            await ws.close()
        await asyncio.to_thread(until, lambda: open_sockets(port), lambda c: c.total() == 0)
    finally:
        for ws in sockets:
            await ws.close()
        exporter.terminate()
        exporter.wait(10)


def until(read, done, timeout=10):
    """read() until done(what it read); the exporter may not answer yet, the sockets may still be closing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = read()
            if done(found):
                return found
        except OSError:
            found = "no answer"
        assert time.monotonic() < deadline, f"last read: {found}"
        time.sleep(0.1)


def reports(tmp_path, stack, releases):
    """Worker reports as gunicorn.conf.py's post_worker_init writes them (this run has no such hook)."""
    for pid, release in zip(stack.worker_pids(), releases, strict=False):
        (tmp_path / f"worker-{pid}.json").write_text(json.dumps({"pid": pid, "release": release}))
    return str(tmp_path)


def selfcheck(stack, release, *options, token_command=("issue_token", "--user", "demo")):
    """The bundle's per-host check (nurcrm_ops.selfcheck) with the asgi role's defaults for app/."""
    command = [sys.executable, "-m", "nurcrm_ops.selfcheck", "--socket", str(stack.sock), "--host", "localhost"]
    command += ["--url", "/ws/cafe/tables/?token={token}", "--workers", str(WORKERS), "--release", release]
    command += ["--hello", "connection_established", "--ping", '{"action": "ping"}', *options]
    command += ["--", sys.executable, "manage.py", *token_command]
    return subprocess.run(command, cwd=APP_DIR, env=stack.manage_env, capture_output=True, text=True)


def test_selfcheck_passes_when_every_worker_serves_the_release(stack):
    done = selfcheck(stack, RELEASE)
    assert done.returncode == 0, done.stderr
    assert f"{WORKERS} handshakes on {stack.sock} accepted; release {RELEASE}" in done.stdout


def test_selfcheck_fails_in_one_line_when_the_socket_refuses_the_token(stack):
    """A token the project refuses (expired) closes the socket: the check names the close code."""
    done = selfcheck(stack, RELEASE, token_command=("issue_token", "--user", "demo", "--ttl", "0"))
    assert done.returncode == 1
    assert "the socket was closed with 4401" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_selfcheck_names_a_token_command_that_fails(stack):
    done = selfcheck(stack, RELEASE, token_command=("issue_token", "--user", "nobody"))
    assert done.returncode == 1
    assert "token command" in done.stderr and "no user named 'nobody'" in done.stderr, done.stderr


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


def test_selfcheck_passes_on_a_live_host_whose_events_come_before_the_pong(stack):
    """A host rejoins the upstream under load: its company's events reach the check's sockets too."""
    command = [sys.executable, "manage.py", "shell", "--verbosity", "0", "-c", SENDER]
    with subprocess.Popen(command, cwd=APP_DIR, env=stack.manage_env, stdout=subprocess.PIPE, text=True) as sender:
        try:
            assert sender.stdout.readline().strip() == "sending"
            done = selfcheck(stack, RELEASE)
        finally:
            sender.kill()
    assert done.returncode == 0, done.stderr


def test_selfcheck_fails_naming_the_check_when_the_socket_serves_another_release(stack):
    done = selfcheck(stack, "a1b2c3d4e5f6")
    assert done.returncode == 1
    says = f"the hello says release '{RELEASE}', not a1b2c3d4e5f6"
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr


READY = APP_DIR.parent / "roles/asgi/files/nurcrm-ready"


def ready(stack, release, folder, timeout=1):
    """The bundle's readiness wait (roles/asgi/files/nurcrm-ready) on this real gunicorn's workers."""
    args = ["--workers", str(WORKERS), "--release", release, "--main-pid", str(stack.server.pid)]
    args += ["--reports", folder, "--socket", str(stack.sock), "--timeout", str(timeout)]
    return subprocess.run([sys.executable, str(READY), *args], capture_output=True, text=True, timeout=30)


def test_the_readiness_wait_passes_when_every_worker_reports_the_release(stack, tmp_path):
    done = ready(stack, RELEASE, reports(tmp_path, stack, [RELEASE] * WORKERS))
    says = f"ready: {WORKERS} workers of gunicorn serve release {RELEASE}"
    assert (done.returncode, done.stdout.strip()) == (0, says), done.stderr


@pytest.mark.parametrize(
    ("reported", "says"),
    [
        ([RELEASE] * (WORKERS - 1), f"{WORKERS - 1} of {WORKERS} workers have reported"),
        ([RELEASE, "0ld0ld0ld0ld", RELEASE], f"some workers run release 0ld0ld0ld0ld, not {RELEASE}"),
    ],
    ids=["a-worker-missing", "a-worker-on-another-release"],
)
def test_the_readiness_wait_fails_naming_what_is_missing(stack, tmp_path, reported, says):
    done = ready(stack, RELEASE, reports(tmp_path, stack, reported))
    assert done.returncode == 1
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
