"""The monitoring host's copy of the doctor (roles/monitoring/tasks/doctor.yml copies __monitoring_doctor_files):
a copy of exactly those files, run on its own, imports every check and reads what it needs of the bundle."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "monitoring"


def copied_files():
    """__monitoring_doctor_files as Ansible renders it from the role's vars."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    done = subprocess.run(
        ["ansible", "localhost", "-c", "local", "-m", "ansible.builtin.debug", "-a", "var=__monitoring_doctor_files",
         "-e", f"@{ROLE / 'vars' / 'main.yml'}", "-e", f"role_path={ROLE}"],
        cwd=ROOT, capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["__monitoring_doctor_files"]


def test_the_copy_lists_every_module_of_the_doctor():
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "doctor").rglob("*.py") if "tests" not in p.parts}
    assert modules <= set(copied_files()), f"not copied: {sorted(modules - set(copied_files()))}"


def test_the_copy_alone_lists_every_check(tmp_path):
    for name in copied_files():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    done = subprocess.run([sys.executable, "-m", "doctor", "--list"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    here = subprocess.run([sys.executable, "-m", "doctor", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout == here.stdout
