"""The bundle's per-host check (nurcrm_ops.selfcheck) against projects that are not app/: a WebSocket
server under uvicorn on a unix socket that knows nothing of the bundle (no hello, no ping, no token), and
one that refuses every handshake. app/'s own case runs in test_local_run.py."""

import subprocess
import sys
import time

import pytest

from tests.localstack import OPS_PATH

ACCEPTING = """
async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        if scope["path"] == "/ws/live/":
            await send({"type": "websocket.accept"})
        else:
            await send({"type": "websocket.close", "code": 4404})
        while (await receive())["type"] != "websocket.disconnect":
            pass
"""


@pytest.fixture
def server(tmp_path):
    (tmp_path / "project.py").write_text(ACCEPTING)
    sock = tmp_path / "asgi.sock"
    command = [sys.executable, "-m", "uvicorn", "project:app", "--uds", str(sock), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=tmp_path)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert process.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield sock
    process.terminate()
    process.wait(10)


def selfcheck(sock, *args):
    command = [sys.executable, "-m", "nurcrm_ops.selfcheck", "--socket", str(sock), "--host", "crm.example"]
    command += ["--workers", "3", "--hello", "", "--ping", "", *args]
    return subprocess.run(command, env={"PYTHONPATH": OPS_PATH}, capture_output=True, text=True, timeout=30)


def test_a_project_that_knows_nothing_of_the_bundle_passes_with_its_path_alone(server):
    done = selfcheck(server, "--url", "/ws/live/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: 3 handshakes on {server} accepted")


def test_a_refused_handshake_fails_in_one_line_naming_the_answer(server):
    """Closed before it is accepted: the ASGI server answers the upgrade with 403, not 101."""
    done = selfcheck(server, "--url", "/ws/elsewhere/")
    assert done.returncode == 1
    assert "answered 'HTTP/1.1 403 Forbidden', not 101" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_missing_socket_is_one_line(tmp_path):
    done = selfcheck(tmp_path / "absent.sock", "--url", "/ws/live/")
    assert done.returncode == 1
    assert "FileNotFoundError" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_token_in_the_url_needs_its_command(tmp_path):
    done = selfcheck(tmp_path / "absent.sock", "--url", "/ws/live/?token={token}")
    assert done.returncode == 2
    assert "give the command that prints one after --" in done.stderr
