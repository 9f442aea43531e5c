"""Checklist item 1, nginx: the $connection_upgrade map, `location /ws/` with the WebSocket headers,
`upstream django_asgi` on gunicorn's unix socket, a configuration nginx accepts."""

import re
import urllib.error
import urllib.request

import pytest
from conftest import SOCKET, block

testinfra_hosts = ["ansible://web"]


def test_nginx_accepts_its_configuration(host):
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr


def test_nginx_service_is_running_and_enabled(host):
    nginx = host.service("nginx")
    assert nginx.is_running and nginx.is_enabled


def test_connection_upgrade_is_defined_by_a_map(nginx_conf):
    body = block(nginx_conf, r"map\s+\$http_upgrade\s+\$connection_upgrade")
    assert re.search(r"\bdefault\s+upgrade\s*;", body), "the map must default to `upgrade`"
    assert re.search(r"''\s+close\s*;", body), "an empty Upgrade header must map to `close`"


WS_DIRECTIVES = {
    "proxy_pass": r"proxy_pass\s+http://django_asgi\s*;",
    "http/1.1": r"proxy_http_version\s+1\.1\s*;",
    "Upgrade": r"proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;",
    "Connection": r"proxy_set_header\s+Connection\s+\$connection_upgrade\s*;",
    "Host": r"proxy_set_header\s+Host\s+\$host\s*;",
    "X-Forwarded-For": r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for\s*;",
    "X-Forwarded-Proto": r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme\s*;",
}


@pytest.mark.parametrize("pattern", WS_DIRECTIVES.values(), ids=WS_DIRECTIVES.keys())
def test_ws_location_carries_the_websocket_headers(nginx_conf, pattern):
    assert re.search(pattern, block(nginx_conf, r"location\s+/ws/")), f"location /ws/ lacks {pattern}"


def test_ws_location_lets_sockets_stay_silent_for_long(nginx_conf):
    match = re.search(r"proxy_read_timeout\s+(\d+)s?\s*;", block(nginx_conf, r"location\s+/ws/"))
    assert match and int(match.group(1)) >= 600, "proxy_read_timeout of /ws/ must be 600s or more (default 60s)"


def test_upstream_django_asgi_points_at_the_gunicorn_socket(nginx_conf, app):
    servers = re.findall(r"server\s+([^\s;]+)", block(nginx_conf, r"upstream\s+django_asgi"))
    binds = app.check_output(f"grep -E '^bind' {app_config(app)}")
    assert f"unix:{SOCKET}" in servers, servers
    assert f"unix:{SOCKET}" in binds, f"gunicorn binds {binds}, nginx connects to {servers}"


def app_config(app):
    return re.search(r"--config\s+(\S+)", app.check_output("systemctl cat gunicorn")).group(1)


def test_plain_http_redirects_to_https(site):
    """An http:// request is answered with a redirect to the https:// URL."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.build_opener(NoRedirect).open(f"http://{site.server_name}/api/health/", timeout=5)
    assert answer.value.code == 301
    assert answer.value.headers["Location"] == site.url("/api/health/")


def test_api_answers_through_nginx(site):
    assert site.request("GET", "/api/health/") == (200, {"status": "ok"})
