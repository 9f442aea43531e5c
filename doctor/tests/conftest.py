"""Hand-made facts for the doctor's unit tests: no container, no host.

healthy_host.json is one host's probe answer and the client's view, as the doctor gathered them
from the converged local stack (the token, certificates and the Redis URL's fingerprint replaced).
Tests copy it and change what each case needs; `make_sentinel_cluster` spreads it over
molecule/cluster's hosts, with Redis under Sentinel. The `doctor` fixture runs the command (cli.main)
over FakeHosts: an inventory whose hosts answer with such facts, or do not answer.
"""

import copy
import json
from pathlib import Path

import pytest

import doctor.checks  # noqa: F401 (importing it registers the checks)
from doctor import cli, walk
from doctor.checks.gunicorn import LOOPBACK
from doctor.facts import GROUPS, Facts
from doctor.hosts import Unreachable
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
    # As the inventories derive it: an app host believes X-Forwarded-* from the web hosts' addresses, loopback
    # only where nginx runs beside it.
    web_machines = {hosts[name]["machine_id"] for name in layout.get("web", [])}
    web_addresses = sorted({a for name in layout.get("web", []) for a in hosts[name]["addresses"]} - LOOPBACK)
    for name in layout.get("app", []):
        if hosts[name]["machine_id"] not in web_machines:
            for report in hosts[name]["gunicorn"]["reports"].values():
                report["uvicorn"]["forwarded_allow_ips"] = list(web_addresses)
    site = Site(**HEALTHY["site"])
    facts = Facts(inventory=inventory, groups={g: list(layout.get(g, [])) for g in GROUPS}, hosts=hosts, site=site)
    facts.tls, facts.handshake = copy.deepcopy(HEALTHY["tls"]), copy.deepcopy(HEALTHY["handshake"])
    facts.session, facts.session_host = copy.deepcopy(HEALTHY["session"]), layout["app"][0]
    facts.walk_logs = {name: {"gunicorn": [], "nginx": []} for name in facts.names("web", "app")}
    return facts


def upstream(probe, servers):
    """Rewrite a web host's `upstream django_asgi` to these servers."""
    dump = probe["nginx"]["dump"]
    start = dump.index("upstream django_asgi {")
    end = dump.index("}", start)
    lines = "".join(f"    server {server};\n" for server in servers)
    probe["nginx"]["dump"] = dump[:start] + "upstream django_asgi {\n" + lines + dump[end:]


# molecule/cluster/inventory: each host's own address; Redis under Sentinel, redis1 the first master.
CLUSTER = {"web": ["web1"], "app": ["app1", "app2"], "redis": ["redis1", "redis2", "redis3"], "db": ["db1"]}
ADDRESS = {"web1": "127.0.2.10", "app1": "127.0.2.21", "app2": "127.0.2.22", "db1": "127.0.2.41"}
ADDRESS |= {"redis1": "127.0.2.31", "redis2": "127.0.2.32", "redis3": "127.0.2.33"}
MASTER_NAME = "nurcrm"
SENTINELS = [f"{ADDRESS[name]}:26379" for name in CLUSTER["redis"]]
CKQUORUM_OK = "OK 3 usable Sentinels. Quorum and failover authorization can be reached"


def redis_at(name):
    return f"{ADDRESS[name]}:6379"


def make_sentinel_cluster(master="redis1"):
    """molecule/cluster's layout, healthy: `master` and its two replicas with a Sentinel on each Redis host;
    the app hosts bind TCP for the web host and find the master through the Sentinels (REDIS_URL's host is
    the master's name)."""
    facts = make_facts(CLUSTER, inventory="molecule/cluster/inventory")
    binds = [f"{ADDRESS[app]}:8000" for app in CLUSTER["app"]]
    upstream(facts.hosts["web1"], binds)
    replicas = [name for name in CLUSTER["redis"] if name != master]
    for name in CLUSTER["redis"]:
        server = facts.hosts[name]["redis_server"]
        server.update(binds=[ADDRESS[name]], address=redis_at(name))
        if name == master:
            replication = {"role": "master", "replicas": {redis_at(r): "online" for r in replicas}}
            replication |= {"connected_slaves": 2, "master_host": None, "master_port": None, "master_link_status": None}
        else:
            replication = {"role": "slave", "replicas": {}, "connected_slaves": 0}
            replication |= {"master_host": ADDRESS[master], "master_port": 6379, "master_link_status": "up"}
        server["replication"] = replication
        facts.hosts[name]["sentinel"] = {
            "service": "active",
            "address": f"{ADDRESS[name]}:26379",
            "master_name": MASTER_NAME,
            "quorum": 2,
            "master": redis_at(master),
            "answer": redis_at(master),
            "ckquorum": CKQUORUM_OK,
            "replicas": {redis_at(r): "slave" for r in replicas},
        }
    for app, bind in zip(CLUSTER["app"], binds, strict=True):
        probe = facts.hosts[app]
        probe["gunicorn"]["config"]["binds"] = ["unix:/home/nur/asgi.sock", bind]
        for view in [probe["gunicorn"]["env"], *probe["gunicorn"]["worker_env"].values()]:
            view.update(REDIS_SENTINELS=",".join(SENTINELS), REDIS_MASTER_NAME=MASTER_NAME)
            view["REDIS"]["host"] = MASTER_NAME
        for report in probe["gunicorn"]["reports"].values():
            report["redis"]["host"] = MASTER_NAME
            report["redis_sentinel"] = {"sentinels": list(SENTINELS), "master_name": MASTER_NAME}
        probe["redis"].update(
            master_name=MASTER_NAME,
            sentinels=[{"address": s, "master": redis_at(master), "answer": redis_at(master)} for s in SENTINELS],
            master=redis_at(master),
        )
        probe["redis"]["target"]["host"] = ADDRESS[master]
    return facts


def registered(name):
    return next(c for c in REGISTRY if c.name == name)


def judge(name, facts):
    """One check alone (its prerequisites not run): its results, one per host."""
    return evaluate(facts, [registered(name)])


@pytest.fixture
def facts():
    return make_facts()


REFUSED = "Error response from daemon: container 1f0c is not running"
INVENTORY = "molecule/cluster/inventory"
PUBLIC_NAME = "cluster.nurcrm.test"  # the inventory's nginx_server_name


def silence(facts, *names):
    """These hosts did not answer the walk's probe, as doctor/walk.py records it."""
    for name in names:
        facts.hosts[name] = {"unreachable": REFUSED}


# --- The command, over a fake inventory whose hosts answer with hand-made facts ---------------------------
class FakeHosts:
    """doctor.hosts.Hosts over a Facts: each host answers its facts (the token where asked), or raises Unreachable
    if it is `down`, or after its facts if it `stops`."""

    def __init__(self, facts, down=(), stops=()):
        self.facts, self.down, self.stops, self.groups, self.asked = facts, set(down), set(stops), facts.groups, []

    def names(self):
        return list(self.facts.hosts)

    def variables(self, name):
        return {
            "nginx_certificate_source": "provided",
            "nginx_server_name": "{{ nurcrm_domain }}",
            "nurcrm_domain": PUBLIC_NAME,
        }

    def probe(self, name, mode, **args):
        self.asked.append((name, mode))
        if name in self.down or (name in self.stops and mode != "facts"):
            raise Unreachable(name, REFUSED)
        facts = copy.deepcopy(self.facts.hosts[name])
        if not args.get("token_user"):
            facts.pop("token", None)
        answers = {
            "facts": facts,
            "token": {"token": HEALTHY["host"]["token"], "token_error": ""},
            "send": copy.deepcopy(HEALTHY["session"]["send"]),
            "logs": {"gunicorn": [], "nginx": []},
        }
        return answers[mode]


def client_side(monkeypatch):
    """The client's view of a healthy site, the session sending through the session host."""
    monkeypatch.setattr(walk, "tls_facts", lambda site: copy.deepcopy(HEALTHY["tls"]))
    monkeypatch.setattr(walk, "handshake", lambda site: copy.deepcopy(HEALTHY["handshake"]))
    session = HEALTHY["session"]
    monkeypatch.setattr(
        walk,
        "session",
        lambda site, token, send: {**copy.deepcopy(session), "send": send(session["hello"])},
    )


def walk_over(monkeypatch, fake):
    monkeypatch.setattr(walk, "Hosts", lambda inventory, sudo=False: fake)
    return fake


@pytest.fixture
def doctor(monkeypatch, capsys):
    """nurcrm-doctor over the cluster with these hosts down: (exit status, stdout, stderr)."""
    client_side(monkeypatch)

    def run(*args, down=()):
        walk_over(monkeypatch, FakeHosts(make_sentinel_cluster(), down=down))
        code = cli.main(["-i", INVENTORY, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
