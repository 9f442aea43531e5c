"""playbooks/library/nurcrm_pack.py, which packs the app's code, the bundle's packages and the doctor on the
controller: the same bytes from any clone (the app's release is named by the archive's checksum), and the same
bytes GNU tar made before it, so that a host deployed by an earlier version of the bundle builds nothing anew."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "playbooks" / "library"
spec = importlib.util.spec_from_file_location("nurcrm_pack", LIBRARY / "nurcrm_pack.py")
pack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pack)

# The app role's exclusions (roles/app/tasks/code.yml).
EXCLUDE = ["__pycache__", "*.pyc", "tests"]


def tree(root, mode=0o644, mtime=1_700_000_000):
    """A small project: code, an executable, caches and tests at two depths, a symlink."""
    for name, text in {
        "manage.py": "print('manage')\n",
        "core/settings.py": "DEBUG = False\n",
        "core/__pycache__/settings.cpython-311.pyc": "cache",
        "apps/cafe/views.py": "def view(): ...\n",
        "apps/cafe/tests/test_views.py": "def test(): ...\n",
        "apps/cafe/views.pyc": "cache",
    }.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    (root / "bin").mkdir()
    (root / "bin" / "run").write_text("#!/bin/sh\n")
    (root / "bin" / "run").chmod(0o700)
    (root / "core" / "current.py").symlink_to("settings.py")
    for path in root.rglob("*"):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def test_two_clones_with_other_times_owners_and_modes_pack_to_the_same_bytes(tmp_path):
    one = tree(tmp_path / "one")
    other = tree(tmp_path / "other", mode=0o600, mtime=1_800_000_000)
    os.chown(other / "manage.py", 1000, 1000)
    assert pack.pack(str(one), ["."], EXCLUDE) == pack.pack(str(other), ["."], EXCLUDE)
    (other / "manage.py").write_text("print('changed')\n")
    assert pack.pack(str(one), ["."], EXCLUDE) != pack.pack(str(other), ["."], EXCLUDE)


@pytest.mark.parametrize("paths", [["."], ["core", "bin"], ["manage.py", "apps/cafe/views.py", "core"]])
def test_the_bytes_are_gnu_tars_so_a_release_packed_before_keeps_its_id(tmp_path, paths):
    src = tree(tmp_path / "src")
    gnu = tmp_path / "gnu.tar"
    subprocess.run(
        ["tar", "-C", src, *(f"--exclude={p}" for p in EXCLUDE), "--sort=name", "--mtime=@0", "--owner=0",
         "--group=0", "--numeric-owner", "--mode=u=rwX,go=rX", "-cf", gnu, *sorted(paths)],
        check=True,
    )  # fmt: skip
    assert pack.pack(str(src), paths, EXCLUDE) == gnu.read_bytes()


def test_excluded_names_are_left_out_at_any_depth_and_modes_are_rwx_or_rw(tmp_path):
    src = tree(tmp_path / "src")
    listing = subprocess.run(["tar", "-tvf", "-"], input=pack.pack(str(src), ["."], EXCLUDE), capture_output=True)
    lines = listing.stdout.decode().splitlines()
    names = [line.split()[-1] if "->" not in line else line.split()[-3] for line in lines]
    assert "./apps/cafe/views.py" in names and "./core/current.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests" in n], names
    modes = {line.split()[-1]: line.split()[0] for line in lines if "->" not in line}
    assert modes["./bin/run"] == "-rwxr-xr-x" and modes["./manage.py"] == "-rw-r--r--", modes
    assert all(line.split()[1] == "0/0" for line in lines), lines


def module(*args):
    """The module as a play runs it: ansible's ad hoc command on this machine."""
    run = subprocess.run(
        ["ansible", "localhost", "-M", str(LIBRARY), "-m", "nurcrm_pack", "-a", json.dumps(dict(args)), "-o"],
        capture_output=True, text=True, cwd=ROOT,
        env=dict(os.environ, ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false"),
    )  # fmt: skip
    return run.returncode, json.loads(run.stdout.split("=>", 1)[1]) if "=>" in run.stdout else run.stdout


def test_the_module_writes_the_archive_once_and_names_its_checksum(tmp_path):
    src, dest = tree(tmp_path / "src"), tmp_path / "cache" / "app.tar"
    rc, first = module(("src", str(src)), ("dest", str(dest)), ("exclude", EXCLUDE))
    assert rc == 0 and first["changed"], first
    assert first["sha256"] == subprocess.check_output(["sha256sum", dest], text=True).split()[0]
    rc, again = module(("src", str(src)), ("dest", str(dest)), ("exclude", EXCLUDE))
    assert rc == 0 and not again["changed"] and again["sha256"] == first["sha256"], again


def test_a_path_that_is_not_there_is_one_clear_error(tmp_path):
    rc, result = module(("src", str(tmp_path)), ("dest", str(tmp_path / "x.tar")), ("paths", ["nothing"]))
    assert rc != 0 and result["msg"] == f"cannot pack {tmp_path}: {tmp_path}/nothing: no such file or folder to pack"
    assert not (tmp_path / "x.tar").exists()
