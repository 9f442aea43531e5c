"""The roles read as files, without a host: what reaches a shell is quoted, and each variable's value is
declared once. A role's defaults/main.yml holds its values (or, for a value several layers read, the bundle's
wiring, playbooks/group_vars/all/wiring.yml); its meta/argument_specs.yml (which preflight validates
against) says what each option is, and restates no value."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "tasks").is_dir())
WIRING = ROOT / "playbooks" / "group_vars" / "all" / "wiring.yml"
# The Python types of a declared value that each argument spec type accepts (Ansible's own check coerces
# more, e.g. "5" to an int: a declared value is of its type). raw takes anything.
TYPES = {"str": str, "path": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict,
         "raw": object}  # fmt: skip


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


def defaults(role):
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}


def wiring():
    return (yaml.safe_load(WIRING.read_text()) or {}) if WIRING.is_file() else {}


def entry_points(role):
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return spec["argument_specs"]


def options(role):
    return entry_points(role)["main"]["options"]


def every_option(opts, prefix=""):
    """Each option as (dotted name, its spec), suboptions (a dict's or a list's `options`) included."""
    for name, option in (opts or {}).items():
        yield prefix + name, option
        yield from every_option(option.get("options"), f"{prefix}{name}.")


def templated(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def type_errors(name, value, option):
    """What is wrong with a declared value for its option: its type, its elements' type, its choice."""
    if templated(value):
        return []  # Ansible templates it first: its type shows only on a host
    kind = option.get("type", "str")
    assert kind in TYPES, f"{name}: the spec's type {kind!r} is not one this test knows"
    if not isinstance(value, TYPES[kind]) or (kind in ("int", "float") and isinstance(value, bool)):
        return [f"{name}: {value!r} is a {type(value).__name__}, the spec says {kind}"]
    errors = []
    if kind == "list" and "elements" in option:
        element = {key: option[key] for key in ("choices", "options") if key in option}
        for index, item in enumerate(value):
            errors += type_errors(f"{name}[{index}]", item, {**element, "type": option["elements"]})
    elif "choices" in option and value not in option["choices"]:
        errors.append(f"{name}: {value!r} is not one of {option['choices']}")
    return errors


@pytest.mark.parametrize("role", ROLES)
def test_a_roles_argument_spec_declares_no_value(role):
    """defaults/main.yml is the one place a role's value is declared: a `default:` in the spec would be a second
    one, which Ansible never reads (it validates; the role's defaults give the value) and which drifts."""
    declared = [
        f"{entry}: {name}"
        for entry, spec in entry_points(role).items()
        for name, option in every_option(spec.get("options"))
        if "default" in option
    ]
    assert not declared, (
        f"roles/{role}/meta/argument_specs.yml declares a default: for {declared}; "
        f"the value belongs in roles/{role}/defaults/main.yml alone"
    )


@pytest.mark.parametrize("role", ROLES)
def test_each_of_a_roles_defaults_is_an_option_of_its_spec(role):
    """A value the spec does not know is never validated (and preflight does not see it)."""
    unknown = sorted(set(defaults(role)) - set(options(role)))
    assert not unknown, f"roles/{role}/defaults/main.yml: {unknown} are not options of its argument spec"


@pytest.mark.parametrize("role", ROLES)
def test_each_option_is_required_or_has_its_one_value(role):
    """An option is either required (the inventory or the vault gives it, and the role has no value for it)
    or declared once: in the role's defaults, or in the bundle's wiring for a value several layers read."""
    own, wired = defaults(role), wiring()
    for name, option in options(role).items():
        if option.get("required"):
            assert name not in own, f"{role}: {name} is required, yet roles/{role}/defaults/main.yml gives it"
        else:
            assert name in own or name in wired, (
                f"{role}: {name} is not required and has no value in roles/{role}/defaults/main.yml"
                f" (nor in {WIRING.relative_to(ROOT)})"
            )
        assert not (name in own and name in wired), (
            f"{role}: {name} is declared twice, in roles/{role}/defaults/main.yml and {WIRING.relative_to(ROOT)}"
        )


@pytest.mark.parametrize("role", ROLES)
def test_no_two_roles_declare_one_variable(role):
    others = {name: other for other in ROLES if other != role for name in defaults(other)}
    twice = sorted(f"{name} (also roles/{others[name]})" for name in defaults(role) if name in others)
    assert not twice, f"roles/{role}/defaults/main.yml: {twice}"


@pytest.mark.parametrize("role", ROLES)
def test_each_declared_value_is_of_its_options_type(role):
    """Each value of the role's defaults (and of the wiring, for the role's options) is of the spec's type, its
    list's elements of the spec's elements, and one of its choices; a Jinja string is typed only once templated."""
    spec, wired = options(role), wiring()
    declared = {**{name: wired[name] for name in spec if name in wired}, **defaults(role)}
    errors = [e for name, value in declared.items() if name in spec for e in type_errors(name, value, spec[name])]
    assert not errors, f"{role}: {errors}"


# A module of app/, the reference project: another project has none of them (docs/project.md).
APP_MODULE = re.compile(r"(?<![\w.])(core|apps)\.[A-Za-z_]")  # not channels_redis.core


def test_only_an_overridable_default_names_a_module_of_app():
    """Any Django Channels project deploys with these roles: app/'s modules (core.*, apps.*) appear under
    roles/ and templates/ only as the value of a role default (roles/*/defaults/main.yml), which the
    inventory overrides; never in a task, a template, a file the bundle installs, or a comment."""
    found = []
    for path in sorted([*(ROOT / "roles").rglob("*"), *(ROOT / "templates").rglob("*")]):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        default = path.relative_to(ROOT).parts[2:] == ("defaults", "main.yml")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if APP_MODULE.search(line) and not (default and not line.lstrip().startswith("#")):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
