"""Deploys under load (issue 15): SCREENS staff screens open and a table event every 200 ms (bench/screens.py)
while `site.yml` deploys a changed release, then while `playbooks/rollback.yml` goes back. On one app host
(the container) that is gunicorn's graceful reload; on the cluster, the rolling deploy behind nginx. Each
run records what the screens saw: closes by code, failed handshakes, the longest time a screen was without
a socket, stale screens, and how long the playbook took. molecule/cluster/tests/test_6_rolling.py asserts
the same under the same load; this measures it for the report.
"""

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.scenarios import log
from bench.screens import Load
from bench.target import ROOT, BenchError, tool_env
from doctor.walk import gather

SCREENS = 300


BROKEN = "return await self.close(code=1011)"  # passes Django's checks and imports, serves no socket


def app_variant(folder, mark, broken=False):
    """A copy of the app that is a new release (one comment more, `mark`: new on every call), behaving the
    same, or `broken`: its consumer closes every socket (the rolling deploy's per-host check must catch it)."""
    copy = Path(folder) / "app"
    shutil.copytree(ROOT / "app", copy, ignore=shutil.ignore_patterns("__pycache__", "tests", "*.sqlite3"))
    with open(copy / "core" / "urls.py", "a") as urls:
        urls.write(f"# release variant: {mark} {time.time()}\n")
    if broken:
        consumers = copy / "apps" / "cafe" / "consumers.py"
        head = "    async def hello(self):\n"
        consumers.write_text(consumers.read_text().replace(head, f"{head}        {BROKEN}  # broken on purpose\n", 1))
    return str(copy)


def playbook(inventory, path, *args):
    started = time.monotonic()
    done = subprocess.run(
        ["ansible-playbook", path, "-i", str(inventory), *args],
        cwd=ROOT,
        env=dict(tool_env(), ANSIBLE_NOCOLOR="1"),
        capture_output=True,
        text=True,
    )
    seconds = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        raise BenchError(f"{path} failed after {seconds} s: {(done.stdout + done.stderr)[-600:]}")
    return seconds


def under_load(site, token, screens, first_address, action):
    async def scenario():
        async with Load(site, token, screens, first_address) as load:
            seconds = await asyncio.to_thread(action)
            _, stale = await load.settle()
            return {"playbook_s": seconds, "stale": len(stale), **load.summary()}

    return asyncio.run(scenario())


def measure(inventory, screens=SCREENS, reps=1):
    """Each repetition: a deploy of a changed release, then a rollback; one run record for each."""
    facts = gather(str(inventory))
    token = facts.on(facts.session_host).probe.get("token")
    if not token:
        raise BenchError(f"the doctor could not mint a token on {facts.session_host}")
    app_hosts = len(facts.groups.get("app", []))
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for rep in range(reps):
            source = app_variant(os.path.join(folder, str(rep)), "bench rolling")
            for action, argv in [
                ("deploy", ["site.yml", "-e", f"app_source_dir={source}"]),
                ("rollback", ["playbooks/rollback.yml"]),
            ]:
                run = under_load(
                    facts.site, token, screens, 20000 + 2000 * len(runs), lambda argv=argv: playbook(inventory, *argv)
                )
                runs.append({"rep": rep, "action": action, "app_hosts": app_hosts, **run})
                log(f"rolling {action}: {run}")
    return runs
