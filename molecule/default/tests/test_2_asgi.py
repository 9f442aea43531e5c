"""Checklist item 2, the ASGI server: the `gunicorn` unit with uvicorn workers, the socket
/home/nur/asgi.sock, 3 workers, and workers that do not restart per request; the doctor's gunicorn step."""

import pytest
from conftest import SERVICE, SOCKET, assert_check_passes, checks_of, request

testinfra_hosts = ["ansible://app"]
ITEMS = (2,)


@pytest.mark.parametrize("check", checks_of(ITEMS))
def test_the_doctors_check_passes(walk, check):
    assert_check_passes(walk, check)


def test_three_workers_are_running(app_facts):
    """The production note's three workers, configured and running (the doctor checks they agree)."""
    assert app_facts.gunicorn["config"]["workers"] == "3"
    assert len(app_facts.gunicorn["workers"]) == 3


def test_workers_run_uvloop_httptools_and_the_lean_websocket_protocol(app_facts):
    """uvicorn's options from roles/asgi (`asgi_uvicorn`), as each running worker reports them."""
    options = [report.get("uvicorn") for report in app_facts.reports.values()]
    assert len(options) == 3
    wanted = {
        "loop": "uvloop",
        "http": "nurcrm_ops.httpprotocol:HTTPProtocol",
        "ws": "nurcrm_ops.wsprotocol:WebSocketProtocol",
    }
    assert all(wanted.items() <= option.items() for option in options), options


def test_gunicorn_restarts_on_failure(host):
    assert host.check_output(f"systemctl show -p Restart --value {SERVICE}") == "on-failure"


def test_socket_is_nginx_groups_and_nobody_elses(host):
    sock = host.file(SOCKET)
    assert sock.group == "www-data" and sock.mode & 0o060 == 0o060, "nginx's group must read and write it"
    assert sock.mode & 0o007 == 0, f"others have access: {oct(sock.mode)}"
    probe = f"python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect(\"{SOCKET}\")'"
    refused = host.run(f"runuser -u nobody -- {probe}")
    assert refused.rc != 0 and "Permission denied" in refused.stderr


def worker_pids(host):
    main_pid = host.check_output(f"systemctl show -p MainPID --value {SERVICE}")
    return sorted(int(pid) for pid in host.check_output(f"pgrep -P {main_pid}").split())


def test_worker_pids_are_unchanged_across_50_requests(host, site, token):
    """Workers serve request after request (HTTP and WebSocket) without being replaced."""
    before = worker_pids(host)
    for _ in range(45):
        assert request(site, "GET", "/api/cafe/tables/", token=token)[0] == 200
    for _ in range(5):
        with site.connect() as tls:
            tls.sendall(
                f"GET /ws/cafe/tables/?token={token} HTTP/1.1\r\nHost: {site.server_name}\r\n"
                f"Origin: {site.origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
            )
            assert tls.recv(4096).startswith(b"HTTP/1.1 101")
    assert worker_pids(host) == before
