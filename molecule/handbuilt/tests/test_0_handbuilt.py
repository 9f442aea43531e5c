"""The hand-built server is healthy, by the production note's acceptance list: nginx's site and TLS, gunicorn
with 3 uvicorn workers on /home/nur/asgi.sock, Redis without a password holding the groups, the database,
and a real WebSocket client through nginx over wss:// (connection_established, ping/pong, table and order
events, the note's shell sender, a bad token closed with 4001)."""

import asyncio
import http.client
from urllib.error import HTTPError

import pytest
from conftest import APP_DIR, COMPANY, MANAGER, SOCKET, close_code, get, shell

from doctor.site import next_of_type, receive, request, socket_to

testinfra_hosts = ["ansible://app"]

# The note's sender, verbatim but for the print.
NOTE_SENDER = f"""
from apps.cafe.models import Table
from apps.users.models import Company
import uuid

company = Company.objects.get(id=uuid.UUID('{COMPANY}'))
table = Table.objects.filter(company=company).first()
from apps.cafe.views import send_table_status_changed_notification
send_table_status_changed_notification(table)
print('Notification sent', table.id)
"""
# A token for the manager, minted on the host (the doctor's token command).
TOKEN_CODE = (
    f"from apps.users.models import User; from apps.users.tokens import issue_token; "
    f"print(issue_token(User.objects.get(username='{MANAGER}')))"
)
EXPIRED_CODE = (
    "import jwt; from django.conf import settings; from apps.users.models import User; "
    f"print(jwt.encode({{'user_id': User.objects.get(username='{MANAGER}').pk, 'exp': 1}}, settings.SECRET_KEY))"
)


def test_nginx_accepts_its_configuration(host):
    assert host.run("nginx -t").rc == 0


def test_nginx_site_is_the_only_one_enabled(host):
    assert host.check_output("ls /etc/nginx/sites-enabled") == "nurcrm"
    assert host.file("/etc/nginx/sites-enabled/nurcrm").linked_to == "/etc/nginx/sites-available/nurcrm"


def test_http_redirects_to_https(server_name):
    connection = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
    connection.request("GET", "/api/cafe/tables/", headers={"Host": server_name})
    response = connection.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{server_name}/api/cafe/tables/"


@pytest.mark.parametrize(
    "path, content_type, marker",
    [
        ("/", "text/html", b"new WebSocket"),
        ("/tables/5", "text/html", b"new WebSocket"),  # try_files: the page for every unknown path
        ("/media/menu/business-lunch.svg", "image/svg+xml", b"<svg"),
        ("/static/admin/css/base.css", "text/css", b"body"),
    ],
)
def test_nginx_serves_the_files(site, path, content_type, marker):
    status, served_type, body = get(site, path)
    assert (status, served_type.split(";")[0]) == (200, content_type), f"{path}: {status} {served_type}"
    assert marker in body


def test_gunicorn_runs_three_uvicorn_workers_from_its_unit(host):
    assert host.service("gunicorn").is_enabled and host.service("gunicorn").is_running
    master = host.check_output("systemctl show -p MainPID --value gunicorn")
    workers = host.check_output(f"pgrep -P {master}").split()
    assert len(workers) == 3, f"gunicorn {master} has workers {workers}"
    command = host.check_output(f"tr '\\0' ' ' < /proc/{master}/cmdline")
    assert "--worker-class uvicorn.workers.UvicornWorker" in command and "--config" not in command


def test_socket_belongs_to_nur_and_nginx_group(host):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert (sock.user, sock.group, sock.mode) == ("nur", "www-data", 0o770)


def test_env_file_is_readable_by_nur_alone(host):
    env = host.file(f"{APP_DIR}/.env")
    assert (env.user, env.mode) == ("nur", 0o600)


def test_redis_answers_ping_without_a_password(host):
    assert host.check_output("redis-cli ping") == "PONG"


def test_database_holds_the_notes_company_and_its_tables(host):
    query = f"SELECT count(*) FROM cafe_table WHERE company_id = '{COMPANY}'"
    assert int(host.check_output(f'sudo -u postgres psql -d nurcrm_prod -tAc "{query}"')) >= 6


def test_api_refuses_a_wrong_password(site):
    with pytest.raises(HTTPError) as refused:
        request(site, "POST", "/api/auth/token/", body={"username": MANAGER, "password": "wrong"})
    assert refused.value.code == 401


def test_api_lists_the_companys_tables(site, token):
    status, tables = request(site, "GET", "/api/cafe/tables/", token)
    assert status == 200 and len(tables) >= 6
    assert {t["status"] for t in tables} <= {"free", "occupied", "reserved"}


def test_socket_says_connection_established_and_ping_gets_pong(site, token):
    async def check():
        async with socket_to(site, f"token={token}") as ws:
            hello = await receive(ws)
            assert hello["type"] == "connection_established" and hello["company_id"] == COMPANY
            await ws.send('{"action": "ping"}')
            assert await receive(ws) == {"type": "pong"}

    asyncio.run(check())


@pytest.mark.parametrize("message", ['{"action": "dance"}', "not json", "[1, 2]"])
def test_socket_answers_a_bad_message_with_an_error(site, token, message):
    async def check():
        async with socket_to(site, f"token={token}") as ws:
            await receive(ws)
            await ws.send(message)
            assert (await receive(ws))["type"] == "error"

    asyncio.run(check())


@pytest.fixture(scope="module")
def expired_token(host):
    """The manager's token, signed with the server's key, expired since 1970."""
    return shell(host, EXPIRED_CODE)


@pytest.mark.parametrize("kind", ["garbage", "expired", "missing"])
def test_socket_closes_a_bad_token_with_4001(site, expired_token, kind):
    query = {"garbage": "token=not.a.jwt", "expired": f"token={expired_token}", "missing": ""}[kind]

    async def check():
        async with socket_to(site, query) as ws:
            assert await close_code(ws) == 4001

    asyncio.run(check())


def test_a_token_minted_on_the_host_opens_the_socket(host, site):
    async def check():
        async with socket_to(site, f"token={shell(host, TOKEN_CODE)}") as ws:
            assert (await receive(ws))["type"] == "connection_established"

    asyncio.run(check())


def test_a_table_changed_over_the_api_reaches_the_socket(site, token):
    async def check():
        _, tables = request(site, "GET", "/api/cafe/tables/", token)
        table = tables[0]
        new_status = "reserved" if table["status"] != "reserved" else "free"
        async with socket_to(site, f"token={token}") as ws:
            await receive(ws)
            await asyncio.to_thread(
                request, site, "PATCH", f"/api/cafe/tables/{table['id']}/", token, {"status": new_status}
            )
            event, _ = await next_of_type(ws, "table_status_changed")
            assert (event["data"]["id"], event["data"]["status"]) == (table["id"], new_status)

    asyncio.run(check())


def test_the_notes_shell_sender_reaches_the_socket(host, site, token):
    async def check():
        async with socket_to(site, f"token={token}") as ws:
            await receive(ws)
            output = await asyncio.to_thread(shell, host, NOTE_SENDER)
            event, _ = await next_of_type(ws, "table_status_changed")
            assert output == f"Notification sent {event['data']['id']}"

    asyncio.run(check())


def test_a_branch_screen_gets_its_branch_tables_events(site, token):
    async def check():
        _, tables = request(site, "GET", "/api/cafe/tables/", token)
        table = next(t for t in tables if t["branch"])
        async with socket_to(site, f"token={token}&branch_id={table['branch']}") as ws:
            assert (await receive(ws))["branch_id"] == str(table["branch"])
            await asyncio.to_thread(
                request, site, "PATCH", f"/api/cafe/tables/{table['id']}/", token, {"status": table["status"]}
            )
            event, _ = await next_of_type(ws, "table_status_changed")
            assert event["data"]["id"] == table["id"]

    asyncio.run(check())


def test_orders_created_and_updated_reach_the_socket(site, token):
    async def check():
        _, tables = request(site, "GET", "/api/cafe/tables/", token)
        async with socket_to(site, f"token={token}") as ws:
            await receive(ws)
            order = {"table": tables[1]["id"], "total": "450.00"}
            status, created = await asyncio.to_thread(request, site, "POST", "/api/cafe/orders/", token, order)
            assert status == 201
            event, _ = await next_of_type(ws, "order_created")
            assert event["data"]["id"] == created["id"]
            path = f"/api/cafe/orders/{created['id']}/"
            await asyncio.to_thread(request, site, "PATCH", path, token, {"status": "served"})
            event, _ = await next_of_type(ws, "order_updated")
            assert (event["data"]["id"], event["data"]["status"]) == (created["id"], "served")

    asyncio.run(check())


def test_a_connected_socket_is_in_its_group_in_redis(host, site, token):
    group = f"asgi:group:cafe_tables_{COMPANY}"

    async def check():
        before = set(host.check_output(f"redis-cli ZRANGE {group} 0 -1").split())
        async with socket_to(site, f"token={token}") as ws:
            await receive(ws)
            assert host.check_output(f"redis-cli TYPE {group}") == "zset"
            members = set(host.check_output(f"redis-cli ZRANGE {group} 0 -1").split())
            assert members - before, f"no new channel in {group}: {members}"

    asyncio.run(check())
