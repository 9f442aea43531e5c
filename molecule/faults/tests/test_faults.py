"""The doctor's proof: break one layer at a time on a converged host, run the doctor, and check
that its first failing check names that layer; then undo it. A healthy host passes every check."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra

from doctor.cli import report
from doctor.walk import evaluate, gather

ROOT = Path(__file__).resolve().parents[3]
NGINX = "/etc/nginx/conf.d/nurcrm.conf"
GUNICORN = "/etc/nurcrm/gunicorn.conf.py"
ENV = "/etc/nurcrm/app.env"
CONSUMER = "/home/nur/app/apps/cafe/consumers.py"
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
def inventory(pytestconfig):
    return str(Path(pytestconfig.option.ansible_inventory).resolve())


@pytest.fixture(scope="module")
def host(inventory):
    host = testinfra.get_host("ansible://nurcrm-local", ansible_inventory=inventory)
    host.check_output(f"mkdir -p {BACKUP} && cp -p {NGINX} {GUNICORN} {ENV} {CONSUMER} {BACKUP}/")
    yield host
    restore(host)


def wait_healthy(host):
    """Until gunicorn's three workers have booted and reported, at most 30 s."""
    host.check_output(
        "for i in $(seq 150); do [ -S /home/nur/asgi.sock ] && [ $(ls /run/gunicorn | wc -l) -eq 3 ] && exit 0;"
        " sleep 0.2; done; exit 1"
    )


def restore(host):
    host.check_output(
        f"cp -p {BACKUP}/nurcrm.conf {NGINX} && cp -p {BACKUP}/gunicorn.conf.py {GUNICORN}"
        f" && cp -p {BACKUP}/app.env {ENV} && cp -p {BACKUP}/consumers.py {CONSUMER}"
        " && systemctl reload nginx && systemctl start redis-server && systemctl restart gunicorn"
    )
    wait_healthy(host)


def walk(inventory):
    _, facts = gather(inventory)
    return report(evaluate(facts), facts, 0, inventory)


def test_a_healthy_host_passes_every_check(host, inventory):
    data = walk(inventory)
    failing = [(r["check"], r["evidence"]) for r in data["results"] if r["status"] != "pass"]
    assert data["healthy"] and not failing, failing


@pytest.mark.parametrize("fault", FAULTS, ids=FAULTS)
def test_the_first_failing_check_names_the_broken_layer(host, inventory, fault):
    command, layer = FAULTS[fault]
    host.check_output(command + (" && systemctl restart gunicorn" if fault in RESTARTS_GUNICORN else ""))
    if "restart gunicorn" in command or fault in RESTARTS_GUNICORN:
        wait_healthy(host)
    try:
        data = walk(inventory)
        first = data["first_failure"]
        assert first, f"{fault}: the doctor found nothing wrong"
        assert first["layer"] == layer, f"{fault}: expected {layer}, the doctor says {json.dumps(first, indent=1)}"
        assert first["fix"], "a failing check must say how to fix it"
    finally:
        restore(host)


def test_the_console_command_exits_0_on_a_healthy_host_and_1_on_a_broken_one(host, inventory):
    doctor = [sys.executable, "-m", "doctor", "-i", inventory]
    healthy = subprocess.run(doctor, capture_output=True, text=True, cwd=ROOT)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "All " in healthy.stdout and "checks pass" in healthy.stdout
    host.check_output("systemctl stop redis-server")
    try:
        broken = subprocess.run([*doctor, "--json"], capture_output=True, text=True, cwd=ROOT)
    finally:
        restore(host)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["first_failure"]["layer"] == "redis"


def test_the_playbook_runs_the_same_doctor(inventory):
    playbook = subprocess.run(
        ["ansible-playbook", "playbooks/doctor.yml", "-i", inventory], capture_output=True, text=True, cwd=ROOT
    )
    assert playbook.returncode == 0, playbook.stdout[-3000:]
    assert "checks pass" in playbook.stdout
