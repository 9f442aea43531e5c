"""Issue 16 on the cluster: Prometheus on db1 scrapes every part of every host (Sentinel's exporters too),
the app hosts' metrics answer on their own addresses and not through the web host, and the Redis master
stopped reaches the webhook (NurcrmRedisDown, then NurcrmRedisFailover once a replica is promoted), both
resolved when the old master is back as a replica."""

import time
import urllib.error
import urllib.request

import pytest
import yaml
from conftest import ROOT, master_node, replication, request, sentinel_master

from tools.monitoring import WebhookReceiver, api, failed_walk, passing_walk, query, seconds
from tools.waiting import wait_for

PORTS = yaml.safe_load((ROOT / "roles/monitoring/defaults/main.yml").read_text())["monitoring_ports"]
# The app's exporter belongs to the asgi role.
METRICS_PORT = yaml.safe_load((ROOT / "playbooks/group_vars/all/wiring.yml").read_text())["asgi_metrics_port"]
# molecule/cluster/inventory/group_vars/all/vars.yml: monitoring_webhook_url.
WEBHOOK = ("127.0.0.1", 9199)
# What each job scrapes: every host's node exporter, each layer's own exporter where that layer runs.
EXPECTED = {
    "node": ("web", "app", "redis", "db"),
    "nginx": ("web",),
    "redis": ("redis",),
    "sentinel": ("redis",),
    "nurcrm_app": ("app",),
    "prometheus": ("db",),
    "alertmanager": ("db",),
}


@pytest.fixture(scope="module")
def prometheus(nodes):
    return f"http://{next(n for n in nodes.values() if n.group == 'db').address}:{PORTS['prometheus']}"


@pytest.fixture(scope="module")
def alertmanager(nodes):
    return f"http://{next(n for n in nodes.values() if n.group == 'db').address}:{PORTS['alertmanager']}"


@pytest.mark.parametrize("job", EXPECTED)
def test_prometheus_scrapes_the_job_on_every_host_that_runs_it(prometheus, nodes, job):
    wanted = {n.name for n in nodes.values() if n.group in EXPECTED[job]}

    def up():
        found = {t["labels"]["instance"]: t for t in api(prometheus, "/api/v1/targets?state=active")["activeTargets"]
                 if t["labels"]["job"] == job}  # fmt: skip
        return found if set(found) == wanted and all(t["health"] == "up" for t in found.values()) else None

    wait_for(up, 45, lambda: [
        (t["labels"]["instance"], t["health"], t["lastError"])
        for t in api(prometheus, "/api/v1/targets?state=active")["activeTargets"]
        if t["labels"]["job"] == job
    ])  # fmt: skip
    assert {labels["instance"]: value for labels, value in query(prometheus, f'up{{job="{job}"}}')} == dict.fromkeys(
        wanted, 1
    )


def test_each_app_hosts_metrics_answer_on_its_own_address(apps):
    for app in apps:
        with urllib.request.urlopen(f"http://{app.address}:{METRICS_PORT}/metrics", timeout=10) as answer:
            assert 'nurcrm_ws_handshakes_total{outcome="accepted"}' in answer.read().decode(), app.name


@pytest.mark.parametrize("path", ["/metrics", "/stub_status"])
def test_the_web_hosts_public_server_refuses_the_metrics(site, path):
    with pytest.raises(urllib.error.HTTPError) as refused:
        request(site, "GET", path)
    assert refused.value.code == 404


def test_the_doctors_timer_on_db1_walks_every_host_over_ssh_and_is_graphed_healthy(prometheus, nodes):
    """db1's doctor reaches the six other hosts as nurcrm-doctor (the installed probe, via sudo) and itself
    locally; every check of every host passes in Prometheus."""
    checks = wait_for(lambda: passing_walk(prometheus), 150, lambda: failed_walk(prometheus), every=5)
    named = " ".join(labels["host"] for labels, _ in checks)
    assert [name for name in nodes if name not in named] == [], "hosts no check of the walk names"
    assert query(prometheus, "nurcrm_doctor_healthy")[0][1] == 1


def test_the_doctors_login_may_run_the_probe_alone_as_root(apps):
    """The key is db1's, the sudo rule names the installed probe and nothing else."""
    rule = apps[0].check_output("sudo -l -U nurcrm-doctor")
    assert "NOPASSWD: /usr/bin/python3 /usr/local/lib/nurcrm-doctor/probe.py *" in rule
    assert apps[0].run("sudo -u nurcrm-doctor sudo -n /bin/true").rc != 0


def test_the_master_stopped_alerts_redis_down_and_the_failover_and_both_resolve(prometheus, alertmanager, redises):
    rules = {r["name"]: r for g in api(prometheus, "/api/v1/rules")["groups"] for r in g["rules"]}
    config = yaml.safe_load(api(prometheus, "/api/v1/status/config")["yaml"])
    route = yaml.safe_load(api(alertmanager, "/api/v2/status")["config"]["original"])["route"]
    scrape, evaluation = (seconds(config["global"][key]) for key in ("scrape_interval", "evaluation_interval"))
    delay = scrape + evaluation + seconds(route["group_wait"]) + 15
    old = master_node(redises)
    with WebhookReceiver(*WEBHOOK) as webhook:
        stopped = time.monotonic()
        old.check_output("systemctl stop redis-server")
        try:
            bound = rules["NurcrmRedisDown"]["duration"] + delay
            fired = wait_for(lambda: webhook.alerts("NurcrmRedisDown", "firing", stopped), bound,
                             "NurcrmRedisDown at the webhook after the master stopped", every=1)  # fmt: skip
            assert fired[0][1]["labels"]["instance"] == old.name
            bound = rules["NurcrmRedisFailover"]["duration"] + delay
            wait_for(lambda: webhook.alerts("NurcrmRedisFailover", "firing", stopped), bound,
                     "NurcrmRedisFailover at the webhook after the master stopped", every=1)  # fmt: skip
        finally:
            started = time.monotonic()
            old.check_output("systemctl start redis-server")
        survivors = [node for node in redises if node is not old]
        wait_for(lambda: replication(old).get("master_link_status") == "up", 60, "the old master replicates")
        assert sentinel_master(survivors) != old.address
        resolve = scrape + evaluation + seconds(route["group_interval"]) + 20
        wait_for(lambda: webhook.alerts("NurcrmRedisDown", "resolved", started), resolve,
                 "NurcrmRedisDown resolved after the old master started", every=1)  # fmt: skip
