"""Hand-made facts for the doctor's unit tests: no container, no host.

healthy_host.json is one host's probe answer and the client's view, as the doctor gathered them
from the converged local stack (the token, certificates and the Redis URL's fingerprint replaced).
Tests copy it and change what each case needs.
"""

import copy
import json
from pathlib import Path

import pytest

from doctor import checks  # noqa: F401 (importing it registers the checks)
from doctor.facts import GROUPS, Facts
from doctor.registry import REGISTRY, evaluate
from doctor.site import Site

HEALTHY = json.loads(Path(__file__).with_name("healthy_host.json").read_text())
ONE_HOST = "nurcrm-local"


def make_facts(layout=None, inventory="inventory/local"):
    """Facts of a healthy stack. `layout`: group -> host names (default: one host in every group).
    Each host gets its own machine id unless two names share a machine ("web1=app1")."""
    layout = layout or {group: [ONE_HOST] for group in GROUPS}
    hosts = {}
    for names in layout.values():
        for name in names:
            probe = copy.deepcopy(HEALTHY["host"])
            probe["machine_id"] = f"machine-{name}"
            probe["roles"] = [group for group in GROUPS if name in layout.get(group, [])]
            hosts[name] = probe
    site = Site(**HEALTHY["site"])
    facts = Facts(inventory=inventory, groups={g: list(layout.get(g, [])) for g in GROUPS}, hosts=hosts, site=site)
    facts.tls, facts.handshake = copy.deepcopy(HEALTHY["tls"]), copy.deepcopy(HEALTHY["handshake"])
    facts.session, facts.session_host = copy.deepcopy(HEALTHY["session"]), layout["app"][0]
    facts.walk_logs = {name: {"gunicorn": [], "nginx": []} for name in facts.names("web", "app")}
    return facts


def registered(name):
    return next(c for c in REGISTRY if c.name == name)


def judge(name, facts):
    """One check alone (its prerequisites not run): its results, one per host."""
    return evaluate(facts, [registered(name)])


@pytest.fixture
def facts():
    return make_facts()
