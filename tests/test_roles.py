"""The roles read as files, without a host: what reaches a shell is quoted, and each role's defaults
file and its argument spec (which preflight validates against) say the same."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "tasks").is_dir())


def tasks(role):
    for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            for inner in [task, *task.get("block", []), *task.get("rescue", [])]:
                yield path.name, inner


def shell_commands():
    for role in ROLES:
        for name, task in tasks(role):
            shell = task.get("ansible.builtin.shell")
            if shell:
                yield f"{role}/{name}: {task['name']}", shell["cmd"] if isinstance(shell, dict) else shell


@pytest.mark.parametrize("task, command", list(shell_commands()), ids=lambda value: str(value)[:60])
def test_every_value_a_shell_command_gets_is_quoted(task, command):
    """A path or name with a space, a quote or a `$(...)` stays one word: `{{ value | quote }}`."""
    unquoted = [v for v in re.findall(r"{{(.*?)}}", command) if not re.search(r"\|\s*quote\s*$", v.strip())]
    assert not unquoted, f"{task}: {unquoted}"


@pytest.mark.parametrize("role", ROLES)
def test_a_roles_defaults_are_its_argument_specs_defaults(role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(options), f"not in the spec: {set(defaults) - set(options)}"
    for name, value in defaults.items():
        if "default" in options[name]:
            assert options[name]["default"] == value, f"{name}: defaults {value!r}, spec {options[name]['default']!r}"
    for name, option in options.items():
        assert "default" in option or option.get("required") or name in defaults, f"{name}: no default, not required"
