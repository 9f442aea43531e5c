"""The inventory's hosts, and doctor/probe.py run on each of them over testinfra.

testinfra reaches a host the way the inventory says (ssh for production, docker for the local
stack) and reads the inventory with Ansible's own `ansible-inventory`. Anything that keeps the
doctor from seeing the deployment (a missing tool, an unreadable inventory, a host that cannot be
probed) raises DoctorError: one line, and the command exits 2. A host that does not answer raises
Unreachable, which the walk records and judges when other hosts answer (doctor/walk.py).
"""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import yaml
from testinfra.utils.ansible_runner import get_ansible_config, get_ansible_host, itergroup

from doctor.facts import GROUPS, REQUIRED_GROUPS
from doctor.registry import ROOT

UNREACHABLE = ("No such container", "is not running", "Cannot connect to the Docker daemon", "Could not resolve")
PROBE = base64.b64encode(Path(__file__).with_name("probe.py").read_bytes()).decode()


# The bundle's wiring: values several layers share, and what each host is told of the others (Ansible loads
# group_vars beside the playbooks; ansible-inventory does with --playbook-dir).
PLAYBOOKS = ROOT / "playbooks"
WIRING = PLAYBOOKS / "group_vars" / "all" / "wiring.yml"


def role_default(role, name):
    """A role's default, from its defaults/main.yml: what a host gets when the inventory is silent."""
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()).get(name)


def wired(name):
    """A value of the bundle's wiring (playbooks/group_vars/all/wiring.yml), as written there."""
    return yaml.safe_load(WIRING.read_text()).get(name)


def rendered(variables, key):
    """A host's variable with its templates rendered from its other variables ("{{ nurcrm_domain }}"), as far as
    plain Jinja can (Ansible's own filters and lookups it cannot): None where it cannot, or where it is unset."""
    value = variables.get(key)
    for _ in range(5):  # a variable's template may name another template
        if not isinstance(value, str) or "{{" not in value:
            return value
        try:
            value = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(variables)
        except jinja2.TemplateError:
            return None
    return None


class DoctorError(Exception):
    """The doctor cannot see the deployment; the message is one line that says why."""


class Unreachable(DoctorError):
    """A host does not answer (off, its container stopped, ssh refused); `reason`: what its transport said."""

    def __init__(self, host, reason):
        self.host, self.reason = host, " ".join(reason.split())[-300:]
        super().__init__(f"host {host} is unreachable: {self.reason}")


def tool(name):
    """An Ansible command: beside the interpreter the doctor runs in (its virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and (Path(folder) / name).exists():
            return str(Path(folder) / name)
    raise DoctorError(f"{name} not found beside {sys.executable} or on PATH: install Ansible (make setup)")


def use_own_tools():
    """testinfra runs `ansible-inventory` through a shell: let it find the one beside this interpreter."""
    folder = str(Path(sys.executable).parent)
    if folder not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")


def load_inventory(inventory):
    """ansible-inventory --list of an inventory path, with the bundle's wiring as every playbook has it; its groups
    and hosts, checked for what the doctor needs."""
    if not Path(inventory).exists():
        raise DoctorError(f"inventory {inventory}: no such file or directory")
    done = subprocess.run(
        [tool("ansible-inventory"), "--list", "-i", str(inventory), "--playbook-dir", str(PLAYBOOKS)],
        capture_output=True,
        text=True,
        env=dict(os.environ, ANSIBLE_VERBOSITY="0", ANSIBLE_NOCOLOR="1"),
    )
    warnings = " ".join(line.strip() for line in done.stderr.splitlines() if line.strip())
    if done.returncode != 0:
        raise DoctorError(f"inventory {inventory} cannot be read: {warnings[-300:]}")
    listed = json.loads(done.stdout)
    groups = {group: list(dict.fromkeys(itergroup(listed, group))) for group in GROUPS}
    empty = [group for group in REQUIRED_GROUPS if not groups[group]]
    if empty:
        said = f" (ansible-inventory: {warnings[-300:]})" if warnings else ""
        raise DoctorError(f"inventory {inventory} has no host in group(s) {', '.join(empty)}{said}")
    return listed, groups


class Hosts:
    """testinfra hosts of an inventory's web, app, redis and db groups."""

    def __init__(self, inventory, sudo=False):
        self.inventory = str(inventory)
        self.listed, self.groups = load_inventory(inventory)
        config = get_ansible_config()
        self._hosts = {}
        for name in self.names():
            host = get_ansible_host(config, self.listed, name)
            if host is None:
                connection = self.variables(name).get("ansible_connection")
                raise DoctorError(f"host {name}: the doctor cannot use connection {connection!r}")
            if sudo:  # as ansible_become does
                host.backend.sudo = True
            self._hosts[name] = host

    def names(self):
        """Every host of the deployment, each once, in the groups' order."""
        return list(dict.fromkeys(name for group in GROUPS for name in self.groups[group]))

    def roles(self, name):
        return [group for group in GROUPS if name in self.groups[group]]

    def variables(self, name):
        return (self.listed.get("_meta", {}).get("hostvars", {}) or {}).get(name, {})

    def probe(self, name, **args):
        """Run the probe on one host: its JSON answer. Unreachable when the host does not answer, DoctorError when
        it answers but the probe cannot run."""
        payload = base64.b64encode(json.dumps({"roles": self.roles(name), **args}).encode()).decode()
        # A host may name the probe installed on it (roles/monitoring: the one command the monitoring host's
        # doctor user may run as root); else the probe's code goes inline.
        installed = self.variables(name).get("doctor_probe")
        code = f"import base64; exec(compile(base64.b64decode('{PROBE}'), 'probe.py', 'exec'))"
        try:
            result = self._hosts[name].run(f"{installed} {payload}" if installed else f'python3 -c "{code}" {payload}')
        except Exception as exc:  # testinfra's backends raise their transport's own errors
            raise Unreachable(name, str(exc)) from None
        try:
            return json.loads(result.stdout)
        except ValueError:
            said = " ".join((result.stderr or result.stdout).strip().splitlines()[-1:]) or f"exit status {result.rc}"
            # ssh's own failures exit 255; docker's name the container or the engine.
            if result.rc == 255 or any(word in said for word in UNREACHABLE):
                raise Unreachable(name, said) from None
            raise DoctorError(f"host {name} could not be probed: {said[-300:]}") from None
