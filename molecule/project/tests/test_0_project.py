"""A Django project that is not app/, deployed by the bundle (docs/project.md): the CRM's own, from its git
repository over SSH with a deploy key, with its settings module, plain requirements, PyJWT, REST API, frontend,
uploads and Redis cache, knowing nothing of the bundle. The production checklist through nginx, the bundle's
operations on it (worker reports, metrics, the per-host check), its own endpoints, and the doctor."""

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest
from conftest import COMPANY, fetch, shell

from doctor.site import next_of_type, receive, request, socket_to
from tools.fixtures import walked

testinfra_hosts = ["ansible://app"]
CACHE = Path(os.environ["HOME"], ".cache/nurcrm/project")
# The production note's sender, verbatim but for the print.
NOTE_SENDER = f"""
from apps.cafe.models import Table
table = Table.objects.filter(company_id='{COMPANY}').first()
from apps.cafe.views import send_table_status_changed_notification
send_table_status_changed_notification(table)
print(table.id)
"""


def test_the_release_is_the_commit_pushed_to_the_private_repository(host):
    release = json.loads(host.file("/opt/nurcrm/current/release.json").content_string)
    assert release["source"] == "git"
    assert release["id"] == (CACHE / "commit").read_text().strip()[:12]
    key = host.file("/etc/nurcrm/git-deploy-key")
    assert (key.user, key.mode) == ("root", 0o600)


def test_gunicorn_serves_the_projects_application_with_its_settings(host):
    env = host.file("/etc/nurcrm/app.env").content_string
    assert "DJANGO_SETTINGS_MODULE='core.production'" in env and "DB_NAME=" in env and "DATABASE_URL" not in env
    reports = host.check_output("cat /run/gunicorn/worker-*.json").replace("}{", "}\n{").splitlines()
    workers = [json.loads(line) for line in reports]
    assert len(workers) == 3
    release = (CACHE / "commit").read_text().strip()[:12]
    for worker in workers:
        assert worker["release"] == release
        assert worker["worker_class"] == "uvicorn.workers.UvicornWorker"
        assert worker["asgi_application"] == "core.asgi.application"
        assert worker["channel_layer"] == "channels_redis.core.RedisChannelLayer"


def test_the_bundles_metrics_count_the_projects_workers(host):
    """prometheus_client came with the bundle (the project's requirements lack it): its exporter answers."""
    metrics = host.check_output(
        "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9808/metrics').read().decode())\""
    )
    assert "nurcrm_worker_starts_total 3.0" in metrics


def test_the_socket_says_connection_established_and_ping_gets_pong(site, token):
    async def check():
        async with socket_to(site, f"token={token}") as ws:
            hello = await receive(ws)
            assert hello["type"] == "connection_established" and hello["company_id"] == COMPANY
            await ws.send('{"action": "ping"}')
            assert await receive(ws) == {"type": "pong"}

    asyncio.run(check())


def test_the_notes_sender_reaches_an_open_socket(host, site, token):
    async def check():
        async with socket_to(site, f"token={token}") as ws:
            await receive(ws)
            sent = await asyncio.to_thread(shell, host, NOTE_SENDER)
            event, _ = await next_of_type(ws, "table_status_changed")
            assert str(event["data"]["id"]) == sent.strip()

    asyncio.run(check())


def test_a_bad_token_is_closed_with_the_projects_code(site):
    async def check():
        async with socket_to(site, "token=not-a-jwt") as ws:
            with pytest.raises(Exception) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd.code == 4001

    asyncio.run(check())


def test_the_projects_endpoint_answers_and_caches_in_redis(host, site, token):
    status, stats = request(site, "GET", "/api/cafe/stats/", token)
    assert status == 200 and stats["tables"] >= 6
    keys = shell(
        host,
        "import os, redis; r = redis.Redis.from_url(os.environ['REDIS_URL']); "
        "print(sorted(k.decode() for k in r.scan_iter('cache:*')))",
    )
    assert f"stats:{COMPANY}" in keys


def test_the_frontend_page_is_served_from_the_release(site):
    status, headers, body = fetch(site, "GET", "/")
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "text/html")
    assert b"new WebSocket" in body


def test_an_upload_is_kept_in_the_media_folder_and_served_sandboxed(host, site, token):
    boundary, name = uuid.uuid4().hex, f"menu-{uuid.uuid4().hex[:8]}.svg"
    picture = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: image/svg+xml\r\n\r\n"
        ).encode()
        + picture
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, _, answer = fetch(site, "POST", "/api/cafe/menu/images/", body, headers)
    assert status == 201, answer
    url = json.loads(answer)["url"]
    assert url == f"/media/menu/{name}"
    stored = host.file(f"/var/lib/nurcrm/media/menu/{name}")
    assert stored.user == "nur" and stored.group == "www-data"
    status, headers, served = fetch(site, "GET", url)
    assert (status, served) == (200, picture)
    assert "sandbox" in headers["Content-Security-Policy"]


def test_the_doctor_finds_every_layer_healthy(inventory):
    report = walked(inventory)
    assert report["healthy"], json.dumps(report["first_failure"], indent=1)
