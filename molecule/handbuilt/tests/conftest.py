"""Fixtures of the hand-built scenario: a client of the site (app.nurcrm.test pinned to 127.0.0.1, trusting
the certificate prepare.yml handed over), the manager's token, and the hand-built layout's paths.

The host is reached through testinfra (testinfra_hosts in each module); this conftest is the scenario's own,
its tests run alone.
"""

import asyncio
import http.client
import os
import shlex
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from doctor.site import Site, request

# The hand-built layout, as prepare.yml made it.
APP_DIR = "/home/nur/app"
PYTHON = "/home/nur/venv/bin/python"
SOCKET = "/home/nur/asgi.sock"
SECRETS = "/root/crm-secrets.env"
# The note's company, created by seed_crm.
COMPANY = "f966441f-0938-49ed-97a7-07a503655ebc"
MANAGER = "manager"


# Everything a run could touch (the doctor's walk and a takeover's undo must leave it as it was): configuration,
# the app, its environment, the units.
WATCHED = "/etc/nginx /etc/redis /etc/postgresql /etc/systemd/system /home/nur"
CHECKSUMS = f"find {WATCHED} -xdev -type f -not -path '*/media/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum"


# Until gunicorn's socket answers again, at most 30 s.
SERVED = """
import socket, time
for _ in range(100):
    try:
        socket.socket(socket.AF_UNIX).connect("/home/nur/asgi.sock")
        break
    except OSError:
        time.sleep(0.3)
else:
    raise SystemExit("gunicorn's socket did not answer in 30 s")
"""


def wait_served(host):
    """Until gunicorn's socket answers again, and its three workers have booted."""
    host.check_output(f"python3 -c {shlex.quote(SERVED)} && sleep 2")


def shell(host, code):
    """`manage.py shell -c CODE` on the host, as nur in the project, as its operators run it; its output."""
    return host.check_output(f"cd {APP_DIR} && sudo -u nur {PYTHON} manage.py shell -v 0 -c {shlex.quote(code)}")


@pytest.fixture(scope="module")
def server_name(host):
    return host.ansible.get_variables()["nginx_server_name"]


@pytest.fixture(scope="module")
def site(server_name):
    """The site as a browser on this machine reaches it: the name pinned to 127.0.0.1, its certificate trusted."""
    cafile = Path(os.environ["HOME"], ".cache/nurcrm/handbuilt", f"{server_name}.crt")
    return Site(server_name, 443, f"https://{server_name}", cafile=str(cafile), address="127.0.0.1")


def get(site, path):
    """A plain GET over HTTPS: (status, content type, body)."""
    connection = http.client.HTTPSConnection(site.server_name, site.port, timeout=10)
    connection.sock = site.connect()
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def token(host, site):
    """The manager's access token from POST /api/auth/token/, with the password root keeps on the host."""
    secrets = dict(line.split("=", 1) for line in host.file(SECRETS).content_string.splitlines() if "=" in line)
    body = {"username": MANAGER, "password": secrets["MANAGER_PASSWORD"]}
    status, answer = request(site, "POST", "/api/auth/token/", body=body)
    assert status == 200, "the token endpoint refused the manager"
    return answer["access"]


async def close_code(ws, timeout=5):
    """The code the server closes the socket with."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), timeout)
    return closed.value.rcvd.code
