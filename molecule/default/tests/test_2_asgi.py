"""Checklist item 2, the ASGI server: the `gunicorn` unit with uvicorn workers, the socket
/home/nur/asgi.sock, 3 workers, and workers that do not restart per request."""

import re
import socket

from conftest import SERVICE, SOCKET, WORKERS

testinfra_hosts = ["ansible://app"]


def main_pid(host):
    return int(host.check_output(f"systemctl show -p MainPID --value {SERVICE}"))


def worker_pids(host):
    return sorted(int(pid) for pid in host.check_output(f"pgrep -P {main_pid(host)}").split())


def test_gunicorn_unit_is_active_and_enabled(host):
    unit = host.service(SERVICE)
    assert unit.is_running and unit.is_enabled


def test_gunicorn_restarts_on_failure(host):
    assert host.check_output(f"systemctl show -p Restart --value {SERVICE}") == "on-failure"


def test_socket_exists_and_is_a_socket(host):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert sock.group == "www-data" and sock.mode & 0o060 == 0o060, "nginx's group must read and write it"
    assert sock.mode & 0o007 == 0, f"others have access: {oct(sock.mode)}"


def test_nginx_user_can_connect_to_the_socket_and_others_cannot(host):
    probe = f"python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect(\"{SOCKET}\")'"
    assert host.run(f"runuser -u www-data -- {probe}").rc == 0
    refused = host.run(f"runuser -u nobody -- {probe}")
    assert refused.rc != 0 and "Permission denied" in refused.stderr


def test_three_workers_of_the_uvicorn_class_are_running(host):
    config = host.file("/etc/nurcrm/gunicorn.conf.py").content_string
    assert re.search(r'^worker_class = "uvicorn_worker\.UvicornWorker"$', config, re.M)
    assert len(worker_pids(host)) == WORKERS
    since = host.check_output(f"systemctl show -p ActiveEnterTimestamp --value {SERVICE}")
    journal = host.check_output(f"journalctl -u {SERVICE} --since '{since}' --no-pager -o cat")
    assert "Using worker: uvicorn_worker.UvicornWorker" in journal


def test_worker_pids_are_unchanged_across_50_requests(host, site, token):
    """Workers serve request after request (HTTP and WebSocket) without being replaced."""
    before = worker_pids(host)
    for _ in range(45):
        assert site.request("GET", "/api/cafe/tables/", token=token)[0] == 200
    for _ in range(5):
        with socket.create_connection((site.server_name, site.port), timeout=5) as raw:
            with site.tls().wrap_socket(raw, server_hostname=site.server_name) as tls:
                tls.sendall(
                    f"GET /ws/cafe/tables/?token={token} HTTP/1.1\r\nHost: {site.server_name}\r\n"
                    f"Origin: {site.origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
                )
                assert tls.recv(4096).startswith(b"HTTP/1.1 101")
    assert worker_pids(host) == before
