"""Every check against hand-made facts: the healthy stack passes it, and each broken case fails it
naming the layer, the evidence and the rerun that restores it (or that no playbook does)."""

import pytest
from conftest import ONE_HOST, judge, make_facts

from doctor.checks.django import stranger
from doctor.checks.redis import under_sentinel
from doctor.registry import REGISTRY, evaluate, first_failure


def host(f):
    return f.hosts[ONE_HOST]


def gunicorn(f):
    return host(f)["gunicorn"]


def nginx_conf(f, old, new):
    dump = host(f)["nginx"]["dump"]
    assert old in dump, old
    host(f)["nginx"]["dump"] = dump.replace(old, new)


def reports(f, **values):
    for report in gunicorn(f)["reports"].values():
        report.update(values)


def one_report(f, **values):
    next(iter(gunicorn(f)["reports"].values())).update(values)


def handshake(f, status):
    f.handshake = {"status": status, "status_line": f"HTTP/1.1 {status} Whatever", "error": None}


PLAYBOOK = {
    "nginx": "playbooks/nginx.yml",
    "gunicorn": "playbooks/asgi.yml",
    "redis": "playbooks/redis.yml",
    "postgresql": "playbooks/postgresql.yml",
    "django": "playbooks/app.yml",
    "auth": "playbooks/app.yml",
    "consumer": "playbooks/app.yml",
    "groups": "playbooks/app.yml",
    "delivery": "playbooks/app.yml",
}
MANUAL = None  # no playbook restores it

# id: (check, what breaks, the layer it must name, words of the evidence, the layer whose playbook restores it
# or MANUAL)
CASES = {
    "name-does-not-resolve": (
        "tls_certificate",
        lambda f: f.tls.update(error="localhost does not resolve: [Errno -2] Name or service not known"),
        "tls",
        "does not resolve",
        MANUAL,
    ),
    "certificate-rejected": (
        "tls_certificate",
        lambda f: f.tls.update(error="certificate rejected: certificate has expired"),
        "tls",
        "certificate has expired",
        MANUAL,
    ),
    "certificate-expires-soon": (
        "tls_certificate_lifetime",
        lambda f: f.tls.update(days_left=3),
        "tls",
        "3 days left",
        MANUAL,
    ),
    "nginx-t-fails-on-the-missing-map": (
        "nginx_config_valid",
        lambda f: host(f)["nginx"].update(
            test_rc=1, test_err='nginx: [emerg] unknown "connection_upgrade" variable\nnginx: test failed'
        ),
        "nginx",
        'unknown "connection_upgrade" variable',
        "nginx",
    ),
    "map-missing": (
        "nginx_connection_upgrade_map",
        lambda f: nginx_conf(f, "map $http_upgrade $connection_upgrade {", "map $http_upgrade $something_else {"),
        "nginx",
        "Connection $connection_upgrade, which no map of $http_upgrade defines",
        "nginx",
    ),
    "map-without-close": (
        "nginx_connection_upgrade_map",
        lambda f: nginx_conf(f, "''      close;", "''      upgrade;"),
        "nginx",
        "whose map reads {'default': 'upgrade', '': 'upgrade'}",
        "nginx",
    ),
    "connection-close": (
        "nginx_ws_headers",
        lambda f: nginx_conf(f, "Connection $connection_upgrade;", 'Connection "close";'),
        "nginx",
        'it has `Connection "close"`',
        "nginx",
    ),
    "no-ws-location": (
        "nginx_ws_headers",
        lambda f: nginx_conf(f, "location /ws/ {", "location /websocket/ {"),
        "nginx",
        "location / (/ws/cafe/tables/) lacks: proxy_set_header Upgrade $http_upgrade",
        "nginx",
    ),
    "short-read-timeout": (
        "nginx_ws_timeout",
        lambda f: nginx_conf(f, "proxy_read_timeout 3600s;", "proxy_read_timeout 60s;"),
        "nginx",
        "is 60s",
        "nginx",
    ),
    "upstream-on-another-socket": (
        "nginx_upstream_reaches_every_app_host",
        lambda f: nginx_conf(f, "server unix:/home/nur/asgi.sock", "server unix:/home/nur/old.sock"),
        "nginx",
        "no server reaches app host(s) {'nurcrm-local': ['unix:/home/nur/asgi.sock']}",
        "nginx",
    ),
    "upstream-with-a-stale-server": (
        "nginx_upstream_reaches_every_app_host",
        lambda f: nginx_conf(f, "upstream django_asgi {", "upstream django_asgi {\n    server 10.9.9.9:8000;"),
        "nginx",
        "lists ['10.9.9.9:8000'], which no app host binds",
        "nginx",
    ),
    "no-upstream": (
        "nginx_upstream_reaches_every_app_host",
        lambda f: nginx_conf(f, "upstream django_asgi {", "upstream other {"),
        "nginx",
        "goes to http://django_asgi ['django_asgi:80']; no server reaches",
        "nginx",
    ),
    "nginx-does-not-answer": (
        "handshake_upgrades",
        lambda f: setattr(f, "handshake", {"status": None, "error": "[Errno 111] Connection refused"}),
        "nginx",
        "Connection refused",
        "nginx",
    ),
    "handshake-404-drops-upgrade": ("handshake_upgrades", lambda f: handshake(f, 404), "nginx", "plain HTTP", "nginx"),
    "handshake-426": ("handshake_upgrades", lambda f: handshake(f, 426), "nginx", "HTTP/1.0", "nginx"),
    "handshake-400": ("handshake_upgrades", lambda f: handshake(f, 400), "nginx", "bad upgrade", "nginx"),
    "handshake-500-app-failed": (
        "handshake_upgrades",
        lambda f: handshake(f, 500),
        "gunicorn",
        "journalctl",
        "gunicorn",
    ),
    "handshake-504": ("handshake_upgrades", lambda f: handshake(f, 504), "gunicorn", "in time", "gunicorn"),
    "handshake-403-no-route": ("handshake_upgrades", lambda f: handshake(f, 403), "django", "refused", "django"),
    "handshake-502-gunicorn-stopped": (
        "handshake_upgrades",
        lambda f: (handshake(f, 502), gunicorn(f)["unit"].update(ActiveState="inactive")),
        "gunicorn",
        "unit gunicorn on nurcrm-local is inactive",
        "gunicorn",
    ),
    "handshake-502-socket-missing": (
        "handshake_upgrades",
        lambda f: (handshake(f, 502), gunicorn(f)["socket"].update(exists=False)),
        "gunicorn",
        "does not exist",
        "gunicorn",
    ),
    "handshake-502-socket-not-nginxs": (
        "handshake_upgrades",
        lambda f: (handshake(f, 502), gunicorn(f)["socket"].update(nginx_user_connects=False)),
        "gunicorn",
        "cannot connect",
        "gunicorn",
    ),
    "handshake-500-sync-worker": (
        "handshake_upgrades",
        lambda f: (handshake(f, 500), gunicorn(f)["config"].update(worker_class="sync")),
        "gunicorn",
        "worker_class on nurcrm-local is sync",
        "gunicorn",
    ),
    "handshake-500-redis-down": (
        "handshake_upgrades",
        lambda f: (handshake(f, 500), host(f)["redis"].update(ping="Could not connect to Redis")),
        "redis",
        "Redis does not answer",
        "redis",
    ),
    "handshake-403-origin": (
        "handshake_upgrades",
        lambda f: (handshake(f, 403), reports(f, allowed_hosts=["intranet.example"])),
        "django",
        "Origin https://localhost",
        "django",
    ),
    "gunicorn-stopped": (
        "gunicorn_active",
        lambda f: gunicorn(f)["unit"].update(ActiveState="inactive", SubState="dead"),
        "gunicorn",
        "inactive/dead",
        "gunicorn",
    ),
    "gunicorn-disabled": (
        "gunicorn_active",
        lambda f: gunicorn(f)["unit"].update(UnitFileState="disabled"),
        "gunicorn",
        "disabled",
        "gunicorn",
    ),
    "sync-worker-class": (
        "gunicorn_worker_class",
        lambda f: gunicorn(f)["config"].update(worker_class="sync"),
        "gunicorn",
        "configured sync",
        "gunicorn",
    ),
    "a-worker-runs-another-class": (
        "gunicorn_worker_class",
        lambda f: one_report(f, worker_class="gunicorn.workers.sync.SyncWorker"),
        "gunicorn",
        "SyncWorker",
        "gunicorn",
    ),
    "a-worker-missing": (
        "gunicorn_worker_count",
        lambda f: gunicorn(f)["workers"].pop(),
        "gunicorn",
        "2 workers running, 3 configured",
        "gunicorn",
    ),
    "no-unix-socket": (
        "gunicorn_socket",
        lambda f: gunicorn(f).update(socket=None),
        "gunicorn",
        "binds no unix socket",
        "gunicorn",
    ),
    "socket-missing": (
        "gunicorn_socket",
        lambda f: gunicorn(f)["socket"].update(exists=False),
        "gunicorn",
        "missing or not a socket",
        "gunicorn",
    ),
    "socket-not-nginxs": (
        "gunicorn_socket",
        lambda f: gunicorn(f)["socket"].update(nginx_user_connects=False, connect_error=["Permission denied"]),
        "gunicorn",
        "Permission denied",
        "gunicorn",
    ),
    "workers-restarting": (
        "gunicorn_workers_stable",
        lambda f: gunicorn(f).update(workers_later=[1, 2, 3]),
        "gunicorn",
        "changed within a second",
        "gunicorn",
    ),
    "trusts-anyone": (
        "gunicorn_trusts_only_web_hosts",
        lambda f: next(iter(gunicorn(f)["reports"].values()))["uvicorn"].update(forwarded_allow_ips=["*"]),
        "gunicorn",
        "believe X-Forwarded-* from ['*']",
        "gunicorn",
    ),
    "trusts-a-stranger": (
        "gunicorn_trusts_only_web_hosts",
        lambda f: next(iter(gunicorn(f)["reports"].values()))["uvicorn"].update(forwarded_allow_ips=["10.9.9.9"]),
        "gunicorn",
        "10.9.9.9",
        "gunicorn",
    ),
    "redis-stopped": (
        "redis_server_active",
        lambda f: host(f)["redis_server"].update(service="inactive", ping="Could not connect"),
        "redis",
        "redis-server is inactive",
        "redis",
    ),
    "app-cannot-reach-redis": (
        "redis_reachable",
        lambda f: host(f)["redis"].update(ping="Could not connect to Redis at 127.0.0.1:6379: Connection refused"),
        "redis",
        "Connection refused",
        "redis",
    ),
    "redis-password-changed": (
        "redis_reachable",
        lambda f: host(f)["redis"].update(ping="AUTH failed: WRONGPASS invalid username-password pair"),
        "redis",
        "WRONGPASS",
        "redis",
    ),
    "no-redis-url": (
        "redis_reachable",
        lambda f: host(f)["redis"].update(configured=False),
        "django",
        "REDIS_URL is not set",
        "django",
    ),
    "redis-without-password": (
        "redis_authenticated",
        lambda f: host(f)["redis"].update(anonymous_ping="PONG"),
        "redis",
        "without the password",
        "redis",
    ),
    "a-worker-on-stale-settings": (
        "workers_share_redis",
        lambda f: next(iter(gunicorn(f)["worker_env"].values())).update(REDIS_URL_FINGERPRINT="ffffffffffff"),
        "redis",
        "other REDIS_URL/CHANNEL_LAYER settings",
        "gunicorn",
    ),
    "a-worker-on-another-database": (
        "workers_share_redis",
        lambda f: one_report(f, redis={"db": 1, "host": "127.0.0.1", "password": True, "port": 6379}),
        "redis",
        "127.0.0.1:6379/1",
        "gunicorn",
    ),
    "a-worker-without-report": (
        "gunicorn_workers_report",
        lambda f: gunicorn(f)["reports"].popitem(),
        "gunicorn",
        "have not reported",
        "gunicorn",
    ),
    "postgresql-down": (
        "postgresql_ready",
        lambda f: host(f)["postgresql"].update(service="failed", ready_rc=2, ready="no response"),
        "postgresql",
        "postgresql is failed",
        "postgresql",
    ),
    "origin-not-allowed": (
        "django_allowed_hosts",
        lambda f: reports(f, allowed_hosts=["intranet.example"]),
        "django",
        "allows ['intranet.example']",
        "django",
    ),
    "allowed-hosts-wildcard": (
        "django_allowed_hosts",
        lambda f: reports(f, allowed_hosts=["*"]),
        "django",
        "['*']",
        "django",
    ),
    "no-worker-reports": (
        "gunicorn_workers_report",
        lambda f: gunicorn(f).update(reports={}),
        "gunicorn",
        "have not reported",
        "gunicorn",
    ),
    "wrong-asgi-application": (
        "django_asgi_application",
        lambda f: one_report(f, asgi_application="core.wsgi.application"),
        "django",
        "core.wsgi.application",
        "django",
    ),
    "in-memory-channel-layer": (
        "django_channel_layer",
        lambda f: reports(f, channel_layer="channels.layers.InMemoryChannelLayer"),
        "django",
        "in-memory channel layer",
        "django",
    ),
    "debug-on": ("django_debug_off", lambda f: one_report(f, debug=True), "django", "DEBUG on", "django"),
    "no-doctor-user": (
        "consumer_accepts_token",
        lambda f: host(f).update(token=None, token_error="CommandError: no user named 'doctor'"),
        "auth",
        "no user named 'doctor'",
        MANUAL,
    ),
    "tokens-born-expired": (
        "consumer_accepts_token",
        lambda f: f.session.update(hello=None, close_code=4401, close_reason="token expired"),
        "auth",
        "closed 4401",
        "auth",
    ),
    "user-without-company": (
        "consumer_accepts_token",
        lambda f: f.session.update(hello=None, close_code=4403, close_reason="no company"),
        "consumer",
        "closed 4403",
        "consumer",
    ),
    "token-handshake-500": (
        "consumer_accepts_token",
        lambda f: f.session.update(hello=None, http_status=500),
        "consumer",
        "answered HTTP 500",
        "consumer",
    ),
    "different-group-names": (
        "group_exists",
        lambda f: f.session["send"].update(out=f.session["send"]["out"].replace(": 1 subscribed", ": 0 subscribed")),
        "groups",
        "has no member",
        "groups",
    ),
    "sender-fails": (
        "group_exists",
        lambda f: f.session["send"].update(rc=1, err="redis.exceptions.ConnectionError: refused"),
        "delivery",
        "send_test_notification failed",
        "delivery",
    ),
    "event-never-arrives": (
        "delivery",
        lambda f: f.session.update(event=None),
        "delivery",
        "received nothing",
        "delivery",
    ),
    "errors-logged-during-the-walk": (
        "recent_errors",
        lambda f: f.walk_logs[ONE_HOST].update(nginx=["2026/12/01 10:00:00 [crit] 7#7: connect() failed"]),
        "logs",
        "1 error line(s) logged during this walk",
        MANUAL,
    ),
}


# The others check what one host has not (Sentinel: test_sentinel.py), or what a host the bundle deployed has
# not (its settings read through the app: test_handbuilt.py).
ONE_HOST_CHECKS = [c.name for c in REGISTRY if c.when is not under_sentinel and c.only is not stranger]


@pytest.mark.parametrize("check", ONE_HOST_CHECKS)
def test_a_healthy_stack_passes(check):
    results = judge(check, make_facts())
    assert results and all(r.status == "pass" for r in results), results


def test_every_check_has_a_failing_case():
    assert {case[0] for case in CASES.values()} >= set(ONE_HOST_CHECKS) - {
        "web_hosts_agree_on_upstream",  # comparisons need several hosts: test_multihost.py
        "app_hosts_agree_on_redis",
    }


@pytest.mark.parametrize("case", CASES)
def test_a_broken_layer_fails_the_check_naming_it(case):
    check, breaks, layer, evidence, playbook = CASES[case]
    facts = make_facts()
    breaks(facts)
    (result,) = judge(check, facts)
    assert (result.status, result.layer) == ("fail", layer), result
    assert evidence in result.evidence, result.evidence
    if playbook is MANUAL:
        assert result.rerun is None and result.fix.startswith("no playbook restores this: "), result.fix
    else:
        command = f"ansible-playbook {PLAYBOOK[playbook]} -i inventory/local --limit {ONE_HOST}  # "
        assert result.fix.startswith(command), result.fix
        assert result.rerun == {"playbook": PLAYBOOK[playbook], "limit": ONE_HOST, "inventory": "inventory/local"}
        assert len(result.fix) > len(command), "the command is followed by its explanation"


def test_a_connection_header_that_never_upgrades_is_named_first_by_the_ws_locations_check():
    """What molecule/default/faults/test_faults.py's --fix --check walk expects of the whole walk."""
    facts = make_facts()
    nginx_conf(facts, "Connection $connection_upgrade;", 'Connection "close";')
    first = first_failure(evaluate(facts), facts)
    assert (first.check, first.layer) == ("nginx_ws_headers", "nginx") and 'Connection "close"' in first.evidence


def test_a_handshake_that_fails_in_the_app_shows_the_exception_gunicorn_logged_during_the_walk():
    facts = make_facts()
    handshake(facts, 500)
    logged = "gunicorn[61]: TypeError: BaseChannelLayer.__init__() got an unexpected keyword argument 'hosts'"
    facts.walk_logs[ONE_HOST]["gunicorn"] = ["gunicorn[61]: [ERROR] Exception in ASGI application", logged]
    first = first_failure(evaluate(facts), facts)
    assert first.check == "handshake_upgrades" and first.evidence.endswith(
        "; gunicorn logged: TypeError: BaseChannelLayer.__init__() got an unexpected keyword argument 'hosts'"
    ), first.evidence


def another_projects_env(f):
    """The env file of a project other than app/: its own names, none of CHANNEL_LAYER_PREFIX and its kin."""
    for env in [gunicorn(f)["env"], *gunicorn(f)["worker_env"].values()]:
        env.update(CHANNEL_LAYER=None, CHANNEL_LAYER_PREFIX=None, REDIS_SENTINELS=None, REDIS_MASTER_NAME=None)


def test_another_projects_workers_share_redis_when_they_agree_with_each_other():
    facts = make_facts()
    another_projects_env(facts)
    results = {r.check: r for r in evaluate(facts)}
    assert results["workers_share_redis"].status == "pass", results["workers_share_redis"]
    one_report(facts, channel_layer_prefix="crm")
    results = {r.check: r for r in evaluate(facts)}
    assert results["workers_share_redis"].status == "fail"
    assert "prefix crm" in results["workers_share_redis"].evidence
