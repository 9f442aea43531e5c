"""Deploy timings: the first converge from a bare container, the idempotent rerun, the whole `molecule test`.

It destroys the container nurcrm-local, so it runs only when asked (`python -m bench deploy`), never as
part of `make bench`. Each step's output goes to .cache/bench/deploy-<step>.log.
"""

import re
import subprocess
import time

from bench.scenarios import log
from bench.target import CACHE, ROOT, BenchError, tool_env

COLOUR = re.compile(r"\x1b\[[0-9;]*m")
# molecule frames ansible's output in a box ("│ nurcrm-local : ok=..."): the host is the last word before the colon.
RECAP = re.compile(r"(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def recap_changed(output):
    """changed= summed over the hosts of every PLAY RECAP in ansible's output; None without one."""
    found = RECAP.findall(COLOUR.sub("", output))
    return sum(int(changed) for _, _, changed, _, _ in found) if found else None


def timed(step, argv):
    """Run one step; (seconds, output). A failed step stops the measurement."""
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env=tool_env(), capture_output=True, text=True)
    seconds = round(time.monotonic() - started, 1)
    output = result.stdout + result.stderr
    (CACHE / f"deploy-{step}.log").write_text(output)
    if result.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed after {seconds} s (see .cache/bench/deploy-{step}.log)")
    log(f"deploy {step}: {seconds} s")
    return seconds, output


def deploy_once():
    timed("engine", ["bash", "scripts/container-host.sh", "up"])
    timed("destroy", ["molecule", "destroy"])
    create_s, _ = timed("create", ["molecule", "create"])
    converge_s, _ = timed("converge", ["molecule", "converge"])
    rerun_s, output = timed("rerun", ["molecule", "converge"])  # what `make demo` runs again
    test_s, _ = timed("molecule-test", ["molecule", "test"])
    return {
        "create_s": create_s,
        "first_converge_s": converge_s,
        "rerun_s": rerun_s,
        "rerun_changed": recap_changed(output),
        "molecule_test_s": test_s,
    }


def deploy(reps, leave_up=True):
    runs = [dict(deploy_once(), rep=rep) for rep in range(reps)]
    if leave_up:  # `molecule test` ends with destroy: bring the stack back for what follows
        timed("converge-again", ["molecule", "converge"])
    return runs
