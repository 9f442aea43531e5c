"""Running doctor/probe.py on the inventory's hosts through testinfra's ansible backend."""

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import testinfra

PROBE = base64.b64encode(Path(__file__).with_name("probe.py").read_bytes()).decode()
GROUPS = {"web": "web", "app": "app", "redis": "redis"}


@dataclass
class Layout:
    """Which host runs which layer: the first host of each inventory group."""

    hosts: dict  # group -> testinfra host
    names: dict  # group -> inventory host name

    def roles_of(self, group):
        name = self.names[group]
        return sorted(role for role, other in self.names.items() if other == name)


def layout(inventory, sudo=False):
    hosts, names = {}, {}
    for group in GROUPS.values():
        found = testinfra.get_hosts([f"ansible://{group}"], ansible_inventory=str(inventory), sudo=sudo)
        if not found:
            raise SystemExit(f"doctor: inventory {inventory} has no host in group {group!r}")
        hosts[group], names[group] = found[0], found[0].backend.host
    return Layout(hosts, names)


def probe(host, **args):
    """Run the probe on one host; its JSON answer, or {"probe_error": ...}."""
    payload = base64.b64encode(json.dumps(args).encode()).decode()
    code = f"import base64; exec(compile(base64.b64decode('{PROBE}'), 'probe.py', 'exec'))"
    result = host.run(f'python3 -c "{code}" {payload}')
    if result.rc != 0:
        return {"probe_error": (result.stderr or result.stdout).strip()[-500:]}
    return json.loads(result.stdout)
