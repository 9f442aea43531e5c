"""A server the bundle did not deploy, set up by hand as the production note's: Debian's nginx with a site in
sites-enabled (a literal Connection "upgrade", an upstream of another name, a frontend at /), a `gunicorn` unit
with command-line flags and the older uvicorn worker class, settings that only the app's own settings module
knows (read by the probe through the app), Redis without a password. It passes every check that applies; each
of the note's faults is named by its layer with evidence; no fix offers a playbook; --fix refuses.
(molecule/handbuilt proves the same against a real server.)"""

import copy

import pytest
from conftest import FakeHosts, client_side, make_facts, make_sentinel_cluster, walk_over

from doctor import cli
from doctor.checks.django import stranger
from doctor.checks.gunicorn import managed
from doctor.checks.redis import under_sentinel
from doctor.cli import report
from doctor.registry import REGISTRY, evaluate, first_failure

HOST = "crm"
COMPANY = "f966441f-0938-49ed-97a7-07a503655ebc"  # the note's
GROUP = f"cafe_tables_{COMPANY}"
SENDER = "apps.cafe.views.send_table_status_changed_notification"
SITE = """# configuration file /etc/nginx/nginx.conf:
user www-data;
events { worker_connections 768; }
http {
    include /etc/nginx/mime.types;
    include /etc/nginx/sites-enabled/*;
}

# configuration file /etc/nginx/mime.types:
types { text/html html; }

# configuration file /etc/nginx/sites-enabled/crm:
upstream crm_app { server unix:/home/nur/asgi.sock fail_timeout=0; }
server { listen 80; server_name localhost; return 301 https://$host$request_uri; }
server {
    listen 443 ssl;
    server_name localhost;
    ssl_certificate /etc/ssl/crm/localhost.crt;
    client_max_body_size 20m;
    location / { root /var/www/crm; try_files $uri /index.html; }
    location /media/ { alias /home/nur/app/media/; }
    location /api/ { proxy_pass http://crm_app; proxy_set_header Host $host; }
    location /ws/ {
        proxy_pass http://crm_app;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $host;
        proxy_read_timeout 86400;
    }
}
"""
SETTINGS = {
    "allowed_hosts": ["localhost"],
    "asgi_application": "core.asgi.application",
    "debug": False,
    "channel_layer": "channels_redis.core.RedisChannelLayer",
    "channel_layer_prefix": "asgi",
}


def make_handbuilt():
    """Healthy: the probe's answer on such a server, and the client's view of it."""
    facts = make_facts({group: [HOST] for group in ("web", "app", "redis", "db")})
    probe = facts.hosts[HOST]
    probe["managed"] = False
    probe["nginx"]["dump"] = SITE
    gunicorn = probe["gunicorn"]
    gunicorn.update(reports={}, worker_env={}, config_path=None, env_file=None, service="gunicorn")
    gunicorn["config"] = {
        "worker_class": "uvicorn.workers.UvicornWorker",
        "workers": "3",
        "binds": ["unix:/home/nur/asgi.sock"],
        "app": "core.asgi:application",
        "from": "its command line",
    }
    redis = {"host": "127.0.0.1", "port": 6379, "db": 0, "password": False}
    gunicorn["env"] = {"CHANNEL_LAYER": SETTINGS["channel_layer"], "CHANNEL_LAYER_PREFIX": "asgi", "REDIS": redis}
    gunicorn["django"] = {
        "python": "/home/nur/venv/bin/python3",
        "directory": "/home/nur/app",
        "user": "nur",
        "settings_module": "core.settings",
        "settings": dict(SETTINGS),
        "groups": {},  # before the doctor's socket opened
    }
    probe["redis"] = {"configured": True, "target": redis, "ping": "PONG", "anonymous_ping": None}
    probe.pop("token")
    probe["token_error"] = "no token source (--token-command, or NURCRM_DOCTOR_TOKEN)"
    facts.token_given = True  # NURCRM_DOCTOR_TOKEN
    event = {"type": "table_status_changed", "data": {"id": 1, "status": "free"}}
    facts.session = {
        "token": True,
        "hello": {"type": "connection_established", "message": "Connected"},
        "close_code": None,
        "close_reason": None,
        "pong_ms": 1.2,
        "event": event,
        "event_ms": 900.0,
        "send": {"rc": 0, "sender": SENDER, "sent": [{"group": GROUP, "type": event["type"]}], "groups": {GROUP: 1}},
    }
    return facts


def judged(facts):
    return evaluate(facts)


def test_a_healthy_hand_built_server_passes_every_check_that_applies():
    results = judged(make_handbuilt())
    assert all(r.status == "pass" for r in results), [r for r in results if r.status != "pass"]
    given = {c.name for c in REGISTRY} - {r.check for r in results}
    # Only what the bundle's own gunicorn.conf.py makes (the workers' reports) and Sentinel's do not apply.
    assert given == {c.name for c in REGISTRY if c.only is managed or c.when is under_sentinel}
    evidence = {r.check: r.evidence for r in results}
    assert "better practice" in evidence["nginx_connection_upgrade_map"]
    assert "http://crm_app ['unix:/home/nur/asgi.sock']" in evidence["nginx_upstream_reaches_every_app_host"]
    assert "uvicorn.workers.UvicornWorker (its command line)" in evidence["gunicorn_worker_class"]
    assert "core.settings with /home/nur/venv/bin/python3 in /home/nur/app as nur" in evidence["django_settings_load"]
    assert "it does not send" in evidence["nginx_ws_headers"]  # X-Forwarded-*: told, not failed


def drop(facts, *lines):
    for line in lines:
        assert line in facts.hosts[HOST]["nginx"]["dump"], line
        facts.hosts[HOST]["nginx"]["dump"] = facts.hosts[HOST]["nginx"]["dump"].replace(line, "")


def in_memory(facts):
    django = facts.hosts[HOST]["gunicorn"]["django"]
    django["settings"]["channel_layer"] = "channels.layers.InMemoryChannelLayer"
    facts.hosts[HOST]["redis"] = {"configured": False}
    facts.session.update(event=None)


def other_group(facts):
    facts.session["send"]["groups"] = {f"{GROUP}_v2": 1}
    facts.session.update(event=None)


def redis_down(facts):
    facts.hosts[HOST]["redis"]["ping"] = "Could not connect to Redis at 127.0.0.1:6379: Connection refused"
    facts.hosts[HOST]["redis_server"].update(service="inactive", ping="Could not connect to Redis")


# the note's fault -> (what it breaks, the layer named first, words of its evidence)
FAULTS = {
    "upgrade-headers-missing": (
        lambda f: drop(f, "proxy_set_header Upgrade $http_upgrade;", 'proxy_set_header Connection "upgrade";'),
        "nginx",
        "lacks: proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade (it has `no Connection",
    ),
    "in-memory-channel-layer": (in_memory, "django", "its backend is channels.layers.InMemoryChannelLayer"),
    "sender-and-consumer-groups-differ": (
        other_group,
        "groups",
        f"the doctor's socket joined ['{GROUP}_v2']; the sender ({SENDER}) sent to ['{GROUP}']",
    ),
    "redis-down": (redis_down, "redis", "redis-server is inactive"),
    "redis-refuses-the-app": (
        lambda f: f.hosts[HOST]["redis"].update(ping="NOAUTH Authentication required."),
        "redis",
        "NOAUTH",
    ),
    "settings-do-not-load": (
        lambda f: f.hosts[HOST]["gunicorn"]["django"].update(
            settings=None, error="django.core.exceptions.ImproperlyConfigured: SECRET_KEY must not be empty"
        ),
        "django",
        "SECRET_KEY must not be empty",
    ),
    "sync-worker-class": (
        lambda f: f.hosts[HOST]["gunicorn"]["config"].update(worker_class="sync"),
        "gunicorn",
        "configured sync (its command line)",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_names_its_layer_first_and_offers_no_playbook(fault):
    breaks, layer, evidence = FAULTS[fault]
    facts = make_handbuilt()
    breaks(facts)
    results = judged(facts)
    first = first_failure(results, facts)
    assert first and first.layer == layer and evidence in first.evidence, first
    assert first.rerun is None and first.fix.startswith("by hand: crm was not deployed by the bundle"), first.fix
    assert all(r.rerun is None for r in results)


def test_a_socket_without_a_token_proves_the_path_to_the_consumer_by_its_close_code():
    facts = make_handbuilt()
    facts.token_given = False
    facts.session = {"token": False, "hello": None, "close_code": 4001, "close_reason": "", "event": None}
    results = {r.check: r for r in judged(facts)}
    assert results["consumer_accepts_token"].status == "pass"
    assert "closed a socket without a token with 4001" in results["consumer_accepts_token"].evidence
    assert "group_exists" not in results and "delivery" not in results  # nothing to judge them by, said above


def test_a_token_command_that_fails_is_the_failure():
    facts = make_handbuilt()
    facts.token_given = False
    facts.hosts[HOST]["token_error"] = "the token command failed: ModuleNotFoundError: No module named 'jwt'"
    facts.session = {"token": False, "hello": None, "close_code": 4001, "close_reason": "", "event": None}
    first = first_failure(judged(facts), facts)
    assert (first.check, first.layer) == (
        "consumer_accepts_token",
        "auth",
    ) and "No module named 'jwt'" in first.evidence


def test_the_django_checks_read_the_settings_only_where_the_bundle_did_not_deploy():
    assert not stranger(make_facts().on("nurcrm-local")) and stranger(make_handbuilt().on(HOST))


def test_fix_refuses_a_server_the_bundle_did_not_deploy(monkeypatch, capsys):
    facts = make_handbuilt()
    redis_down(facts)
    client_side(monkeypatch)
    monkeypatch.setattr(
        "doctor.walk.session", lambda site, token, send: {**copy.deepcopy(facts.session), "send": send({})}
    )
    fake = FakeHosts(facts)
    fake.probe = lambda name, mode, **args: copy.deepcopy(
        {"facts": facts.hosts[name], "send": facts.session["send"], "logs": {"gunicorn": [], "nginx": []}}[mode]
    )
    walk_over(monkeypatch, fake)
    code = cli.main(["-i", "inventory/crm", "--fix"])
    out, err = capsys.readouterr()
    assert code == 2 and "First broken layer: redis on crm" in out
    assert err.count("\n") == 1 and "--fix refused: crm was not deployed by the bundle" in err
    assert "ansible-playbook site.yml -i inventory/crm --check --diff" in err


def test_the_report_names_the_hosts_the_bundle_did_not_deploy():
    facts = make_handbuilt()
    assert report(judged(facts), facts, 1.0)["unmanaged"] == [HOST]
    assert report(evaluate(make_facts()), make_facts(), 1.0)["unmanaged"] == []


def test_the_bundles_web_redis_and_database_hosts_are_its_own_though_only_its_app_hosts_carry_the_marker():
    """/etc/nurcrm is made by the app role: a web-only host of the bundle's cluster has none, yet it is the
    bundle's (its self-signed certificate trusted as the inventory says, its layer restored by its playbook)."""
    facts = make_sentinel_cluster()
    for name in ("web1", "redis1", "redis2", "redis3", "db1"):
        facts.hosts[name]["managed"] = False
    assert all(r.ok for r in evaluate(facts)), [r for r in evaluate(facts) if not r.ok]
    assert facts.on("web1").managed and facts.on("db1").managed
    facts.hosts["web1"]["nginx"]["dump"] = facts.hosts["web1"]["nginx"]["dump"].replace(
        "Connection $connection_upgrade;", 'Connection "close";'
    )
    first = first_failure(evaluate(facts), facts)
    assert first.host == "web1" and first.rerun["playbook"] == "playbooks/nginx.yml", first


def test_a_deployed_project_sent_to_by_the_notes_sender_is_judged_by_the_groups_it_used():
    """A project other than app/ on a host the bundle deployed: no send_test_notification, so the probe ran the
    note's sender (it says so); its groups are judged as on a stranger's host, and a mismatch still fails."""
    facts = make_handbuilt()
    facts.hosts[HOST]["managed"] = True
    results = {r.check: r for r in judged(facts)}
    assert results["group_exists"].status == "pass", results["group_exists"]
    other_group(facts)
    results = {r.check: r for r in judged(facts)}
    assert results["group_exists"].status == "fail"
    assert f"the sender ({SENDER}) sent to ['{GROUP}']" in results["group_exists"].evidence
