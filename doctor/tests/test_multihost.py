"""Many hosts: every host of every group is judged and named, hosts that must agree are compared,
and a failure's rerun is limited to the host that runs the broken layer."""

import pytest
from conftest import make_facts, upstream

from doctor.cli import report, table
from doctor.registry import evaluate

LAYOUT = {"web": ["web1", "web2"], "app": ["app1", "app2"], "redis": ["redis1", "redis2"], "db": ["db1"]}
APP_BINDS = {"app1": "10.0.0.11:8000", "app2": "10.0.0.12:8000"}
REDIS = {"redis1": "10.0.0.21", "redis2": "10.0.0.22"}


def redis_target(probe, host):
    for view in [probe["gunicorn"]["env"], *probe["gunicorn"]["worker_env"].values()]:
        view["REDIS"]["host"] = host
    for report_ in probe["gunicorn"]["reports"].values():
        report_["redis"]["host"] = host


@pytest.fixture
def cluster():
    """Two web hosts, two app hosts over TCP, two Redis hosts (the apps use redis1), one database."""
    facts = make_facts(LAYOUT)
    for web in LAYOUT["web"]:
        upstream(facts.hosts[web], list(APP_BINDS.values()))
    for app, bind in APP_BINDS.items():
        facts.hosts[app]["gunicorn"]["config"]["binds"] = ["unix:/home/nur/asgi.sock", bind]
        redis_target(facts.hosts[app], REDIS["redis1"])
    for name, address in REDIS.items():
        facts.hosts[name]["redis_server"].update(binds=[address], address=f"{address}:6379")
    return facts


def by_check(results):
    found = {}
    for r in results:
        found.setdefault(r.check, []).append(r)
    return found


def test_a_healthy_cluster_passes_every_check_on_every_host(cluster):
    results = by_check(evaluate(cluster))
    assert all(r.ok for rs in results.values() for r in rs), [r for rs in results.values() for r in rs if not r.ok]
    hosts = {check: [r.host for r in rs] for check, rs in results.items()}
    assert hosts["nginx_ws_headers"] == ["web1", "web2"]
    assert hosts["gunicorn_active"] == ["app1", "app2"]
    assert hosts["redis_server_active"] == ["redis1", "redis2"]
    assert hosts["postgresql_ready"] == ["db1"]
    assert hosts["recent_errors"] == ["web1", "web2", "app1", "app2"]
    assert hosts["app_hosts_agree_on_redis"] == ["app1,app2"]
    assert hosts["handshake_upgrades"] == ["localhost"]


def test_a_web_host_whose_upstream_misses_an_app_host_fails_alone_and_is_rerun_alone(cluster):
    upstream(cluster.hosts["web2"], [APP_BINDS["app1"]])
    results = by_check(evaluate(cluster))
    web1, web2 = results["nginx_upstream_reaches_every_app_host"]
    assert web1.ok and not web2.ok
    assert "app2" in web2.evidence and web2.rerun["limit"] == "web2"
    (agree,) = results["web_hosts_agree_on_upstream"]
    assert agree.status == "fail" and agree.rerun["limit"] == "web1,web2"


def test_a_unix_socket_reaches_only_its_own_machine(cluster):
    for web in LAYOUT["web"]:
        upstream(cluster.hosts[web], ["unix:/home/nur/asgi.sock"])
    results = by_check(evaluate(cluster))
    assert [r.status for r in results["nginx_upstream_reaches_every_app_host"]] == ["fail", "fail"]
    for web in LAYOUT["web"]:  # the same socket on the same machine is fine
        cluster.hosts[web]["machine_id"] = "machine-app1"
    cluster.hosts["app2"]["machine_id"] = "machine-app1"
    assert all(r.ok for r in by_check(evaluate(cluster))["nginx_upstream_reaches_every_app_host"])


def test_a_wildcard_bind_is_reached_on_the_app_hosts_addresses(cluster):
    cluster.hosts["app2"]["gunicorn"]["config"]["binds"] = ["0.0.0.0:8000"]
    cluster.hosts["app2"]["addresses"] = ["10.0.0.12", "127.0.0.1"]
    assert all(r.ok for r in by_check(evaluate(cluster))["nginx_upstream_reaches_every_app_host"])


def test_app_hosts_on_different_redis_disagree(cluster):
    redis_target(cluster.hosts["app2"], REDIS["redis2"])
    (agree,) = by_check(evaluate(cluster))["app_hosts_agree_on_redis"]
    assert agree.status == "fail" and "10.0.0.21" in agree.evidence and "10.0.0.22" in agree.evidence
    assert agree.fix.startswith("ansible-playbook playbooks/app.yml -i inventory/local --limit app1,app2  # ")


def test_redis_unreachable_from_an_app_host_reruns_the_redis_host_it_points_at(cluster):
    cluster.hosts["app1"]["redis"]["ping"] = "Could not connect to Redis at 10.0.0.21:6379: Connection refused"
    cluster.hosts["redis1"]["redis_server"].update(service="inactive", ping="Could not connect")
    results = by_check(evaluate(cluster))
    reachable = {r.host: r for r in results["redis_reachable"]}
    assert reachable["app1"].layer == "redis" and reachable["app1"].rerun["limit"] == "redis1"
    assert "'redis1': 'inactive'" in reachable["app1"].evidence
    assert [r.status for r in results["redis_server_active"]] == ["fail", "pass"]


def test_a_502_is_traced_to_the_app_host_whose_gunicorn_is_down(cluster):
    cluster.hosts["app2"]["gunicorn"]["unit"]["ActiveState"] = "inactive"
    cluster.handshake = {"status": 502, "status_line": "HTTP/1.1 502 Bad Gateway", "error": None}
    (handshake,) = by_check(evaluate(cluster))["handshake_upgrades"]
    assert handshake.layer == "gunicorn" and handshake.rerun["limit"] == "app2"
    assert "on app2 is inactive" in handshake.evidence


def test_the_first_broken_layer_names_its_host(cluster):
    cluster.hosts["app2"]["gunicorn"]["config"]["worker_class"] = "sync"
    data = report(evaluate(cluster), cluster, 1.0)
    assert data["first_failure"]["host"] == "app2"
    assert "First broken layer: gunicorn on app2 (gunicorn: gunicorn_worker_class)" in table(data)


def test_an_app_host_apart_from_nginx_must_not_believe_its_own_loopback():
    """On its own machine, 127.0.0.1 is the app host itself (or anyone on it), not nginx."""
    facts = make_facts({"web": ["web1"], "app": ["app1", "app2"], "redis": ["redis1"], "db": ["db1"]})
    for worker in facts.hosts["app2"]["gunicorn"]["reports"].values():
        worker["uvicorn"]["forwarded_allow_ips"] = ["127.0.0.1", "::1"]
    results = {r.host: r for r in evaluate(facts) if r.check == "gunicorn_trusts_only_web_hosts"}
    assert results["app1"].status == "pass", results["app1"]
    assert results["app2"].status == "fail" and "127.0.0.1" in results["app2"].evidence, results["app2"]
    assert results["app2"].rerun["playbook"] == "playbooks/asgi.yml"


def test_an_app_host_believes_the_address_nginx_connects_from():
    """With proxy_bind, nginx's connections leave from that address (loopback aliases, a second address), which
    the web host's own address list need not show."""
    facts = make_facts({"web": ["web1"], "app": ["app1"], "redis": ["redis1"], "db": ["db1"]})
    dump = facts.hosts["web1"]["nginx"]["dump"]
    tls = "    server_name localhost;\n    server_tokens off;"  # the server that serves the site
    facts.hosts["web1"]["nginx"]["dump"] = dump.replace(tls, tls + "\n    proxy_bind 127.0.2.10;", 1)
    for worker in facts.hosts["app1"]["gunicorn"]["reports"].values():
        worker["uvicorn"]["forwarded_allow_ips"] = ["127.0.2.10"]
    (result,) = [r for r in evaluate(facts) if r.check == "gunicorn_trusts_only_web_hosts"]
    assert result.status == "pass", result
    for worker in facts.hosts["app1"]["gunicorn"]["reports"].values():
        worker["uvicorn"]["forwarded_allow_ips"] = ["10.0.0.5"]  # the web host's address, not where nginx binds
    (result,) = [r for r in evaluate(facts) if r.check == "gunicorn_trusts_only_web_hosts"]
    assert result.status == "fail", result
