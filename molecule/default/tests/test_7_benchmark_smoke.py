"""The benchmark's smoke mode (bench/, issue 6) against the converged stack: 50 clients through nginx
and 50 on the floor get every broadcast once, well-formed, and a burst of 50 opens without an error.
It asserts delivery and correctness, never speed."""

import subprocess
import sys

import pytest
from conftest import ROOT, SCENARIO

# The benchmark drives the local container stack (bench/target.py: docker exec nurcrm-local).
pytestmark = pytest.mark.skipif(SCENARIO != "default", reason="the benchmark targets the local container stack")


def test_the_benchmark_smoke_run_delivers_every_event_to_every_client():
    run = subprocess.run([sys.executable, "-m", "bench", "smoke"], cwd=ROOT, capture_output=True, text=True)
    print(run.stdout[-4000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
