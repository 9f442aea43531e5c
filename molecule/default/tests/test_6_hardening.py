"""Secure defaults, each held by a test: nginx (TLS, headers, no default site, per-client limits),
Redis (loopback, protected mode, a password the app uses), the hardened `gunicorn` unit, and
secrets that stay in the env file, out of the repo, the logs and ansible-playbook's output."""

import asyncio
import http.client
import json
import re
import shlex
import socket
import ssl
import subprocess
import urllib.error
import uuid
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import ROOT, SCENARIO, SERVICE, close_code, playbook, receive, request, socket_to
from websockets.exceptions import InvalidStatus

from doctor.walk import walk

# The exposure score `systemd-analyze security gunicorn` may report at most (0 best, 10 worst).
SYSTEMD_EXPOSURE_LIMIT = 2.0
APP_USER = "nur"
ENV_FILE_SECRETS = ("SECRET_KEY", "JWT_SIGNING_KEY")
ENV_FILE_URLS = ("DATABASE_URL", "REDIS_URL")
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


# --- nginx -------------------------------------------------------------------------------
def tls_handshake(site, server_name=None, version=None, ciphers=None):
    """The negotiated (protocol, cipher) of a handshake with nginx; ssl.SSLError if refused."""
    context = site.tls_context()
    if version:
        context.minimum_version = context.maximum_version = version
    if ciphers:  # SECLEVEL=0: the client offers what OpenSSL would refuse by itself, so the server decides
        context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    context.check_hostname = False
    with socket.create_connection((site.host, site.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name or site.server_name) as tls:
            return tls.version(), tls.cipher()[0]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    "version, ciphers",
    [(ssl.TLSVersion.TLSv1, "ALL"), (ssl.TLSVersion.TLSv1_1, "ALL"), (ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256")],
    ids=["TLS1.0", "TLS1.1", "TLS1.2-without-forward-secrecy"],
)
def test_nginx_refuses_old_protocols_and_weak_ciphers(site, version, ciphers):
    with pytest.raises(ssl.SSLError):
        tls_handshake(site, version=version, ciphers=ciphers)


@pytest.mark.parametrize(
    "version, expected", [(ssl.TLSVersion.TLSv1_2, "ECDHE-"), (ssl.TLSVersion.TLSv1_3, "TLS_")], ids=["1.2", "1.3"]
)
def test_nginx_speaks_tls_1_2_and_1_3_with_forward_secret_ciphers(site, version, expected):
    protocol, cipher = tls_handshake(site, version=version)
    assert cipher.startswith(expected), f"{protocol} negotiated {cipher}"


# One TLS policy for every server, in nginx.conf's http context: nginx negotiates the protocol with
# the default server's settings, before it knows the name (with SNI) or without one.
@pytest.mark.parametrize("sni", [True, False], ids=["with-SNI", "without-SNI"])
@pytest.mark.parametrize("protocol", ["tls1", "tls1_1", "tls1_2", "tls1_3"])
def test_openssl_gets_tls_1_2_and_1_3_only_and_only_for_the_sites_name(web, site, protocol, sni):
    """openssl s_client, offering everything it has (SECLEVEL=0), is refused TLS 1.0 and 1.1; without
    the site's name every handshake is refused (no default site)."""
    name = f"-servername {site.server_name}" if sni else "-noservername"
    hello = web.run(
        f"openssl s_client -connect {site.ipv4}:{site.port} {name} -{protocol} -cipher DEFAULT@SECLEVEL=0"
        " -brief </dev/null"
    )
    accepted = "Protocol version:" in hello.stderr + hello.stdout
    assert accepted == (sni and protocol in ("tls1_2", "tls1_3")), hello.stderr[-600:]


def test_the_tls_policy_is_set_once_for_every_server(web):
    dump = web.check_output("nginx -T 2>/dev/null")
    http = dump.split("http {", 1)[1]
    assert re.findall(r"^\s*ssl_protocols\s+([^;]+);", dump, re.M) == ["TLSv1.2 TLSv1.3"]
    assert re.findall(r"^\s*ssl_prefer_server_ciphers\s+(\w+);", dump, re.M) == ["off"]
    ciphers = re.findall(r"^\s*ssl_ciphers\s+([^;]+);", dump, re.M)
    assert len(ciphers) == 1 and ciphers[0] in http and "ECDHE" in ciphers[0] and "CBC" not in ciphers[0]


def test_nginx_has_no_default_site(site):
    """Another name gets no TLS handshake and no HTTP answer: only the configured site is served."""
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name"):
        tls_handshake(site, server_name="not-our-site.example")
    with socket.create_connection((site.host, 80), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: not-our-site.example\r\nConnection: close\r\n\r\n")
        assert raw.recv(1024) == b"", "nginx answered a request for a name it does not serve"


def test_nginx_hides_its_version(site):
    assert https_headers(site, "/api/health/")[1]["Server"] == "nginx"


def test_every_server_hides_nginxs_version_set_once_in_the_http_context(web):
    """The monitoring role's status server too (where there is one): server_tokens off once, in the http context."""
    dump = web.check_output("nginx -T 2>/dev/null")
    assert [line.strip() for line in dump.splitlines() if "server_tokens" in line and "#" not in line] == [
        "server_tokens off;"
    ]
    if "conf.d/nurcrm-status.conf" in dump:
        port = yaml.safe_load((ROOT / "roles/monitoring/defaults/main.yml").read_text())["monitoring_ports"]
        status = http.client.HTTPConnection("127.0.0.1", port["nginx_status"], timeout=5)  # the host's network
        status.request("GET", "/nothing-here")
        answer = status.getresponse()
        assert (answer.status, answer.getheader("Server")) == (404, "nginx")
        assert b"nginx/" not in answer.read()
        status.close()


def test_gixy_finds_nothing_of_medium_or_high_severity_in_the_deployed_configuration(web, tmp_path):
    """gixy-ng, the nginx configuration analyser, on what nginx -T shows on the host."""
    dump = tmp_path / "nginx-T.conf"
    dump.write_text(web.check_output("nginx -T 2>/dev/null"))
    done = subprocess.run(
        [str(ROOT / ".venv/bin/gixy"), "-ll", "-f", "json", str(dump)], capture_output=True, text=True, timeout=120
    )
    found = [(i["severity"], i["plugin"], i["summary"], i["config"]) for i in json.loads(done.stdout or "[]")]
    assert not found, found


def https_headers(site, path, extra=()):
    """Status and headers of a GET over TLS; works for a /ws/ upgrade too (read up to the blank line)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {site.server_name}", *extra, "", ""]
    with site.connect() as tls:
        tls.sendall("\r\n".join(lines).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = tls.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line, *fields = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers.setdefault(name.strip().title(), []).append(value.strip())
    return int(status_line.split()[1]), {name: ", ".join(values) for name, values in headers.items()} | {
        "_counts": {name: len(values) for name, values in headers.items()}
    }


def upgrade_headers(site):
    return (
        f"Origin: {site.origin}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )


@pytest.mark.parametrize("where", ["api", "websocket-upgrade", "static-miss"])
def test_security_headers_reach_every_response_once(site, token, where):
    """Set once at server level: the 101 of /ws/ carries them too, and none comes twice."""
    if where == "api":
        status, headers = https_headers(site, "/api/health/")
    elif where == "websocket-upgrade":
        status, headers = https_headers(site, f"/ws/cafe/tables/?token={token}", upgrade_headers(site))
        assert status == 101
    else:
        status, headers = https_headers(site, "/static/no-such-file.css")
        assert status == 404
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, f"{name} on {where}: {headers.get(name)!r}"
        assert headers["_counts"][name.title()] == 1, f"{name} comes {headers['_counts'][name.title()]} times"


def test_a_frame_over_the_apps_limit_is_closed_with_1009_before_it_is_buffered(site, token, app, app_env_file):
    """uvicorn's ws_max_size is the app's WS_MAX_MESSAGE_BYTES: a frame whose header says one byte over is closed
    with 1009 on the header alone. Only the header and a few bytes are sent: a client still writing the payload
    when the server hangs up gets a TCP reset that can overtake the close frame (CI saw it as no close code)."""
    limit = int(re.search(r"^WS_MAX_MESSAGE_BYTES='(\d+)'$", app.file(app_env_file).content_string, re.M).group(1))
    # A masked final text frame (RFC 6455 5.2): 127 and a 64-bit length, the mask key, the payload's start.
    header = bytes([0x81, 0x80 | 127]) + (limit + 1).to_bytes(8, "big") + bytes(4) + b"x" * 16

    async def scenario():
        async with socket_to(site, f"token={token}", max_size=None) as ws:
            assert (await receive(ws))["type"] == "connection_established"
            await ws.send('{"action": "ping", "pad": "' + "x" * (limit - 40) + '"}')
            assert (await receive(ws))["type"] in ("pong", "error")  # under the limit: answered
            ws.transport.write(header)
            return await close_code(ws)

    assert asyncio.run(scenario()) == 1009


def test_an_api_body_of_half_a_megabyte_passes_and_one_over_the_limit_gets_413(site, token):
    """The body limit lets ordinary API requests through: Django judges this one (its JSON 400), not nginx."""
    with pytest.raises(urllib.error.HTTPError) as small:
        request(site, "POST", "/api/cafe/orders/", token, {"items": "x" * 512 * 1024})
    assert small.value.code == 400 and isinstance(json.loads(small.value.read()), dict)
    with pytest.raises(urllib.error.HTTPError) as big:
        request(site, "POST", "/api/cafe/orders/", token, {"items": "x" * 2 * 1024 * 1024})
    assert big.value.code == 413


def sign_in(site, source, username, password="not-the-password"):
    """POST /api/auth/token/ from the loopback address `source`: (status, headers)."""
    body = json.dumps({"username": username, "password": password})
    head = (
        f"POST /api/auth/token/ HTTP/1.1\r\nHost: {site.server_name}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with site.connect(timeout=10, source=(source, 0)) as tls:
        tls.sendall((head + body).encode())
        answer = http.client.HTTPResponse(tls)
        answer.begin()
        answer.read()
    return answer.status, dict(answer.getheaders())


def test_sign_ins_from_one_address_are_limited_with_retry_after_and_another_address_is_served(site):
    """Thirty wrong passwords from one address, each for another user name (the app limits each name on
    its own): nginx lets the burst through (401) and answers the rest 429 with Retry-After."""
    answers = [sign_in(site, "127.0.0.5", f"guess{n}") for n in range(30)]
    statuses = [status for status, _ in answers]
    assert set(statuses) == {401, 429} and statuses.index(429) >= 5, statuses
    refused = next(headers for status, headers in answers if status == 429)
    assert int(refused["Retry-After"]) > 0 and refused["Strict-Transport-Security"], refused
    assert sign_in(site, "127.0.0.6", "guess0")[0] == 401


async def open_sockets(site, token, source, count):
    """Open `count` sockets from the loopback address `source` at once; (open sockets, statuses refused)."""

    async def one():
        try:
            ws = await socket_to(site, f"token={token}", host=site.ipv4, local_addr=(source, 0))
        except InvalidStatus as refused:
            return refused.response.status_code
        assert (await receive(ws, timeout=15))["type"] == "connection_established"
        return ws

    results = await asyncio.gather(*(one() for _ in range(count)))
    return [r for r in results if not isinstance(r, int)], [r for r in results if isinstance(r, int)]


def test_a_flood_from_one_client_is_limited_and_another_client_is_served(site, token, web):
    """nginx_ws_handshake_burst (50) handshakes at once pass, the rest of 150 get 429; the same
    client then tops up to nginx_ws_sockets_per_client (100) sockets and no further; meanwhile
    a client at another address connects and gets pong, and the admitted sockets keep working."""

    async def scenario():
        flooded, refused = await open_sockets(site, token, "127.0.0.3", 150)
        try:
            assert set(refused) == {429} and 50 <= len(flooded) <= 60, (len(flooded), refused[:5])
            await asyncio.sleep(6)  # the burst allowance refills at 10 a second
            topped_up, refused = await open_sockets(site, token, "127.0.0.3", 50)
            flooded += topped_up
            assert len(flooded) == 100 and set(refused) == {429}, (len(flooded), refused[:5])

            async with socket_to(site, f"token={token}", host=site.ipv4, local_addr=("127.0.0.4", 0)) as other:
                assert (await receive(other))["type"] == "connection_established"
                await other.send('{"action": "ping"}')
                assert (await receive(other))["type"] == "pong"
            await flooded[0].send('{"action": "ping"}')
            assert (await receive(flooded[0]))["type"] == "pong"
        finally:
            await asyncio.gather(*(ws.close() for ws in flooded))

    asyncio.run(scenario())
    refusals = web.check_output(
        "grep -c '^127.0.0.3 .*\"GET /ws/cafe/tables/?\\[query\\] HTTP/1.1\" 429 ' /var/log/nginx/access.log"
    )
    assert int(refusals) >= 90, (
        "the access log shows each refusal, by path (error.log, which would quote the token, does not)"
    )


@pytest.mark.parametrize(
    "path", ["/ws/cafe/tables/", "/ws", "//ws/", "/ws//cafe/tables/", "/%77s/cafe/tables/", "/api/"]
)
def test_no_spelling_of_a_path_brings_its_query_string_to_the_access_log(web, site, path):
    """Any path, a token in its query string: the access log shows the path and `?[query]`, never the token."""
    marker = f"eyJmarker{uuid.uuid4().hex}"
    try:
        https_headers(site, f"{path}?token={marker}&access={marker}", upgrade_headers(site))
    except OSError:
        pass
    log = web.check_output("cat /var/log/nginx/access.log")
    assert marker not in log
    assert re.search(r'"GET \S*\?\[query\] HTTP/1.1"', log.splitlines()[-1]), log.splitlines()[-1]


# --- Redis -------------------------------------------------------------------------------
def test_redis_listens_on_loopback_only(redis_host):
    listening = redis_host.check_output("ss -Hltnp | grep '\"redis-server\"' | awk '{print $4}'").split()
    assert listening and all(re.match(r"^(127\.\d+\.\d+\.\d+|\[::1\]):", a) for a in listening), listening


def test_redis_runs_in_protected_mode_and_refuses_clients_without_the_password(redis_host, app_facts):
    port = str(app_facts.gunicorn["env"]["REDIS"]["port"])
    assert "NOAUTH" in redis_host.check_output(f"redis-cli -p {port} PING")
    wrong = redis_host.run(f"redis-cli --no-auth-warning -p {port} -a not-the-password PING")
    assert "WRONGPASS" in wrong.stdout + wrong.stderr
    assert "protected-mode yes" in redis_host.check_output("grep -x 'protected-mode yes' /etc/redis/redis.conf")


def test_redis_has_no_default_user(redis_host):
    """Without a user of its own a client gets nothing: the default user is off, whatever its password."""
    assert "NOAUTH" in redis_host.check_output("redis-cli -h 127.0.0.1 PING")
    refused = redis_host.run("redis-cli -h 127.0.0.1 --no-auth-warning --user default -a anything PING")
    assert "WRONGPASS" in refused.stdout + refused.stderr


@pytest.mark.parametrize(
    "command", [["FLUSHALL"], ["CONFIG", "GET", "*"], ["SHUTDOWN"], ["KEYS", "*"], ["SET", "other:key", "1"]]
)
def test_the_apps_redis_user_may_not_run_what_the_layer_does_not_need(app_redis, command):
    """Only the channel layer's commands, only on its keys and channels (asgi*)."""
    done = app_redis(*command)
    assert "NOPERM" in done["out"] + done["err"], done


def test_the_apps_redis_user_works_on_the_layers_keys(app_redis_cli):
    assert app_redis_cli("SET", "asgi:nurcrm:test", "1", "EX", "5").strip() == "OK"


def test_redis_refuses_writes_when_full_rather_than_drop_the_layers_data(redis_host):
    conf = redis_host.file("/etc/redis/redis.conf").content_string
    assert re.search(r"^maxmemory \d+[kmg]b$", conf, re.M) and "\nmaxmemory-policy noeviction\n" in conf


def test_the_app_reaches_redis_with_its_password(app_facts):
    """Every worker's channel layer is on the password-protected Redis (the end-to-end tests deliver through it)."""
    redis = app_facts.redis
    assert redis["target"]["password"] and redis["ping"] == "PONG", redis | {"target": "..."}


# --- systemd -----------------------------------------------------------------------------
def test_the_gunicorn_unit_is_hardened_below_the_stated_exposure(host):
    report = host.check_output(f"systemd-analyze security {SERVICE} --no-pager")
    print(report)
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", report).group(1))
    assert score <= SYSTEMD_EXPOSURE_LIMIT, f"exposure {score} > {SYSTEMD_EXPOSURE_LIMIT}"


# --- Privilege: nothing the app user can write is run by root -----------------------------
def parents(path):
    """Every folder above a path, up to /."""
    found, path = [], path.rstrip("/")
    while path:
        path = path.rsplit("/", 1)[0]
        found.append(path or "/")
    return found


def test_the_app_user_can_replace_nothing_that_root_runs(app):
    """What root runs in a deploy or a doctor walk (every release's code and archive, the virtualenvs, the
    `current` link, nurcrm-manage): as the app user, no file or folder of it, and no folder above it, can be
    written, so none can be renamed or replaced."""
    runs = app.check_output(f"systemctl show -p WorkingDirectory -p ExecStart --value {SERVICE}")
    code, venv = "/opt/nurcrm/current/app", "/opt/nurcrm/current/venv"
    assert f"{venv}/bin/gunicorn" in runs and code in app.file("/etc/nurcrm/gunicorn.conf.py").content_string, runs
    roots = ["/opt/nurcrm/releases", "/opt/nurcrm/venvs", "/opt/nurcrm/current", "/usr/local/bin/nurcrm-manage"]
    writable = app.check_output(f"runuser -u {APP_USER} -- find -H {' '.join(roots)} -writable")
    assert writable == "", f"the app user can write {writable.split()[:10]}"
    above = sorted({folder for root in roots for folder in parents(root)})
    open_above = [folder for folder in above if app.run(f"runuser -u {APP_USER} -- test -w {folder}").rc == 0]
    assert not open_above, f"the app user can rename entries of {open_above}"
    assert app.check_output(f"ls -A /home/{APP_USER}").split() == ["asgi.sock"], "the home holds only the socket"


def test_the_app_user_has_no_login_shell(app):
    assert app.user(APP_USER).shell == "/usr/sbin/nologin"


def test_nurcrm_manage_becomes_the_app_user_before_it_reads_the_settings(app, app_env_file):
    """With the env file made root's alone, root's nurcrm-manage cannot read it: it reads as the app user."""
    uid = app.check_output("nurcrm-manage shell --no-imports -c 'import os; print(os.getuid())'")
    assert uid == str(app.user(APP_USER).uid)
    app.check_output(f"chmod 0600 {app_env_file}")
    try:
        refused = app.run("nurcrm-manage check")
    finally:
        app.check_output(f"chmod 0640 {app_env_file}")
    assert refused.rc != 0 and "Permission denied" in refused.stderr, refused.stderr


def test_the_gunicorn_unit_has_memory_and_task_ceilings(host):
    """A runaway is stopped by the kernel: MemoryMax= and TasksMax=, with room over what it uses now."""
    shown = dict(
        line.split("=", 1)
        for line in host.check_output(
            f"systemctl show {SERVICE} -p MemoryMax -p TasksMax -p MemoryCurrent -p TasksCurrent"
        ).splitlines()
    )
    assert shown["MemoryMax"] == str(1024**3) and shown["TasksMax"] == "512", shown
    assert int(shown["MemoryCurrent"]) < int(shown["MemoryMax"]) / 2
    assert int(shown["TasksCurrent"]) < int(shown["TasksMax"]) / 4, shown


def test_expired_refresh_tokens_are_dropped_every_day(app):
    """Each sign-in adds rows to the token blacklist's tables; a daily timer runs flushexpiredtokens."""
    assert app.service("nurcrm-flushexpiredtokens.timer").is_enabled
    app.check_output("systemctl start nurcrm-flushexpiredtokens.service")
    assert app.check_output("systemctl show -p Result --value nurcrm-flushexpiredtokens.service") == "success"


# --- Supply chain ----------------------------------------------------------------------------
def package(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_virtualenv_holds_the_lock_and_nothing_else(app):
    """The deploy installed app/requirements.txt (every entry pinned and hashed) with --require-hashes, and
    nothing the lock does not list (uvicorn[standard]'s reloader, .env and YAML support)."""
    lock = app.file("/opt/nurcrm/current/app/requirements.txt").content_string
    locked = {package(name): version for name, version in re.findall(r"(?m)^([A-Za-z0-9][\w.-]*)==([^\s;]+)", lock)}
    listed = app.check_output("/opt/nurcrm/current/venv/bin/pip list --format=json --exclude pip --exclude setuptools")
    assert {package(p["name"]): p["version"] for p in json.loads(listed)} == locked
    assert not {"watchfiles", "python-dotenv", "pyyaml"} & set(locked)


# --- PostgreSQL --------------------------------------------------------------------------
def test_postgresql_stores_scram_sha_256_only(app):
    conf = app.check_output("cat /etc/postgresql/*/main/postgresql.conf")
    assert re.search(r"^password_encryption = scram-sha-256$", conf, re.M)
    stored = app.check_output(
        "runuser -u postgres -- psql -tAc \"SELECT rolpassword FROM pg_authid WHERE rolname = 'nur'\""
    )
    assert stored.startswith("SCRAM-SHA-256$")


def test_app_hosts_on_other_machines_connect_over_tls_only(inventory):
    """The role's line for an app network, in --check --diff: hostssl, never plain host."""
    returncode, output = playbook(
        "-i",
        inventory,
        "--check",
        "--diff",
        "-e",
        '{"postgresql_app_networks": ["10.9.0.0/24"]}',
        playbook="playbooks/postgresql.yml",
    )
    assert returncode == 0, output[-2000:]
    assert "+hostssl nurcrm nur 10.9.0.0/24 scram-sha-256" in output, output[-3000:]


# --- Secrets -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secrets(app, app_env_file):
    """The deployment's secret values, read from the env file on the app host."""
    values = dict(re.findall(r"^(\w+)='(.*)'$", app.file(app_env_file).content_string, re.M))
    found = [values[name] for name in ENV_FILE_SECRETS]
    found += [urlsplit(values[name]).password for name in ENV_FILE_URLS]
    assert all(found) and all(len(s) >= 16 for s in found)
    return found


def test_the_env_file_is_roots_and_readable_by_the_app_user_alone(app, app_env_file):
    env_file = app.file(app_env_file)
    assert (env_file.user, env_file.group, env_file.mode) == ("root", APP_USER, 0o640)


def test_no_secret_is_in_the_repository(secrets):
    for secret in secrets:
        found = subprocess.run(["git", "grep", "-l", "-F", secret], cwd=ROOT, capture_output=True, text=True)
        assert found.returncode == 1, f"a deployed secret is committed in {found.stdout.split()}"


def test_no_secret_or_token_is_in_a_log(app, web, secrets, token, used_tokens):
    """After every test above, the flood of 429s included: no secret and no token the tests used."""
    logs = "journalctl --no-pager -q; cat /var/log/nginx/*.log /var/log/redis/*.log /var/log/postgresql/*.log"
    for layer in {app, web}:
        text = layer.check_output(f"bash -c {shlex.quote(logs + ' 2>/dev/null || true')}")
        assert not [s for s in secrets if s in text], "a secret is in a log"
        assert used_tokens and not [t for t in used_tokens if t in text], "a token is in a log"


# Clients that take credentials: each run of one is recorded with its arguments, however short-lived.
RECORDED_CLIENTS = ("redis-cli", "psql", "pg_isready", "createuser", "curl", "wget")
RECORDS = "/run/nurcrm-argv"
# Everything else: sampled from /proc every 2 ms while the redeploy and the doctor walk run.
SAMPLER = f"""
import glob, os, time
seen = set()
while True:
    before = len(seen)
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            seen.add(open(path, "rb").read().replace(b"\\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    if len(seen) > before:
        with open("{RECORDS}/sampled.new", "w") as out:
            out.write("\\n".join(seen))
        os.replace("{RECORDS}/sampled.new", "{RECORDS}/sampled")
    time.sleep(0.002)
"""


def record_commands(host):
    """Put a recording wrapper in front of each credential client (first on PATH) and start the sampler."""
    host.check_output(f"mkdir -p -m 1777 {RECORDS} && : > {RECORDS}/clients && chmod 0666 {RECORDS}/clients")
    for client in RECORDED_CLIENTS:
        real = host.run(f"command -v {client}").stdout.strip()
        if real:
            wrapper = f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> {RECORDS}/clients\nexec {real} "$@"\n'
            host.check_output(f"printf %s {shlex.quote(wrapper)} > /usr/local/sbin/{client}")
            host.check_output(f"chmod 0755 /usr/local/sbin/{client}")
    sampler = shlex.quote(SAMPLER)
    host.check_output(f"nohup python3 -c {sampler} >/dev/null 2>&1 & echo $! > {RECORDS}/sampler.pid")


def recorded_commands(host):
    """Stop recording; every command line seen."""
    host.run(f"kill $(cat {RECORDS}/sampler.pid)")
    for client in RECORDED_CLIENTS:
        host.run(f"rm -f /usr/local/sbin/{client}")
    text = host.check_output(f"cat {RECORDS}/clients {RECORDS}/sampled")
    host.run(f"rm -rf {RECORDS}")
    return text.splitlines()


# The redeploy below takes minutes: it runs where the deploy goes over SSH and sudo, as in production.
over_ssh_only = pytest.mark.skipif(SCENARIO != "production", reason="the redeploy is the production scenario's")


@pytest.fixture(scope="module")
def redeployed(app, redis_host, app_env_file, inventory, pytestconfig, secrets):
    """Remove the files that hold secrets and redeploy them with --diff -vvv, then walk the doctor, recording
    every command line on the host meanwhile: (ansible-playbook's return code, its output, the command lines)."""
    hosts = {host.backend.host: host for host in (app, redis_host)}.values()
    for host in hosts:
        record_commands(host)
    try:
        app.run(f"rm -f {app_env_file}")
        redis_host.run("rm -f /etc/redis/redis.conf /etc/redis/users.acl")
        returncode, output = playbook("-i", inventory, "--tags", "redis,postgresql,app,asgi", "--diff", "-vvv")
        walk(pytestconfig.option.ansible_inventory)
    finally:
        commands = [line for host in hosts for line in recorded_commands(host)]
    return returncode, output, commands


@over_ssh_only
def test_no_secret_is_in_the_playbooks_output_even_with_diff(redeployed, secrets):
    """Remove the files that hold secrets, redeploy them with --diff -vvv: nothing secret is printed."""
    returncode, output, _ = redeployed
    assert returncode == 0, output[-2000:]
    assert "changed=0" not in output.split("PLAY RECAP")[-1], "the files were not rewritten"
    assert not [s for s in secrets if s in output], "a secret is in ansible-playbook's output"


@over_ssh_only
def test_no_secret_is_on_a_command_line_during_a_redeploy_and_a_doctor_walk(redeployed, secrets):
    """Every process list shows arguments: the Redis and database clients that the roles and the doctor run
    (recorded, however short-lived) and every other process (sampled) get their secrets otherwise."""
    _, _, commands = redeployed
    assert any(line.startswith("/usr/local/sbin/redis-cli ") for line in commands), "no client was recorded"
    leaked = [line[:200] for line in commands if any(secret in line for secret in secrets)]
    assert not leaked, f"a secret is on a command line: {[line.split()[0] for line in leaked]}"
