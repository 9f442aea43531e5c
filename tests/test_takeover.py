"""The takeover's survey and backup (roles/takeover/files), on folders of this machine laid out as a server set up
by hand: what the survey reports and what it leaves alone, and a backup that puts back exactly what it found.
The scenario proves both on a real hand-built server (molecule/handbuilt/tests/test_2_takeover.py)."""

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "roles" / "takeover" / "files"


def load(name):
    spec = importlib.util.spec_from_file_location(f"takeover_{name}", FILES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


survey = load("survey")
backup = load("backup")


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def by_thing(found):
    return {Path(item["thing"]).name if item["thing"].startswith("/") else item["thing"]: item for item in found}


def test_the_code_venv_and_env_in_the_app_users_home_are_found_with_what_the_app_role_does_to_them(tmp_path):
    home = tmp_path / "nur"
    write(home / "app" / "manage.py")
    write(home / "app" / ".env", "SECRET_KEY=x\n")
    write(home / "app" / "media" / "menu" / "plov.jpg")
    write(home / "venv" / "pyvenv.cfg")
    write(home / "notes.txt")
    write(home / "asgi.sock")
    found = by_thing(survey.home_findings("nobody-such-user", str(home), {"app", "venv"}, {"asgi.sock"}))
    assert set(found) == {"app", "venv", "notes.txt"}
    assert found["app"]["found"] == "a Django project with a .env (the running app's secrets) with uploads (media/)"
    removed = "removed after the roll, once the bundle's release serves"
    assert found["app"]["action"] == removed == found["venv"]["action"]
    assert found["venv"]["found"] == "a virtualenv"
    assert found["notes.txt"]["action"] == "kept (the bundle's release does not use it)"
    assert found["app"]["blocks"] and not found["notes.txt"]["blocks"]  # kept: nothing of the operator's is lost
    assert found["app"]["paths"] == [str(home / "app")]
    assert found["app"]["line"].startswith(f"app: {home / 'app'}: a Django project")


def test_debians_own_shell_files_are_not_the_operators_but_edited_ones_are(tmp_path):
    skel = Path("/etc/skel/.bashrc")
    if not skel.is_file():
        pytest.skip("this machine has no /etc/skel/.bashrc")
    home = tmp_path / "nur"
    write(home / ".bashrc", skel.read_text())
    assert survey.home_findings("nobody-such-user", str(home), {".bashrc"}, set()) == []
    write(home / ".bashrc", skel.read_text() + "export DJANGO_SETTINGS_MODULE=core.settings\n")
    assert [item["action"] for item in survey.home_findings("x", str(home), {".bashrc"}, set())] == [
        "removed after the roll, once the bundle's release serves"
    ]


def test_a_login_shell_of_the_app_user_is_found_and_a_service_users_is_not():
    assert [item["found"] for item in survey.home_findings("root", "/nonexistent", set(), set())] == [
        "logs in with " + __import__("pwd").getpwnam("root").pw_shell
    ]
    assert survey.home_findings("nobody", "/nonexistent", set(), set()) == []  # /usr/sbin/nologin


def test_units_and_supervisor_programs_that_run_an_app_server_are_found(tmp_path):
    units, supervisor = tmp_path / "system", tmp_path / "supervisor"
    write(units / "gunicorn.service", "[Service]\nExecStart=/home/nur/venv/bin/gunicorn core.asgi:application\n")
    write(units / "gunicorn.service.d" / "limits.conf", "[Service]\nLimitNOFILE=65536\n")
    write(units / "crm-ws.service", "[Service]\nExecStart=/home/nur/venv/bin/daphne core.asgi:application\n")
    write(units / "backup.service", "[Service]\nExecStart=/usr/local/bin/backup\n")
    write(supervisor / "celery.conf", "[program:celery]\ncommand=celery -A core worker\n")
    found = by_thing(survey.unit_findings("gunicorn", str(units), str(supervisor)))
    assert set(found) == {"gunicorn.service", "crm-ws.service", "celery.conf"}
    assert found["gunicorn.service"]["action"].startswith("replaced by the bundle's unit")
    assert found["gunicorn.service"]["paths"] == sorted(
        [str(units / "gunicorn.service"), str(units / "gunicorn.service.d" / "limits.conf")]
    )
    assert found["crm-ws.service"]["action"].startswith("left running beside the bundle's gunicorn")
    assert found["gunicorn.service"]["blocks"] and not found["crm-ws.service"]["blocks"]
    assert found["celery.conf"]["found"] == "supervisor program celery"


def test_a_site_for_the_domain_is_taken_out_and_a_default_server_clashes_and_other_sites_are_left(tmp_path):
    nginx = tmp_path / "nginx"
    crm = write(
        nginx / "sites-available" / "crm",
        "server {\n listen 443 ssl;\n server_name app.nurcrm.kg www.nurcrm.kg;\n"
        " location / { root /srv; }\n location /media/ { alias /m/; }\n location  ~ ^/api/ { proxy_pass x; }\n}\n",
    )
    (nginx / "sites-enabled").mkdir()
    (nginx / "sites-enabled" / "crm").symlink_to(crm)
    write(nginx / "sites-enabled" / "catchall", "server { listen 80 default_server; server_name _; return 444; }")
    write(nginx / "conf.d" / "wiki.conf", "server { listen 80; server_name wiki.nurcrm.kg; }")
    found = by_thing(survey.nginx_findings("app.nurcrm.kg", "/etc/nginx/conf.d/nurcrm.conf", str(nginx)))
    assert set(found) == {"crm", "catchall"}
    assert found["crm"]["found"] == "a site for app.nurcrm.kg, www.nurcrm.kg with locations /, /media/, ~ ^/api/"
    assert found["crm"]["action"].startswith("taken out of sites-enabled (its map and upstream would clash); the "
                                             "bundle's server for app.nurcrm.kg answers in its place")  # fmt: skip
    assert found["crm"]["site_off"] == str(nginx / "sites-enabled" / "crm")  # the link: sites-available keeps it
    assert [each["location"] for each in found["crm"]["locations"]] == ["/", "/media/", "~ ^/api/"]
    assert found["crm"]["paths"] == sorted([str(nginx / "sites-enabled" / "crm"), str(crm)])
    assert found["catchall"]["action"] == "kept, but its default_server (80) clashes with the bundle's"


# A site as the production note's server has it: the frontend at /, the API and the sockets proxied to the app's
# upstream, uploads served from the code's folder; a plain-HTTP server that only redirects.
HANDMADE_SITE = """
map $http_upgrade $connection_upgrade { default upgrade; '' close; }
upstream django_asgi { server unix:/home/nur/asgi.sock; }
server { listen 80; server_name app.nurcrm.kg; location / { return 301 https://$host$request_uri; } }
server {
    listen 443 ssl http2;
    server_name app.nurcrm.kg;  # the CRM
    location / {
        root /var/www/nurcrm-frontend;
        try_files $uri /index.html;
    }
    location /api/ {
        proxy_pass http://django_asgi;
        proxy_set_header Host $host;
    }
    location /media/ { alias /home/nur/app/media/; }
    location /static/ { alias /home/nur/app/static/; }
    location /ws/ { proxy_pass http://django_asgi; proxy_http_version 1.1; }
    location = /robots.txt { return 200 "User-agent: *\\nDisallow: /\\n"; }
    location ~ \\.php$ { if ($request_method) { return 403; } }
}
"""


def fates(locations):
    return {each["location"]: each["fate"].split(" (")[0].split(":")[0] for each in locations}


def test_each_location_of_the_domains_site_is_answered_by_the_bundle_carried_over_or_named_lost():
    located = survey.site_locations(HANDMADE_SITE, "app.nurcrm.kg", {"carried": set(), "media_root": ""})
    assert fates(located) == {
        "/": "LOST",  # a frontend, where the bundle's / proxies to the app
        "/api/": "LOST unless carried over",  # the app, but the bundle's / no longer reaches it once / is carried
        "/media/": "LOST",  # the bundle serves no uploads without nurcrm_media_root
        "/static/": "answered by the release's collected static files",
        "/ws/": "answered by the bundle's WebSocket proxy",
        "= /robots.txt": "LOST unless carried over",
        "~ \\.php$": "LOST",  # a nested block: carried by hand
    }
    assert {each["location"] for each in located if each["lost"]} == {"/", "/api/", "/media/", "= /robots.txt",
                                                                        "~ \\.php$"}  # fmt: skip
    # What the plan suggests for nginx_extra_locations: the site's own directives, the app's proxying the bundle's.
    assert [each["carried"] for each in located if each["carried"]] == [
        {"location": "/", "directives": ["root /var/www/nurcrm-frontend", "try_files $uri /index.html"],
         "proxy": False},
        {"location": "/api/", "directives": [], "proxy": True},
        {"location": "= /robots.txt", "directives": ['return 200 "User-agent: *\\nDisallow: /\\n"'], "proxy": False},
    ]  # fmt: skip


def test_locations_carried_by_the_inventory_and_a_media_root_lose_nothing_and_a_proxied_root_covers_the_api():
    carried = {"carried": {"/", "/api/", "= /robots.txt"}, "media_root": "/srv/nurcrm/media"}
    site = HANDMADE_SITE.replace("location ~ \\.php$ { if ($request_method) { return 403; } }", "")
    located = survey.site_locations(site, "app.nurcrm.kg", carried)
    assert not [each for each in located if each["lost"]], located
    assert fates(located)["/media/"] == "answered from /srv/nurcrm/media"
    # Its files are copied there by the takeover, from the folder the site serves them from.
    assert [each.get("media_from") for each in located if each["location"] == "/media/"] == ["/home/nur/app/media"]
    assert "the takeover copies its files there" in [e["fate"] for e in located if e["location"] == "/media/"][0]
    rooted = site.replace("alias /home/nur/app/media/;", "root /home/nur/app;")
    assert [e.get("media_from") for e in survey.site_locations(rooted, "app.nurcrm.kg", carried)
            if e["location"] == "/media/"] == ["/home/nur/app/media"]  # fmt: skip
    # A site whose / is the app already: the bundle's / answers it and every other prefix proxied to the app.
    proxied = site.replace("root /var/www/nurcrm-frontend;", "proxy_pass http://django_asgi;")
    proxied = proxied.replace("try_files $uri /index.html;", "")
    located = survey.site_locations(proxied, "app.nurcrm.kg", {"carried": set(), "media_root": "/m"})
    assert fates(located)["/"] == fates(located)["/api/"] == "answered as today by the bundle's location /"
    assert [each["location"] for each in located if each["lost"]] == ["= /robots.txt"]
    assert survey.site_locations(proxied, "wiki.nurcrm.kg", carried) == []  # another name's server


def test_the_servers_own_directives_are_kept_by_variable_taken_along_or_named():
    """Server-level directives: a larger upload limit than the bundle's is LOST (413) until the inventory's
    nginx_client_max_body_size allows it; a root or index every location inherits goes along with a carried
    location; the rest is named, not carried. A location's own root wins over the server's."""
    site = HANDMADE_SITE.replace(
        "server_name app.nurcrm.kg;  # the CRM",
        "server_name app.nurcrm.kg;\n    client_max_body_size 20M;\n    root /var/www/crm;\n    index index.html;\n"
        "    gzip on;\n    ssl_certificate /etc/ssl/crm.pem;\n    add_header X-Frame-Options DENY;",
    ).replace("root /var/www/nurcrm-frontend;", "")
    settings = survey.site_settings(site, "app.nurcrm.kg", {"client_max_body_size": "1m"})
    assert [(e["setting"], e["lost"], e["carried"]) for e in settings] == [
        ("client_max_body_size 20M", True, {"nginx_client_max_body_size": "20M"}),
        ("gzip on; add_header X-Frame-Options DENY", False, None),
    ]  # fmt: skip
    assert settings[0]["fate"].startswith("LOST (the bundle's is 1m: larger requests get 413)")
    for enough in ("20m", "64M", "1g", "0"):  # as large, larger, or no limit at all
        kept = survey.site_settings(site, "app.nurcrm.kg", {"client_max_body_size": enough})[0]
        assert not kept["lost"] and kept["fate"].startswith("kept"), (enough, kept)
    assert survey.site_settings(site.replace("20M", "0"), "app.nurcrm.kg", {"client_max_body_size": "64m"})[0]["lost"]
    located = {e["location"]: e for e in survey.site_locations(site, "app.nurcrm.kg", {"carried": set(),
                                                                                        "media_root": ""})}  # fmt: skip
    assert located["/"]["carried"]["directives"] == [
        "root /var/www/crm",
        "index index.html",
        "try_files $uri /index.html",
    ]
    assert located["= /robots.txt"]["carried"]["directives"][:2] == ["root /var/www/crm", "index index.html"]
    media = survey.site_locations(site, "app.nurcrm.kg", {"carried": set(), "media_root": "/m"})
    assert [e["media_from"] for e in media if e["location"] == "/media/"] == ["/home/nur/app/media"]  # alias wins
    assert survey.site_settings(HANDMADE_SITE, "app.nurcrm.kg", {"client_max_body_size": "1m"}) == []


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server (scripts/setup.sh)")
def test_redis_clients_are_named_by_their_program_and_the_apps_told_apart(tmp_path):
    """A real Redis with two programs connected: a worker of another program (a Celery stand-in) and an app
    server (a gunicorn stand-in, by its command line); the survey names each by its process, not itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    hold = "# {}\nimport redis, sys, time; r = redis.Redis(port={}); r.ping(); print(1, flush=True); time.sleep(60)"
    clients = []
    try:
        for program in ("celery", "gunicorn"):
            deadline = time.monotonic() + 10
            while True:
                client = subprocess.Popen(
                    [sys.executable, "-c", hold.format(program, port)], stdout=subprocess.PIPE, text=True
                )
                if client.stdout.readline().strip() == "1":
                    break
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
            clients.append(client)
        found = survey.redis_clients(port)
        assert len(found) == 2, found
        celery, gunicorn = ([each for each in found if f"(pid {client.pid}: " in each["program"]] for client in clients)
        assert len(celery) == len(gunicorn) == 1, found
        assert celery[0]["program"].startswith("python") and not celery[0]["app"]
        assert gunicorn[0]["app"]  # an app server by its command line: the bundle's app replaces it
        # The default user as they use it: the takeover keeps it for them until the apps run the bundle's release.
        if Path("/etc/redis/redis.conf").is_file():
            default = survey.redis_findings(port, "asgi")[0]["redis_default"]
            assert default.startswith("user default on nopass ") and "+@all" in default, default
    finally:
        for process in [*clients, server]:
            process.terminate()
            process.wait(10)


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server (scripts/setup.sh)")
def test_a_redis_with_a_requirepass_is_read_and_dumped_with_the_password_its_conf_gives(tmp_path):
    """A hand-made Redis behind a requirepass: the survey signs in with the password its redis.conf gives (in the
    environment, not on a command line), reads its keys and the default user with its password's hash, which the
    takeover keeps until the roll; the backup's dump signs in the same way."""
    secret = "s3cret with space"
    conf = write(tmp_path / "redis.conf", f'port 6379\n# requirepass not-this-one\nrequirepass "{secret}"\n')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path),
         "--requirepass", secret],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        auth = {**os.environ, "REDISCLI_AUTH": secret}
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "SET", "cache:menu", "1"], env=auth,
                             capture_output=True, text=True).stdout.strip() != "OK":  # fmt: skip
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        found = survey.redis_findings(port, "asgi", conf=str(conf))
        assert found[0]["found"] == "Redis configured by hand with a password", found
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert found[0]["redis_default"].startswith(f"user default on #{digest} "), found[0]["redis_default"]
        assert "1 keys (cache… beyond the channel layer's)" in found[1]["found"], found
        assert backup.redis_auth(str(conf))["REDISCLI_AUTH"] == secret
        assert backup.redis_auth(str(tmp_path / "absent.conf")) is None
    finally:
        server.terminate()
        server.wait(10)


def test_a_packages_configuration_as_debian_left_it_is_not_the_operators(tmp_path):
    conf = Path("/etc/redis/redis.conf")
    if not conf.is_file():
        pytest.skip("redis-server is not installed here (scripts/setup.sh installs it)")
    assert survey.pristine(str(conf))  # redis-server's conffile, untouched by scripts/setup.sh
    assert not survey.pristine(str(write(tmp_path / "redis.conf", conf.read_text())))  # no package's
    assert not survey.pristine("/etc/hostname")


def test_the_survey_prints_json_naming_each_finding_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["survey.py", "--groups", "", "--app-home", str(tmp_path)])
    survey.main()
    assert json.loads(capsys.readouterr().out)["findings"] == survey.ssh_findings()


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="owners are put back by root (CI runs as root)")


@root_only
def test_a_backup_puts_back_exactly_what_it_found_and_removes_what_came_after(tmp_path):
    tree = tmp_path / "home" / "nur"
    env = write(tree / "app" / ".env", "SECRET_KEY=the-running-apps\n")
    code = write(tree / "app" / "core" / "settings.py", "DEBUG = False\n")
    os.chmod(env, 0o600)
    os.chown(env, 65534, 65534)
    (tree / "current").symlink_to(tree / "app")
    bundle_made = tmp_path / "opt" / "nurcrm"
    folder = tmp_path / "backup"
    paths = [str(tree), str(tree / "app"), str(tree / "current")]  # nested: a layer's folder, a finding's paths
    assert backup.main(["make", str(folder), "--paths", *paths, "--bundle-paths", str(bundle_made)]) == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["absent"] == [str(bundle_made)] and str(env) in manifest["files"]
    assert manifest["paths"] == [str(tree)]
    assert oct((folder / "manifest.json").stat().st_mode & 0o777) == "0o600"
    assert backup.main(["verify", str(folder)]) == 0

    # What a run does: the .env gone, code replaced, a mode and an owner changed, files added, the bundle's own.
    env.unlink()
    code.write_text("DEBUG = True\n")
    os.chmod(tree / "app", 0o777)
    write(tree / "app" / "core" / "__init__.py")
    write(bundle_made / "releases" / "1" / "manage.py")
    assert backup.main(["verify", str(folder)]) == 1
    assert sorted(line.split(":")[0] for line in backup.differences(manifest)) == [
        "added",
        "changed",
        "changed",
        "missing",
        "still there",
    ]

    assert backup.main(["restore", str(folder)]) == 0
    assert env.read_text() == "SECRET_KEY=the-running-apps\n" and code.read_text() == "DEBUG = False\n"
    assert (env.stat().st_uid, oct(env.stat().st_mode & 0o777)) == (65534, "0o600")
    assert not (tree / "app" / "core" / "__init__.py").exists() and not bundle_made.exists()
    assert os.readlink(tree / "current") == str(tree / "app")
    assert backup.differences(manifest) == []


def test_a_folder_without_a_manifest_is_one_line_naming_it(tmp_path, capsys):
    assert backup.main(["restore", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"restore: {tmp_path} holds no readable manifest.json")
