"""--fix: rerun the first broken layer's playbook on its hosts, the way its fix line says."""

import os
import re
import subprocess
from dataclasses import dataclass

from doctor.hosts import tool
from doctor.registry import ROOT, Rerun


@dataclass
class Outcome:
    command: str
    rc: int
    changed: list  # each changed (or, with --check, would-change) task: its header, diff and status lines
    recap: list


def rerun(first, check_mode=False):
    """Run the failure's rerun (with --check --diff when check_mode) from the bundle's root."""
    plan = Rerun(**first["rerun"])
    argv = plan.argv(check_mode)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    done = subprocess.run([tool(argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, env=env)
    changed, recap = summary(done.stdout)
    if done.returncode != 0 and not recap:  # it never got to a host: say why
        recap = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return Outcome(" ".join(argv), done.returncode, changed, recap)


def summary(output):
    """The changed tasks (header to status lines, diffs included) and the PLAY RECAP of ansible-playbook's output.
    A looped task prints a status line per item: it counts as changed when any item changed."""
    changed, task, recap = [], [], None

    def close(task):
        if any(line.startswith(("changed:", "fatal:", "failed:")) for line in task):
            changed.append([line for line in task if line.strip()])

    for line in output.splitlines():
        if recap is not None:
            if line.strip():
                recap.append(line.rstrip())
        elif line.startswith("PLAY RECAP"):
            close(task)
            recap, task = [line.rstrip()], []
        elif line.startswith(("TASK [", "RUNNING HANDLER [", "PLAY [")):
            close(task)
            task = [re.sub(r"\s*\*+$", "", line)] if not line.startswith("PLAY [") else []
        elif task:
            task.append(line.rstrip())
    close(task)
    return changed, recap or []
