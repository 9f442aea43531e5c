"""A role's template rendered by Ansible itself (the template module, on this machine), with the role's defaults
and the variables a test gives: what the role would write on a host."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def render(tmp_path, role, template, **variables):
    """roles/<role>/templates/<template> with roles/<role>/defaults/main.yml and `variables` over them."""
    values = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) | variables
    (tmp_path / "vars.json").write_text(json.dumps(values))
    dest = tmp_path / Path(template).with_suffix("").name
    src = ROOT / "roles" / role / "templates" / template
    ansible = str(Path(sys.executable).parent / "ansible")
    task = ["-m", "ansible.builtin.template", "-a", f"src={src} dest={dest}", "-e", f"@{tmp_path / 'vars.json'}"]
    subprocess.run([ansible, "localhost", "-c", "local", *task], check=True, capture_output=True, cwd=ROOT)
    return dest
