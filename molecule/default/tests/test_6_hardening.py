"""Secure defaults, each held by a test: nginx (TLS, headers, no default site, per-client limits),
Redis (loopback, protected mode, a password the app uses), the hardened `gunicorn` unit, and
secrets that stay in the env file, out of the repo, the logs and ansible-playbook's output."""

import asyncio
import json
import re
import shlex
import socket
import ssl
import subprocess
import urllib.error
from urllib.parse import urlsplit

import pytest
from conftest import ROOT, SERVICE, playbook, receive, request, socket_to
from websockets.exceptions import InvalidStatus

# The exposure score `systemd-analyze security gunicorn` may report at most (0 best, 10 worst).
SYSTEMD_EXPOSURE_LIMIT = 2.0
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
    with socket.create_connection((site.server_name, site.port), timeout=5) as raw:
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


def test_nginx_has_no_default_site(site):
    """Another name gets no TLS handshake and no HTTP answer: only the configured site is served."""
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name"):
        tls_handshake(site, server_name="not-our-site.example")
    with socket.create_connection((site.server_name, 80), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: not-our-site.example\r\nConnection: close\r\n\r\n")
        assert raw.recv(1024) == b"", "nginx answered a request for a name it does not serve"


def test_nginx_hides_its_version(site):
    assert https_headers(site, "/api/health/")[1]["Server"] == "nginx"


def https_headers(site, path, extra=()):
    """Status and headers of a GET over TLS; works for a /ws/ upgrade too (read up to the blank line)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {site.server_name}", *extra, "", ""]
    with socket.create_connection((site.server_name, site.port), timeout=5) as raw:
        with site.tls_context().wrap_socket(raw, server_hostname=site.server_name) as tls:
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


def test_an_api_body_of_half_a_megabyte_passes_and_one_over_the_limit_gets_413(site, token):
    """The body limit lets ordinary API requests through: Django judges this one (its JSON 400), not nginx."""
    with pytest.raises(urllib.error.HTTPError) as small:
        request(site, "POST", "/api/cafe/orders/", token, {"items": "x" * 512 * 1024})
    assert small.value.code == 400 and isinstance(json.loads(small.value.read()), dict)
    with pytest.raises(urllib.error.HTTPError) as big:
        request(site, "POST", "/api/cafe/orders/", token, {"items": "x" * 2 * 1024 * 1024})
    assert big.value.code == 413


async def open_sockets(site, token, source, count):
    """Open `count` sockets from the loopback address `source` at once; (open sockets, statuses refused)."""

    async def one():
        try:
            ws = await socket_to(site, f"token={token}", host="127.0.0.1", local_addr=(source, 0))
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

            async with socket_to(site, f"token={token}", host="127.0.0.1", local_addr=("127.0.0.4", 0)) as other:
                assert (await receive(other))["type"] == "connection_established"
                await other.send('{"action": "ping"}')
                assert (await receive(other))["type"] == "pong"
            await flooded[0].send('{"action": "ping"}')
            assert (await receive(flooded[0]))["type"] == "pong"
        finally:
            await asyncio.gather(*(ws.close() for ws in flooded))

    asyncio.run(scenario())
    refusals = web.check_output(
        "grep -c '^127.0.0.3 .*\"GET /ws/cafe/tables/ HTTP/1.1\" 429 ' /var/log/nginx/access.log"
    )
    assert int(refusals) >= 90, (
        "the access log shows each refusal, by path (error.log, which would quote the token, does not)"
    )


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


# --- Secrets -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secrets(app, app_env_file):
    """The deployment's secret values, read from the env file on the app host."""
    values = dict(re.findall(r"^(\w+)='(.*)'$", app.file(app_env_file).content_string, re.M))
    found = [values[name] for name in ENV_FILE_SECRETS]
    found += [urlsplit(values[name]).password for name in ENV_FILE_URLS]
    assert all(found) and all(len(s) >= 16 for s in found)
    return found


def test_the_env_file_is_the_app_users_alone(app, app_env_file):
    env_file = app.file(app_env_file)
    assert (env_file.user, env_file.group, env_file.mode) == ("nur", "nur", 0o600)


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


def test_no_secret_is_in_the_playbooks_output_even_with_diff(app, redis_host, app_env_file, inventory, secrets):
    """Remove the files that hold secrets, redeploy them with --diff -vvv: nothing secret is printed."""
    app.run(f"rm -f {app_env_file}")
    redis_host.run("rm -f /etc/redis/redis.conf")
    returncode, output = playbook("-i", inventory, "--tags", "redis,postgresql,app,asgi", "--diff", "-vvv")
    assert returncode == 0, output[-2000:]
    assert "changed=0" not in output.split("PLAY RECAP")[-1], "the files were not rewritten"
    assert not [s for s in secrets if s in output], "a secret is in ansible-playbook's output"
