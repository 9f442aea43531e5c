"""The app's deployed requirements are a lock made by a maintained tool: uv pip compile with every
distribution's hash, which the app role installs with --require-hashes."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"
# How the lock is made; its header says so too (uv writes the command it ran).
COMPILE = ["pip", "compile", "requirements.in", "--generate-hashes", "--python-version", "3.11", "--quiet"]


def entries(text):
    """Each requirement of a lock with its continuation lines, joined."""
    return [e for e in re.sub(r"\\\n\s*", " ", text).splitlines() if e and not e.lstrip().startswith("#")]


def test_every_locked_package_is_pinned_and_hashed():
    found = entries((APP / "requirements.txt").read_text())
    assert found
    for entry in found:
        assert re.match(r"^[A-Za-z0-9][\w.-]*==\S+", entry), entry
        assert "--hash=sha256:" in entry, f"no hash: {entry.split()[0]}"


def test_the_lock_is_what_uv_makes_of_requirements_in(tmp_path):
    """Regenerated from requirements.in (keeping the lock's pins): the same file. A hand edit fails here."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is not installed: make setup"
    (tmp_path / "requirements.in").write_text((APP / "requirements.in").read_text())
    (tmp_path / "requirements.txt").write_text((APP / "requirements.txt").read_text())
    done = subprocess.run([uv, *COMPILE, "-o", "requirements.txt"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert entries((tmp_path / "requirements.txt").read_text()) == entries((APP / "requirements.txt").read_text())


def test_the_app_role_installs_with_require_hashes():
    code = yaml.safe_load((ROOT / "roles" / "app" / "tasks" / "build.yml").read_text())
    installs = [t for t in code if "ansible.builtin.pip" in t and t["ansible.builtin.pip"].get("requirements")]
    assert installs and all("--require-hashes" in t["ansible.builtin.pip"].get("extra_args", "") for t in installs)
