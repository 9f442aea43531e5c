"""The bundle meets the hand-built server (issue 28): site.yml, pointed at it by an inventory copied from
inventory/local, stops before any change and prints the plan (each thing made by hand, and what the run would do
to it), and so does --check --diff; nothing changes (checksums, the database's rows, no marker). With
-e takeover=true the takeover's play backs everything up first, with a manifest, and marks the host;
playbooks/undo-takeover.yml then puts back what a run changed (the code's .env, redis.conf, a site of the
bundle's, nur's shell, a row) and the CRM answers as before, to a token issued before."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import APP_DIR, CHECKSUMS, get, wait_served

from doctor.site import request
from tools.fixtures import ROOT, playbook

testinfra_hosts = ["ansible://crm.nurcrm.test"]

HOST = "crm.nurcrm.test"
MARKER = "/var/lib/nurcrm/host.json"
CELERY = "crm-celery-standin"  # another program of the CRM's on its Redis
# The database's rows: pg_dump's data, without its random \\restrict key of each run.
ROWS = (
    "runuser -u postgres -- pg_dump --data-only --exclude-table=django_session nurcrm_prod"
    " | grep -vE '^.(un)?restrict ' | sha256sum"
)
# What the plan must name: the code with its .env, the venv, the unit, the site, the database and its role, Redis
# (Debian's configuration, which loses nothing, and the CRM's data in it, which blocks).
PLAN = (
    f"app: {APP_DIR}: a Django project with a .env (the running app's secrets) with uploads (media/) -> removed after "
    "the roll, once the bundle's release serves",
    "app: /home/nur/venv: a virtualenv -> removed after the roll, once the bundle's release serves",
    "asgi: /etc/systemd/system/gunicorn.service: a unit of its own (/home/nur/venv/bin/gunicorn core.asgi:application",
    "nginx: /etc/nginx/sites-enabled/nurcrm: a site for app.nurcrm.test with locations",
    "taken out of sites-enabled (its map and upstream would clash); the bundle's server for app.nurcrm.test answers",
    "location /: LOST (the bundle's / proxies everything to the app) unless carried over",
    "location /api/: LOST unless carried over",
    "location /media/: LOST: set nurcrm_media_root",
    "location /ws/: answered by the bundle's WebSocket proxy",
    "server client_max_body_size 20M: LOST (the bundle's is 1m: larger requests get 413) unless "
    "nginx_client_max_body_size",
    "postgresql: database nurcrm_prod: a database with the operator's rows -> left as is, but the app is pointed "
    "at database nurcrm instead (set nurcrm_database: nurcrm_prod to keep using it)",
    "postgresql: role nur: a database role made by hand -> its password reset to the vault's",
    "redis: /etc/redis/redis.conf: Debian's redis.conf -> rewritten: the bundle's ACL users, and the default user as "
    "the hand-made clients use it until the bundle's release serves; then any other client gets NOAUTH (nothing of "
    "the operator's is lost)",
    "redis: Redis data and clients: ",
    "clients connected, of which not the app's: redis-cli (pid ",
)

# What the plan says the inventory needs for this server: the CRM's database, its upload limit, and the site's
# locations as the plan suggests them.
CARRIED = {
    "nurcrm_database": "nurcrm_prod",
    "nginx_client_max_body_size": "20M",
    "nurcrm_media_root": "/var/lib/nurcrm/media",
    "nginx_extra_locations": [
        {
            "location": "/",
            "directives": ["root /var/www/nurcrm-frontend", "try_files $uri /index.html"],
            "proxy": False,
        },
        {"location": "/api/", "directives": [], "proxy": True},
    ],
}


@pytest.fixture(scope="module")
def inventory(host, tmp_path_factory):
    """The bundle's inventory for this server, as a new user makes it: inventory/local's, pointed at the host."""
    folder = tmp_path_factory.mktemp("bundle-inventory")
    hosts = {HOST: {"ansible_connection": "community.docker.docker"}}
    groups = {group: {"hosts": {HOST: None}} for group in ("web", "app", "redis", "db")}
    (folder / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts, "children": groups}}))
    (folder / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(ROOT / "inventory" / "local" / "group_vars" / "all" / "vault.yml", folder / "group_vars" / "all")
    name = host.ansible.get_variables()["nginx_server_name"]
    (folder / "group_vars" / "all" / "vars.yml").write_text(yaml.safe_dump({"nurcrm_domain": name}))
    return str(folder)


@pytest.fixture(scope="module")
def celery(host):
    """Another program of the CRM's on its Redis (a stand-in for its Celery worker), for as long as the module
    needs it (the takeover's test stops it once the takeover was told to let it be refused)."""
    host.check_output(f"systemd-run --unit={CELERY} redis-cli -p 6379 SUBSCRIBE celery")
    yield CELERY
    host.run(f"systemctl stop {CELERY}")


@pytest.fixture(scope="module")
def before(host, celery):
    return host.check_output(CHECKSUMS), host.check_output(ROWS)


def test_site_yml_stops_before_any_change_and_prints_the_plan(host, inventory, before):
    rc, output = playbook("-i", inventory)
    assert rc != 0
    assert f"{HOST} was set up without this bundle" in output and "-e takeover=true" in output, output[-3000:]
    for line in PLAN:
        assert line in output, f"the plan lacks {line!r}: {output[-4000:]}"
    assert f"{HOST} : ok=" in output and "changed=0" in output.split(f"{HOST} : ok=")[1][:60], output[-600:]
    assert (host.check_output(CHECKSUMS), host.check_output(ROWS)) == before
    assert not host.file(MARKER).exists


def test_check_diff_shows_the_same_plan_and_changes_nothing(host, inventory, before):
    # Told plainly not to take over: the command line's "false" is a string, which Jinja alone counts as true.
    rc, output = playbook("-i", inventory, "--check", "--diff", "-e", "takeover=false")
    assert rc != 0 and f"{HOST} was set up without this bundle" in output
    assert all(line in output for line in PLAN), output[-4000:]
    assert (host.check_output(CHECKSUMS), host.check_output(ROWS)) == before


def test_the_takeover_backs_everything_up_and_the_undo_puts_back_what_a_run_changed(
    host, inventory, before, site, token
):
    # The site's frontend at /, its API and its uploads would stop answering, and Redis would refuse another
    # program of the CRM's (a stand-in for its Celery worker): the takeover stops before the backup, naming
    # them, and suggests the variables that carry the locations over; given those, and told to let the other
    # program be refused, it goes on (the stand-in is the module's fixture `before` asked for).
    rc, output = playbook("-i", inventory, "-e", "takeover=true", playbook="playbooks/takeover.yml")
    said = " ".join(output.split())
    assert rc != 0 and "nothing was changed: app.nurcrm.test would no longer answer /, /api/, /media/" in said
    assert "Redis would refuse its other clients (redis-cli (pid " in said, output[-3000:]
    assert "the app would start on a new, empty database nurcrm while nurcrm_prod hold" in said, output[-3000:]
    assert "would refuse what the site accepts today (client_max_body_size 20M)" in said, output[-3000:]
    assert "location: /api/" in output and "try_files $uri /index.html" in output, output[-3000:]
    assert "nginx_client_max_body_size: 20M" in output, output[-3000:]
    assert not host.file(MARKER).exists and (host.check_output(CHECKSUMS), host.check_output(ROWS)) == before
    carried = yaml.safe_load((Path(inventory) / "group_vars" / "all" / "vars.yml").read_text()) | CARRIED
    (Path(inventory) / "group_vars" / "all" / "vars.yml").write_text(yaml.safe_dump(carried))
    rc, output = playbook("-i", inventory, "-e", "takeover=true", "-e", "takeover_refuse_redis_clients=true",
                          playbook="playbooks/takeover.yml")  # fmt: skip
    assert rc == 0, output[-3000:]
    assert "location /: carried over by nginx_extra_locations" in output, output[-3000:]
    marker = json.loads(host.file(MARKER).content_string)
    folder = marker["backup"]
    assert f"{HOST}: backed up in {folder}" in output
    manifest = json.loads(host.file(f"{folder}/manifest.json").content_string)
    assert f"{APP_DIR}/.env" in manifest["files"] and "/etc/nginx/sites-available/nurcrm" in manifest["files"]
    assert [db["name"] for db in manifest["databases"]] == ["nurcrm_prod"]
    assert host.file(f"{folder}/manifest.json").mode == 0o600 and host.file(folder).mode == 0o700
    # A second run goes straight on: the host is marked.
    rc, output = playbook("-i", inventory, "-e", "takeover=true", playbook="playbooks/takeover.yml")
    assert rc == 0 and "changed=0" in output.split(f"{HOST} : ok=")[1][:60], output[-2000:]

    # What a run would do: the .env and venv gone, Redis and nginx reconfigured, a row changed, nur's shell.
    host.check_output(
        f"rm -rf {APP_DIR}/.env /home/nur/venv && echo 'user default off' >> /etc/redis/redis.conf"
        " && echo 'server { listen 8443; }' > /etc/nginx/conf.d/nurcrm.conf && usermod -s /usr/sbin/nologin nur"
        " && mkdir -p /opt/nurcrm/releases && runuser -u postgres -- psql -d nurcrm_prod -qc"
        " \"UPDATE cafe_table SET status = 'reserved'\""
    )
    assert host.check_output(CHECKSUMS) != before[0] and host.check_output(ROWS) != before[1]

    rc, output = playbook("-i", inventory, playbook="playbooks/undo-takeover.yml")
    assert rc == 0, output[-3000:]
    assert f"{HOST}: the host is as the backup found it ({folder})" in output, output[-2000:]
    wait_served(host)
    assert (host.check_output(CHECKSUMS), host.check_output(ROWS)) == before
    assert host.user("nur").shell == "/bin/bash" and not host.file("/opt/nurcrm").exists
    assert not host.file(MARKER).exists  # unmarked again: the next run surveys it anew
    assert get(site, "/")[0] == 200
    status, tables = request(site, "GET", "/api/cafe/tables/", token)  # signed in before the takeover
    assert status == 200 and {table["status"] for table in tables} != {"reserved"}
