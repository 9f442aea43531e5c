"""The doctor's proof: break one layer at a time on a converged host, run the doctor, and check
that its first failing check names that layer; then undo it. A healthy host passes every check;
--fix reruns the broken layer's playbook and the second walk passes; back-to-back walks see only
their own log lines; an inventory that lists the host under several names is walked on each."""

import asyncio
import json
import os
import subprocess
import time
import urllib.error
import uuid
from pathlib import Path

import pytest
import testinfra
from websockets.exceptions import InvalidStatus

from doctor.site import request, socket_to
from doctor.walk import walk
from tools.fixtures import (
    DOCTOR,
    ROOT,
    inventory_fixture,  # noqa: F401 (a fixture: pytest finds it here)
    no_timed_walks_fixture,  # noqa: F401
    walked,
)

BARE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # a new user's PATH: no .venv/bin
NGINX = "/etc/nginx/conf.d/nurcrm.conf"
ACCESS_LOG = "/var/log/nginx/access.log"
GUNICORN = "/etc/nurcrm/gunicorn.conf.py"
ENV = "/etc/nurcrm/app.env"
REDIS = "/etc/redis/users.acl"  # the users: the app's password is there
CONSUMER = "/opt/nurcrm/current/app/apps/cafe/consumers.py"
OTHER_HASH = "0" * 64  # a SHA-256 no password of the app's has
FILES = (NGINX, GUNICORN, ENV, REDIS, CONSUMER)  # what the faults edit, backed up first
BACKUP = "/root/doctor-faults"
ONE_WORKER_ON_DB_1 = """
def post_fork(server, worker):
    if worker.age == 1:
        os.environ["REDIS_URL"] = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/1"
"""

# fault -> (commands that break one layer, the layer the doctor must name first)
FAULTS = {
    "map-missing": (rf"sed -i '/^map \$http_upgrade/,/^}}/d' {NGINX}; systemctl reload nginx || true", "nginx"),
    "connection-close": (
        rf"sed -i 's/Connection \$connection_upgrade;/Connection \"close\";/' {NGINX} && systemctl reload nginx",
        "nginx",
    ),
    "upstream-path": (
        rf"sed -i 's#server unix:/home/nur/asgi.sock\b#server unix:/home/nur/asgi-old.sock#' {NGINX}"
        " && systemctl reload nginx",
        "nginx",
    ),
    "gunicorn-stopped": ("systemctl stop gunicorn", "gunicorn"),
    "sync-worker-class": (
        f"sed -i 's/^worker_class = .*/worker_class = \"sync\"/' {GUNICORN} && systemctl restart gunicorn",
        "gunicorn",
    ),
    "redis-stopped": ("systemctl stop redis-server", "redis"),
    "redis-password-changed": (
        f"sed -i -E 's/^(user \\S+ on )#[0-9a-f]+/\\1#{OTHER_HASH}/' {REDIS} && systemctl restart redis-server",
        "redis",
    ),
    "one-worker-on-another-redis-db": (
        f"printf '%s' '{ONE_WORKER_ON_DB_1}' >> {GUNICORN} && systemctl restart gunicorn",
        "redis",
    ),
    "in-memory-channel-layer": (f"sed -i \"s/^CHANNEL_LAYER=.*/CHANNEL_LAYER='memory'/\" {ENV}", "django"),
    "different-group-names": (
        f"sed -i 's/socket_group(self.company_id, self.branch_id)$/&  + \"_v2\"/' {CONSUMER}",
        "groups",
    ),
    "origin-not-allowed": (f"sed -i \"s/^ALLOWED_HOSTS=.*/ALLOWED_HOSTS='intranet.example'/\" {ENV}", "django"),
    "expired-token": (f"sed -i \"s/^JWT_ACCESS_TTL=.*/JWT_ACCESS_TTL='-60'/\" {ENV}", "auth"),
}
RESTARTS_GUNICORN = {"in-memory-channel-layer", "different-group-names", "origin-not-allowed"}


@pytest.fixture(scope="module")
def site(inventory):
    return walk(inventory)[0].site


@pytest.fixture(scope="module")
def host(inventory):
    host = testinfra.get_host("ansible://nurcrm-local", ansible_inventory=inventory)
    host.check_output(f"mkdir -p {BACKUP} && cp -p {' '.join(FILES)} {BACKUP}/")
    yield host
    restore(host)


def wait_healthy(host):
    """Until gunicorn's three workers have booted and reported, at most 30 s (the role's own wait)."""
    host.check_output("nurcrm-ready --workers 3 --socket /home/nur/asgi.sock --timeout 30")


def restore(host):
    copies = " && ".join(f"cp -p {BACKUP}/{Path(path).name} {path}" for path in FILES)
    host.check_output(
        copies + " && systemctl reload nginx && systemctl restart redis-server && systemctl restart gunicorn"
    )
    wait_healthy(host)


def doctor(*args):
    """The console command as a new user runs it from the bundle: its exit status and output."""
    env = dict(os.environ, PATH=BARE_PATH)
    done = subprocess.run([str(DOCTOR), *args], capture_output=True, text=True, cwd=ROOT, env=env)
    return done.returncode, done.stdout, done.stderr


def status_of(data, check):
    return {r["status"] for r in data["results"] if r["check"] == check}


def test_a_healthy_host_passes_every_check(host, inventory):
    data = walked(inventory)
    failing = [(r["check"], r["evidence"]) for r in data["results"] if r["status"] != "pass"]
    assert data["healthy"] and not failing, failing


@pytest.mark.parametrize("fault", FAULTS, ids=FAULTS)
def test_the_first_failing_check_names_the_broken_layer(host, inventory, fault):
    command, layer = FAULTS[fault]
    host.check_output(command + (" && systemctl restart gunicorn" if fault in RESTARTS_GUNICORN else ""))
    if "restart gunicorn" in command or fault in RESTARTS_GUNICORN:
        wait_healthy(host)
    try:
        data = walked(inventory)
        first = data["first_failure"]
        assert first, f"{fault}: the doctor found nothing wrong"
        assert first["layer"] == layer, f"{fault}: expected {layer}, the doctor says {json.dumps(first, indent=1)}"
        assert first["fix"], "a failing check must say how to fix it"
    finally:
        restore(host)


# fault -> the playbook that --fix must rerun on the host
FIXED_BY_A_RERUN = {
    "connection-close": "playbooks/nginx.yml",
    "sync-worker-class": "playbooks/asgi.yml",
    "redis-password-changed": "playbooks/redis.yml",
}


@pytest.mark.parametrize("fault", FIXED_BY_A_RERUN)
def test_fix_reruns_the_broken_layer_and_the_second_walk_passes(host, inventory, fault):
    command, layer = FAULTS[fault]
    host.check_output(command)
    wait_healthy(host)
    try:
        code, out, err = doctor("-i", inventory, "--fix", "--json")
        done = json.loads(out)
        first = done["before"]["first_failure"]
        rerun = f"ansible-playbook {FIXED_BY_A_RERUN[fault]} -i {inventory} --limit nurcrm-local"
        assert first["layer"] == layer and first["fix"].startswith(rerun + "  # "), first
        assert done["rerun"]["command"] == rerun and done["rerun"]["rc"] == 0, done["rerun"]
        assert done["rerun"]["changed"] and "changed=0" not in " ".join(done["rerun"]["recap"]), done["rerun"]
        failing = [(r["check"], r["evidence"]) for r in done["after"]["results"] if r["status"] != "pass"]
        assert code == 0 and done["after"]["healthy"], failing
    finally:
        restore(host)


def test_fix_with_check_shows_the_change_and_makes_none(host, inventory):
    host.check_output(FAULTS["connection-close"][0])
    try:
        code, out, _ = doctor("-i", inventory, "--fix", "--check")
        assert code == 1
        assert f"$ ansible-playbook playbooks/nginx.yml -i {inventory} --limit nurcrm-local --check --diff" in out
        assert '-        proxy_set_header Connection "close";' in out, out[-3000:]
        assert "+        proxy_set_header Connection $connection_upgrade;" in out
        assert "the walk is not repeated" in out
        assert 'Connection "close";' in host.file(NGINX).content_string, "--check changed the host"
        assert walked(inventory)["first_failure"]["check"] == "nginx_ws_headers"
    finally:
        restore(host)


def test_back_to_back_walks_see_only_their_own_log_lines(host, inventory, site):
    """The first walk, during a fault, reports nginx's upstream errors; the walk started right after the fault
    is undone reports neither them nor a line logged a moment before it started (nginx stamps to the second)."""
    host.check_output(FAULTS["upstream-path"][0])
    try:
        during = walked(inventory)
    finally:
        host.check_output(f"cp -p {BACKUP}/nurcrm.conf {NGINX} && systemctl reload nginx")
    with pytest.raises(urllib.error.HTTPError):  # nginx logs `open() ... failed` at [error]
        request(site, "GET", "/static/no-such-file.css")
    after = walked(inventory)
    assert status_of(during, "recent_errors") == {"fail"}, during["results"][-1]
    assert status_of(after, "recent_errors") == {"pass"}, after["results"][-1]
    assert after["healthy"]


def test_a_socket_nginx_cannot_pass_on_keeps_its_token_out_of_the_error_log_and_the_doctor_sees_the_502(
    host, inventory, site
):
    """gunicorn stopped takes its socket file with it; nginx logs a failed connect to a missing unix socket at
    [crit], quoting the request line, token and all. /ws/ logs no error lines: the access log shows the 502 by
    path, and the doctor's walk reads it there."""
    marker = f"eyJfault{uuid.uuid4().hex}"

    async def refused():
        with pytest.raises(InvalidStatus) as answer:
            async with socket_to(site, f"token={marker}"):
                pass
        return answer.value.response.status_code

    host.check_output("systemctl stop gunicorn")
    try:
        assert asyncio.run(refused()) == 502
        during = walked(inventory)  # its own token, on its own socket
    finally:
        restore(host)
    errors = host.file("/var/log/nginx/error.log").content_string
    assert marker not in errors and "eyJhbGciOi" not in errors, "a token is in nginx's error log"
    passed_on = host.run(f"grep -c '\"GET /ws/cafe/tables/?\\[query\\] HTTP/1.1\" 502 ' {ACCESS_LOG}")
    assert int(passed_on.stdout or 0) >= 2, "the access log shows no 502 of /ws/"
    recent = [r["evidence"] for r in during["results"] if r["check"] == "recent_errors" and r["status"] == "fail"]
    assert recent and "502" in recent[0], during["results"][-1]


def test_every_handshake_is_tried_on_every_peer_of_the_upstream_even_after_one_failed(host, site):
    """One host's upstream lists its socket again as backups, so that nginx retries a handshake a stopping
    worker dropped (`systemctl reload gunicorn`). A backup counts failures by default (max_fails=1 in 10 s):
    the first dropped handshake of a reload put the backups out, and a later one got the 502 a retry would
    have spared it (CI saw one among 300 screens). With the socket gone, every handshake in a row, each one
    after failures, must still be tried on every peer: more handshakes than nginx has workers, as each
    worker keeps its own count."""
    peers = int(host.check_output(f"grep -c '^ *server unix:/home/nur/asgi.sock' {NGINX}"))
    workers = host.check_output("ps -C nginx -o args=").count("worker process")
    handshakes = 2 * workers + 2
    start = int(host.check_output(f"wc -l < {ACCESS_LOG}"))

    async def refused():
        for _ in range(handshakes):
            with pytest.raises(InvalidStatus):
                async with socket_to(site, "token=eyJfault"):
                    pass

    host.check_output("systemctl stop gunicorn")
    try:
        asyncio.run(refused())
    finally:
        restore(host)
    written = host.check_output(f"tail -n +{start + 1} {ACCESS_LOG}").splitlines()
    lines = [line for line in written if '"GET /ws/' in line]
    tried = [line.split(" upstream=", 1)[1].split(" upstream_status=", 1)[0].count("unix:") for line in lines]
    # At least ours: the doctor's timer may have walked meanwhile, and its handshakes count the same.
    assert peers > 1 and len(tried) >= handshakes and set(tried) == {peers}, (peers, lines)


def test_the_console_command_runs_without_the_virtualenv_on_path(host):
    """What docs/doctor.md shows, from the bundle with a new user's PATH: 0 when healthy, 1 when broken."""
    code, out, err = doctor("-i", "inventory/local")
    assert code == 0, out + err
    assert "checks pass" in out
    host.check_output("systemctl stop redis-server")
    try:
        code, out, _ = doctor("-i", "inventory/local", "--json")
    finally:
        restore(host)
    assert code == 1
    assert json.loads(out)["first_failure"]["layer"] == "redis"


def test_the_playbook_runs_the_same_doctor(inventory):
    playbook = subprocess.run(
        ["ansible-playbook", "playbooks/doctor.yml", "-i", inventory], capture_output=True, text=True, cwd=ROOT
    )
    assert playbook.returncode == 0, playbook.stdout[-3000:]
    assert "checks pass" in playbook.stdout


ALIASES = {"web": ["web-a", "web-b"], "app": ["app-a", "app-b"], "redis": ["redis-a", "redis-b"], "db": ["db-a"]}


@pytest.fixture
def aliases(tmp_path):
    """The local stack listed under several names per group, each reached through the one container:
    every host of every group is probed, in parallel, and named."""
    lines = ["all:", "  vars:", "    ansible_connection: community.docker.docker", "    ansible_host: nurcrm-local"]
    lines += ["  children:"]
    for group, names in ALIASES.items():
        lines += [f"    {group}:", "      hosts:"] + [f"        {name}:" for name in names]
    (tmp_path / "hosts.yml").write_text("\n".join(lines) + "\n")
    (tmp_path / "group_vars").symlink_to(ROOT / "inventory" / "local" / "group_vars")
    return str(tmp_path)


def test_every_host_of_every_group_is_walked_and_named_within_the_time_budget(host, inventory, aliases):
    started = time.monotonic()
    one = walked(inventory)
    alone = time.monotonic() - started
    started = time.monotonic()
    many = walked(aliases)
    together = time.monotonic() - started
    names = sorted({n for group in ALIASES.values() for n in group})
    print(f"one host: {alone:.1f} s; {len(names)} hosts: {together:.1f} s")
    failing = [(r["check"], r["host"], r["evidence"]) for r in many["results"] if r["status"] != "pass"]
    assert many["healthy"], failing
    hosts_of = {}
    for r in many["results"]:
        hosts_of.setdefault(r["check"], []).append(r["host"])
    assert hosts_of["nginx_ws_headers"] == ALIASES["web"]
    assert hosts_of["gunicorn_active"] == ALIASES["app"]
    assert hosts_of["redis_server_active"] == ALIASES["redis"]
    assert hosts_of["postgresql_ready"] == ALIASES["db"]
    assert hosts_of["app_hosts_agree_on_redis"] == [",".join(ALIASES["app"])]
    assert len(many["results"]) > len(one["results"])
    # The budget: 15 s for one healthy host, at most 2 s more per extra host (probed in parallel).
    assert alone <= 15 and together <= 15 + 2 * (len(names) - 1), (alone, together)
