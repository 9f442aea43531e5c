"""The deployed requirements are locks made by a maintained tool: uv pip compile with every distribution's hash,
installed with --require-hashes. app/: what the app role installs on the app hosts; doctor/: what the
monitoring host installs to run nurcrm-doctor --metrics."""

import ast
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
APP, DOCTOR = ROOT / "app", ROOT / "doctor"
LOCKED = pytest.mark.parametrize("folder", [APP, DOCTOR], ids=["app", "doctor"])
# How a lock is made, in its folder; its header says so too (uv writes the command it ran).
COMPILE = ["pip", "compile", "requirements.in", "--generate-hashes", "--python-version", "3.11", "--quiet"]
# uv trusts the machine's certificate store, as pip does (a TLS-inspecting proxy's CA is there, not in uv's bundle).
UV_ENV = {**os.environ, "UV_SYSTEM_CERTS": "1"}


def entries(text):
    """Each requirement of a lock with its continuation lines, joined."""
    return [e for e in re.sub(r"\\\n\s*", " ", text).splitlines() if e and not e.lstrip().startswith("#")]


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path):
    """A requirements file's pins: canonical name -> version."""
    found = (re.match(r"^([A-Za-z0-9][\w.-]*)(?:\[[^]]*\])?==(\S+)", e) for e in entries(path.read_text()))
    return {canonical(m.group(1)): m.group(2) for m in found if m}


@LOCKED
def test_every_locked_package_is_pinned_and_hashed(folder):
    found = entries((folder / "requirements.txt").read_text())
    assert found
    for entry in found:
        assert re.match(r"^[A-Za-z0-9][\w.-]*==\S+", entry), entry
        assert "--hash=sha256:" in entry, f"no hash: {entry.split()[0]}"


@LOCKED
def test_the_lock_is_what_uv_makes_of_requirements_in(folder, tmp_path):
    """Regenerated from requirements.in (keeping the lock's pins): the same file. A hand edit fails here."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is not installed: make setup"
    (tmp_path / "requirements.in").write_text((folder / "requirements.in").read_text())
    (tmp_path / "requirements.txt").write_text((folder / "requirements.txt").read_text())
    compile_ = [uv, *COMPILE, "-o", "requirements.txt"]
    done = subprocess.run(compile_, cwd=tmp_path, env=UV_ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert entries((tmp_path / "requirements.txt").read_text()) == entries((folder / "requirements.txt").read_text())


def test_the_app_role_installs_with_require_hashes():
    code = yaml.safe_load((ROOT / "roles" / "app" / "tasks" / "build.yml").read_text())
    installs = [t for t in code if "ansible.builtin.pip" in t and t["ansible.builtin.pip"].get("requirements")]
    assert installs and all("--require-hashes" in t["ansible.builtin.pip"].get("extra_args", "") for t in installs)


@pytest.mark.parametrize(
    "package, lock",
    [
        ("ansible-core", ROOT / "requirements.txt"),
        ("pytest-testinfra", ROOT / "requirements.txt"),
        ("websockets", APP / "requirements.txt"),
        ("prometheus-client", APP / "requirements.txt"),
    ],
)
def test_the_doctor_runs_on_the_monitoring_host_what_it_runs_on_the_controller(package, lock):
    """The controller's pins (its Ansible and testinfra; the app's websockets and prometheus_client)."""
    assert pins(DOCTOR / "requirements.txt")[package] == pins(lock)[package], f"{package}: pin it as {lock.name} does"


def test_the_doctor_lock_holds_every_package_the_doctor_imports():
    """doctor/probe.py runs on the deployed hosts with their python3 alone: it is left out."""
    imported = set()
    for source in DOCTOR.glob("*.py"):
        if source.name != "probe.py":
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    imported.add(node.module.split(".")[0])
    third_party = sorted(imported - set(sys.stdlib_module_names) - {"doctor"})
    assert third_party, "the doctor imports no package: this test reads the wrong files"
    locked = pins(DOCTOR / "requirements.txt")
    for module in third_party:
        providers = {canonical(name) for name in packages_distributions().get(module, [])}
        assert providers & set(locked), f"doctor imports {module}, which no package of doctor/requirements.txt gives"
