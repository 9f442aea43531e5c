"""The smoke mode for real, against a local stack of its own (redis-server, gunicorn with 3 uvicorn
workers on a unix socket): it passes when every event arrives, and fails when sockets hear nothing."""

import shutil
import subprocess
import sys

import pytest

from bench.target import ROOT

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server (make setup)")
TERRACE = "5eed0000-0000-4000-8000-0000000000b2"  # seed_demo's second branch


def smoke(tmp_path, *args):
    command = [sys.executable, "-m", "bench", "smoke", "--target", "local", "--results", str(tmp_path), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_smoke_passes_on_a_healthy_stack_for_the_stack_and_the_floor(tmp_path):
    result = smoke(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bench smoke passed: N=50" in result.stdout and "stack 750/750, floor 750/750" in result.stdout
    assert sorted(path.name.split("-", 1)[1] for path in tmp_path.iterdir()) == [
        "smoke-burst.json",
        "smoke-fanout.json",
        "smoke-memory.json",
    ]


def test_smoke_fails_when_the_sockets_are_not_in_the_group_the_sender_uses(tmp_path):
    """Sockets scoped to the Terrace branch do not hear events about a Main hall table."""
    url = f"ws://localhost/ws/cafe/tables/?branch_id={TERRACE}"
    result = smoke(tmp_path, "--sides", "stack", "--n", "5", "--duration", "1", "--url", url)
    assert result.returncode == 1
    # For that reason alone: every socket opened and the burst passed (the group is wrong, not the handshakes).
    _, _, listed = result.stderr.partition("bench smoke FAILED:\n")
    problems = [line.strip() for line in listed.splitlines() if line.startswith("  ")]
    assert problems == ["stack: delivered 0 of 25 events"], result.stderr
