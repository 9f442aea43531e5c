"""Fixtures of the checklist tests: the hosts of each layer, the public site, a WebSocket client.

The tests run against whatever inventory pytest is given (molecule passes the local one):
hosts come from the inventory groups web / app / redis / db, and every expected value is
read from the deployed hosts themselves (nginx -T, gunicorn's config, the app's env file),
so the same checks can judge another deployment.
"""

import asyncio
import json
import re
import shlex
import ssl
import tempfile
import urllib.request
from dataclasses import dataclass, field

import pytest
import testinfra
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

# The demo tenant that seed_demo creates (app/apps/cafe/management/commands/seed_demo.py).
DEMO_COMPANY = "5eed0000-0000-4000-8000-000000000001"
DEMO_BRANCHES = {"Main hall": "5eed0000-0000-4000-8000-0000000000b1", "Terrace": "5eed0000-0000-4000-8000-0000000000b2"}
DEMO_USER = "demo"
# The production note's fixed values.
SOCKET = "/home/nur/asgi.sock"
WORKERS = 3
SERVICE = "gunicorn"


def hosts_of(config, group):
    return testinfra.get_hosts(
        [f"ansible://{group}"],
        connection="ansible",
        ansible_inventory=config.option.ansible_inventory,
        sudo=config.option.sudo,
    )


@pytest.fixture(scope="session")
def web(pytestconfig):
    return hosts_of(pytestconfig, "web")[0]


@pytest.fixture(scope="session")
def app(pytestconfig):
    return hosts_of(pytestconfig, "app")[0]


def blocks(text, header):
    """The bodies of every `header { ... }` block in nginx -T output (nested braces included)."""
    found = []
    for match in re.finditer(header + r"\s*\{", text):
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                found.append(text[start:index])
                break
    return found


def block(text, header):
    """The body of the one `header { ... }` block; fails naming the header if there is none."""
    found = blocks(text, header)
    assert found, f"no `{header} {{` block in the nginx configuration"
    return found[0]


@pytest.fixture(scope="session")
def nginx_conf(web):
    """Every file nginx loads (nginx -T), without comments."""
    return re.sub(r"#[^\n]*", "", web.check_output("nginx -T 2>/dev/null"))


@pytest.fixture(scope="session")
def app_env_file(app):
    return re.search(r"^EnvironmentFile=(\S+)", app.check_output(f"systemctl cat {SERVICE}"), re.M).group(1)


@pytest.fixture(scope="session")
def app_env(app, app_env_file):
    """The app's settings as the env file gives them to systemd (KEY='value' lines)."""
    return dict(re.findall(r"^(\w+)='(.*)'$", app.file(app_env_file).content_string, re.M))


def manage(app, *args):
    """manage.py on the app host, as the app user with the deployed settings."""
    return app.check_output("nurcrm-manage " + " ".join(shlex.quote(a) for a in args))


@dataclass
class Site:
    """The public side of the deployment, as a client sees it."""

    server_name: str
    port: int
    cafile: str | None
    tokens: list = field(default_factory=list)

    @property
    def origin(self):
        return f"https://{self.server_name}"

    def url(self, path):
        netloc = self.server_name if self.port == 443 else f"{self.server_name}:{self.port}"
        return f"https://{netloc}{path}"

    def ws_url(self, query=""):
        return self.url("/ws/cafe/tables/").replace("https://", "wss://", 1) + (f"?{query}" if query else "")

    def tls(self):
        return ssl.create_default_context(cafile=self.cafile)

    def request(self, method, path, token=None, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url(path), data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, context=self.tls(), timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")

    def socket(self, query="", **kwargs):
        return connect(self.ws_url(query), origin=self.origin, ssl=self.tls(), open_timeout=10, **kwargs)


@pytest.fixture(scope="session")
def site(web, nginx_conf):
    tls_servers = [body for body in blocks(nginx_conf, r"\bserver") if re.search(r"listen[^;]*\bssl\b", body)]
    assert tls_servers, "nginx has no server listening with ssl"
    server = tls_servers[0]
    server_name = re.search(r"server_name\s+([^\s;]+)", server).group(1)
    port = int(re.search(r"listen\s+\S*?(\d+)\s+ssl", server).group(1))
    cert = re.search(r"ssl_certificate\s+([^;]+);", server).group(1)
    x509 = web.run(f"openssl x509 -in {cert} -noout -subject -issuer -nameopt RFC2253")
    subject, issuer = (line.split("=", 1)[1] for line in x509.stdout.splitlines())
    cafile = None
    if subject == issuer:  # self-signed: trust exactly this certificate
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as pem:
            pem.write(web.file(cert).content_string)
        cafile = pem.name
    return Site(server_name, port, cafile)


@pytest.fixture(scope="session")
def token(app, site):
    """A fresh access token of the demo user, minted on the app host."""
    value = manage(app, "issue_token", "--user", DEMO_USER)
    site.tokens.append(value)
    return value


async def receive(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def close_code(ws, timeout=5):
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), timeout)
    return closed.value.rcvd.code
