"""The takeover, end to end (issue 28): `site.yml -e takeover=true` deploys the CRM team's own project (the one
running here, molecule/projects/crm) over the hand-built server, with the inventory its plan asked for, the
project's variables (docs/project.md) and a vault made from the running app's .env. Nothing is lost: every row,
each location's answer (the frontend, an upload, the API to a token issued before the run, a screen's socket),
and the CRM's other program on Redis, given a user of its own. The run goes as the runbook says, under
`nurcrm-doctor --watch`, which tries the front page and a signed-in WebSocket handshake all along: the longest
window in which either failed is reported and under 10 s. The doctor passes afterwards, and the undo puts the
hand-built server back, answering as before."""

import asyncio
import hashlib
import json
import os
import secrets
import subprocess

import pytest
import yaml
from conftest import CHECKSUMS, get, wait_served
from test_2_takeover import CARRIED, HOST, MARKER, ROWS

from doctor.site import receive, request, socket_to
from doctor.watch import describe
from tools.fixtures import DOCTOR, ROOT, playbook

testinfra_hosts = [f"ansible://{HOST}"]

UPLOAD = "/media/menu/business-lunch.svg"  # an upload the CRM serves from /home/nur/app/media/
INTERRUPTION_S = 10  # the goal for HTTP requests and WebSocket handshakes alike (doctor/watch.py's)
# The project as molecule/project deploys it (from git there): here from this clone, on the CRM's own data.
PROJECT = ROOT / "molecule" / "project" / "inventory" / "group_vars" / "all" / "project.yml"


def answers(site, token):
    """What the CRM answers today: each location (status, type, the body's SHA-256), the API to `token`, and
    a screen's first frame."""

    async def hello():
        async with socket_to(site, f"token={token}") as ws:
            return (await receive(ws))["type"]

    found = {path: get(site, path) for path in ("/", UPLOAD)}
    found = {path: (status, kind, hashlib.sha256(body).hexdigest()) for path, (status, kind, body) in found.items()}
    found["api"] = request(site, "GET", "/api/cafe/tables/", token)
    found["socket"] = asyncio.run(hello())
    return found


@pytest.fixture(scope="module")
def cutover(host, tmp_path_factory):
    """The inventory for the takeover, as the runbook makes it: the plan's variables, the project's, the CRM's
    certificate kept (provided), the other Redis program's user; the vault from the running app's .env."""
    folder = tmp_path_factory.mktemp("cutover-inventory")
    name = host.ansible.get_variables()["nginx_server_name"]
    hosts = {HOST: {"ansible_connection": "community.docker.docker"}}
    groups = {group: {"hosts": {HOST: None}} for group in ("web", "app", "redis", "db")}
    (folder / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts, "children": groups}}))
    (folder / "group_vars" / "all").mkdir(parents=True)
    project = yaml.safe_load(PROJECT.read_text())
    for git in ("app_git_repo", "app_git_version", "app_git_subdir", "app_git_key", "app_git_known_hosts"):
        project.pop(git)
    project["app_env"].pop("CRM_MANAGER_PASSWORD")  # the CRM's manager exists: nothing to seed
    project["app_manage_before_switch"] = []
    celery = secrets.token_hex(16)
    variables = (
        project
        | CARRIED
        | {
            "nurcrm_domain": name,
            "nurcrm_database_user": "nur",
            "app_source_dir": str(ROOT / "molecule" / "projects" / "crm"),
            "nginx_certificate_source": "provided",
            "nginx_ssl_certificate": f"/etc/ssl/nurcrm/{name}.crt",
            "nginx_ssl_certificate_key": f"/etc/ssl/nurcrm/{name}.key",
            "doctor_cafile": f"~/.cache/nurcrm/handbuilt/{name}.crt",
            "redis_extra_users": [{"name": "celery", "password": celery, "keys": ["celery*"], "channels": ["*"]}],
        }
    )
    (folder / "group_vars" / "all" / "vars.yml").write_text(yaml.safe_dump(variables))
    password = tmp_path_factory.mktemp("vault") / "password"  # not in the inventory's folder, which Ansible reads
    password.write_text(secrets.token_hex(16) + "\n")
    password.chmod(0o600)
    os.environ["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password)
    rc, output = playbook(
        "-i", str(folder), "-e", f"vault_inventory={folder}", "-e", f"vault_import_host={HOST}",
        "-e", "vault_import_env=/home/nur/app/.env", playbook="playbooks/new-vault.yml",
    )  # fmt: skip
    assert rc == 0 and "vault_django_secret_key" in output.split("kept")[-1], output[-2000:]
    yield folder, celery
    os.environ.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)


def test_the_takeover_keeps_every_row_answer_user_and_program_and_the_undo_puts_it_back(host, site, token, cutover):
    folder, celery = cutover
    before, rows, files = answers(site, token), host.check_output(ROWS), host.check_output(CHECKSUMS)
    assert before["api"][0] == 200 and before["socket"] == "connection_established", before

    # The takeover as the runbook runs it: under the doctor's watch, signed in as a user of the CRM.
    command = ["ansible-playbook", "site.yml", "-i", str(folder), "-e", "takeover=true"]
    env = dict(os.environ, NURCRM_DOCTOR_TOKEN=token, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    done = subprocess.run(
        [str(DOCTOR), "-i", str(folder), "--json", "--watch", "--", *command],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    output, _, data = done.stdout.rpartition('\n{\n  "command": ')  # the playbook's output, then the watch's
    watched = json.loads('{"command": ' + data) if data else {}
    report = watched.get("interruption")
    if report:  # in every run's log (molecule.yml: -r P), as the operator reads it
        print(describe(command, watched["status"], report, watched["seconds"]))
    assert watched.get("status") == 0 and report, (output + done.stderr)[-4000:]
    assert host.file(MARKER).exists and host.file("/opt/nurcrm/current").is_symlink

    # Nothing lost.
    assert answers(site, token) == before
    assert host.check_output(ROWS) == rows
    ping = host.run(f"REDISCLI_AUTH={celery} redis-cli --user celery --no-auth-warning PING")
    assert ping.stdout.strip() == "PONG", ping.stderr
    assert "NOAUTH" in host.run("redis-cli PING").stdout + host.run("redis-cli PING").stderr  # the default user off
    assert len(report) == 2 and all(figures["attempts"] > 100 for figures in report.values()), report
    for name, figures in report.items():
        assert figures["longest_s"] < INTERRUPTION_S, f"{name} failed for {figures['longest_s']} s: {report}"
    assert done.returncode == 0 and not watched["over_limit"] and watched["limit_s"] == INTERRUPTION_S

    # The doctor passes the taken-over server, on the same inventory.
    done = subprocess.run([str(DOCTOR), "-i", str(folder), "--json"], capture_output=True, text=True, cwd=ROOT)
    data = json.loads(done.stdout) if done.stdout.strip() else None
    assert done.returncode == 0, [(r["check"], r["evidence"]) for r in (data or {}).get("results", [])
                                  if r["status"] != "pass"] or done.stderr[-2000:]  # fmt: skip

    # The way back: the hand-built server, answering as before.
    rc, output = playbook("-i", str(folder), playbook="playbooks/undo-takeover.yml")
    assert rc == 0 and "the host is as the backup found it" in output, output[-3000:]
    wait_served(host)
    assert host.check_output(CHECKSUMS) == files and host.check_output(ROWS) == rows
    assert answers(site, token) == before
