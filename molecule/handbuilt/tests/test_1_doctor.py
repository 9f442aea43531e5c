"""The doctor on the hand-built server (issue 26): given an inventory with the connection, the server name and
how this client reaches and trusts it, it passes the healthy server (exit 0), names each of the production
note's faults by its layer with evidence (exit 1), passes again once the fault is undone, refuses --fix, and
leaves every configuration file as it found it (checksums before and after every walk)."""

import json
import os
import shlex
import subprocess

import pytest
import yaml
from conftest import APP_DIR, CHECKSUMS, COMPANY, wait_served

from tools.fixtures import DOCTOR, ROOT

testinfra_hosts = ["ansible://crm.nurcrm.test"]

BARE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # a new user's PATH: nothing of .venv
SITE = "/etc/nginx/sites-available/nurcrm"
SETTINGS = f"{APP_DIR}/core/settings.py"
CONSUMER = f"{APP_DIR}/apps/cafe/consumers.py"
REDIS_CONF = "/etc/redis/redis.conf"
EDITED = (SITE, SETTINGS, CONSUMER, REDIS_CONF)  # what the faults edit, backed up first
BACKUP = "/root/doctor-faults"
# The manager's token, printed on the host by the app's own code: the doctor's --token-command.
TOKEN_COMMAND = "python manage.py shell -v 0 -c " + shlex.quote(
    "from apps.users.models import User; from apps.users.tokens import issue_token; "
    "print(issue_token(User.objects.get(username='manager')))"
)


@pytest.fixture(scope="module")
def inventory(host, tmp_path_factory):
    """What an operator writes for the doctor: the connection and the server name, and how this client reaches
    (the name is not in DNS here) and trusts (a self-signed certificate) the site."""
    name = host.ansible.get_variables()["nginx_server_name"]
    folder = tmp_path_factory.mktemp("inventory")
    all_vars = {
        "nginx_server_name": name,
        "doctor_connect_address": "127.0.0.1",
        "doctor_cafile": f"~/.cache/nurcrm/handbuilt/{name}.crt",
    }
    hosts = {"crm.nurcrm.test": {"ansible_connection": "community.docker.docker"}}
    groups = {group: {"hosts": {"crm.nurcrm.test": None}} for group in ("web", "app", "redis", "db")}
    (folder / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": all_vars, "children": groups}}))
    return str(folder / "hosts.yml")


@pytest.fixture(scope="module")
def backed_up(host):
    host.check_output(f"mkdir -p {BACKUP} && cp -p {' '.join(EDITED)} {BACKUP}/")
    yield host
    restore(host)


def restore(host):
    copies = " && ".join(f"cp -p {BACKUP}/{os.path.basename(path)} {path}" for path in EDITED)
    host.check_output(f"{copies} && systemctl reload nginx && systemctl restart redis-server gunicorn")
    wait_served(host)


def doctor(host, inventory, *args, token_command=True):
    """The console command as a new user runs it (--json), with the configuration's checksums taken before and
    after the walk: (exit status, report, stderr)."""
    before = host.check_output(CHECKSUMS)
    command = [str(DOCTOR), "-i", inventory, *args] + (["--token-command", TOKEN_COMMAND] if token_command else [])
    env = {k: v for k, v in os.environ.items() if k != "NURCRM_DOCTOR_TOKEN"} | {"PATH": BARE_PATH}
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert host.check_output(CHECKSUMS) == before, "the walk changed a file on the host"
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, done.stderr


def failing(data):
    return [(r["check"], r["evidence"]) for r in data["results"] if r["status"] != "pass"]


def test_a_healthy_hand_built_server_passes(backed_up, inventory):
    code, data, err = doctor(backed_up, inventory)
    assert code == 0 and data["healthy"], failing(data) if data else err
    assert data["unmanaged"] == ["crm.nurcrm.test"] and data["seconds"] < 15, data["seconds"]
    evidence = {r["check"]: r["evidence"] for r in data["results"]}
    assert "uvicorn.workers.UvicornWorker (its command line)" in evidence["gunicorn_worker_class"]
    assert "as nur" in evidence["django_settings_load"] and APP_DIR in evidence["django_settings_load"]
    assert f"cafe_tables_{COMPANY}" in evidence["group_exists"]
    assert "table_status_changed arrived" in evidence["delivery"]


def test_without_a_token_the_close_code_proves_the_path_to_the_consumer(backed_up, inventory):
    code, data, err = doctor(backed_up, inventory, token_command=False)
    assert code == 0, failing(data) if data else err
    results = {r["check"]: r for r in data["results"]}
    assert "closed a socket without a token with 4001" in results["consumer_accepts_token"]["evidence"]
    assert "group_exists" not in results and "delivery" not in results


# fault -> (commands that break it, the layer named first, words of the evidence)
FAULTS = {
    "upgrade-headers-missing": (
        f"sed -i '/proxy_set_header Upgrade/d; /proxy_set_header Connection/d' {SITE} && systemctl reload nginx",
        "nginx",
        "no Connection header",
    ),
    "in-memory-channel-layer": (
        # as an operator writes it: the in-memory layer takes no hosts
        f"sed -i 's/channels_redis.core.RedisChannelLayer/channels.layers.InMemoryChannelLayer/;"
        f' /"CONFIG": {{"hosts": \\[REDIS_URL\\]}},/d\' {SETTINGS} && systemctl restart gunicorn',
        "django",
        "channels.layers.InMemoryChannelLayer",
    ),
    "different-group-names": (
        f"sed -i 's/self.group_name = table_group(user.company_id, branch_id)$/& + \"_v2\"/' {CONSUMER}"
        " && systemctl restart gunicorn",
        "groups",
        f"the doctor's socket joined ['cafe_tables_{COMPANY}_v2']",
    ),
    "redis-down": ("systemctl stop redis-server", "redis", "redis-server is inactive"),
    "redis-refuses-the-app": (
        f"printf 'requirepass %s\\n' $(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \\n') >> {REDIS_CONF}"
        " && systemctl restart redis-server",
        "redis",
        "NOAUTH",
    ),
}


@pytest.mark.parametrize("fault", FAULTS, ids=FAULTS)
def test_each_fault_is_named_by_its_layer_and_the_undo_passes_again(backed_up, inventory, fault):
    command, layer, words = FAULTS[fault]
    backed_up.check_output(command)
    if "gunicorn" in command:
        wait_served(backed_up)
    try:
        code, data, err = doctor(backed_up, inventory)
        first = data and data["first_failure"]
        assert code == 1 and first, err or failing(data)
        assert first["layer"] == layer and words in first["evidence"], json.dumps(first, indent=1)
        assert first["rerun"] is None and first["fix"].startswith("by hand: crm.nurcrm.test was not deployed"), first
    finally:
        restore(backed_up)
    code, data, err = doctor(backed_up, inventory)
    assert code == 0, failing(data) if data else err


def test_fix_refuses_in_one_line_and_changes_nothing(backed_up, inventory):
    backed_up.check_output("systemctl stop redis-server")
    try:
        before = backed_up.check_output(CHECKSUMS)
        env = dict(os.environ, PATH=BARE_PATH)
        done = subprocess.run(
            [str(DOCTOR), "-i", inventory, "--fix", "--token-command", TOKEN_COMMAND],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
        assert done.returncode == 2 and "First broken layer: redis on crm.nurcrm.test" in done.stdout
        assert done.stderr.count("\n") == 1 and "--fix refused: crm.nurcrm.test was not deployed" in done.stderr
        assert f"ansible-playbook site.yml -i {inventory} --check --diff" in done.stderr
        assert backed_up.check_output(CHECKSUMS) == before and not backed_up.service("redis-server").is_running
    finally:
        restore(backed_up)
