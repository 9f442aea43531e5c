"""Issue 16, observability: Prometheus scrapes every part of the stack, the doctor's timer is graphed, the
app's metrics stay off the public server, and Redis stopped reaches the webhook as an alert that resolves
when Redis is back. Skipped where the inventory has no monitoring group (the production scenario)."""

import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml
from conftest import ROOT, request

from tools.monitoring import WebhookReceiver, api, failed_walk, passing_walk, query, seconds
from tools.waiting import wait_for

PORTS = yaml.safe_load((ROOT / "roles/monitoring/defaults/main.yml").read_text())["monitoring_ports"]
# The app's exporter belongs to the asgi role.
METRICS_PORT = yaml.safe_load((ROOT / "playbooks/group_vars/all/wiring.yml").read_text())["asgi_metrics_port"]
RULES = yaml.safe_load((ROOT / "roles/monitoring/files/nurcrm.rules.yml").read_text())
# Where inventory/local's Alertmanager sends alerts (monitoring_webhook_url).
WEBHOOK = ("127.0.0.1", 9199)
JOBS = ["node", "nginx", "redis", "nurcrm_app", "prometheus", "alertmanager"]


def inventory_groups(inventory):
    listed = json.loads(subprocess.run(["ansible-inventory", "-i", inventory, "--list"], capture_output=True,
                                       check=True).stdout)  # fmt: skip
    return {name: group.get("hosts", []) for name, group in listed.items() if isinstance(group, dict)}


@pytest.fixture(scope="module")
def prometheus(inventory):
    if not inventory_groups(inventory).get("monitoring"):
        pytest.skip("this inventory has no monitoring group")
    return f"http://127.0.0.1:{PORTS['prometheus']}"


def targets_of(prometheus, job):
    return [t for t in api(prometheus, "/api/v1/targets?state=active")["activeTargets"] if t["labels"]["job"] == job]


@pytest.mark.parametrize("job", JOBS)
def test_prometheus_scrapes_every_target_of_the_job(prometheus, job):
    """up == 1 for the job's target (waiting out its first scrape after a converge)."""
    wait_for(lambda: targets_of(prometheus, job), 30, f"a {job} target in Prometheus")
    wait_for(lambda: all(t["health"] == "up" for t in targets_of(prometheus, job)), 45, lambda: [
        (t["scrapeUrl"], t["health"], t["lastError"]) for t in targets_of(prometheus, job)
    ])  # fmt: skip
    assert all(value == 1 for _, value in query(prometheus, f'up{{job="{job}"}}'))


def test_prometheus_loaded_every_alert_of_the_rules_file(prometheus):
    loaded = {r["name"] for g in api(prometheus, "/api/v1/rules")["groups"] for r in g["rules"]}
    assert loaded == {rule["alert"] for group in RULES["groups"] for rule in group["rules"]}


def test_the_doctors_timer_is_graphed_healthy_check_by_check(prometheus):
    """The timer's walk reaches Prometheus through node exporter's textfile folder: every check passes on the
    settled stack (a walk during test_6_hardening's redeploy, app.env removed, rightly fails four)."""
    wait_for(lambda: passing_walk(prometheus), 150, lambda: failed_walk(prometheus), every=5)
    assert query(prometheus, "nurcrm_doctor_healthy")[0][1] == 1
    assert query(prometheus, "nurcrm_doctor_delivery_seconds"), "the walk's delivery round trip is not graphed"


def test_the_apps_metrics_answer_on_the_private_address(prometheus):
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert 'nurcrm_ws_handshakes_total{outcome="accepted"}' in text


@pytest.mark.parametrize("path", ["/metrics", "/stub_status"])
def test_the_public_server_refuses_the_metrics(prometheus, site, path):
    with pytest.raises(urllib.error.HTTPError) as refused:
        request(site, "GET", path)
    assert refused.value.code == 404


def test_redis_stopped_reaches_the_webhook_within_for_plus_a_scrape_and_resolves(prometheus, redis_host):
    """NurcrmRedisDown arrives within the rule's for + one scrape + one evaluation + Alertmanager's group_wait
    (plus slack for this machine), and a resolved notice follows once Redis is back."""
    rule = next(
        r for g in api(prometheus, "/api/v1/rules")["groups"] for r in g["rules"] if r["name"] == "NurcrmRedisDown"
    )
    config = yaml.safe_load(api(prometheus, "/api/v1/status/config")["yaml"])
    alertmanager = yaml.safe_load(
        api(f"http://127.0.0.1:{PORTS['alertmanager']}", "/api/v2/status")["config"]["original"]
    )
    scrape, evaluation = (seconds(config["global"][key]) for key in ("scrape_interval", "evaluation_interval"))
    bound = rule["duration"] + scrape + evaluation + seconds(alertmanager["route"]["group_wait"]) + 15
    with WebhookReceiver(*WEBHOOK) as webhook:
        stopped = time.monotonic()
        redis_host.run("systemctl stop redis-server")
        try:
            fired = wait_for(lambda: webhook.alerts("NurcrmRedisDown", "firing", stopped), bound,
                             "NurcrmRedisDown at the webhook after Redis stopped", every=1)  # fmt: skip
            assert fired[0][1]["labels"]["severity"] and fired[0][1]["annotations"]["runbook"]
        finally:
            started = time.monotonic()
            assert redis_host.run("systemctl start redis-server").rc == 0
        resolve = scrape + evaluation + seconds(alertmanager["route"]["group_interval"]) + 20
        wait_for(lambda: webhook.alerts("NurcrmRedisDown", "resolved", started), resolve,
                 "NurcrmRedisDown resolved after Redis started", every=1)  # fmt: skip
