"""Checklist item 1, nginx: the $connection_upgrade map, `location /ws/` with the WebSocket headers,
`upstream django_asgi` on gunicorn's unix socket, a configuration nginx accepts."""

import urllib.error
import urllib.request

import pytest
from conftest import assert_passes, request

from doctor import checks

testinfra_hosts = ["ansible://web"]

NGINX_CHECKS = [
    checks.nginx_config_valid,
    checks.nginx_connection_upgrade_map,
    checks.nginx_ws_headers,
    checks.nginx_ws_timeout,
    checks.nginx_upstream_is_gunicorn_socket,
]


@pytest.mark.parametrize("check", NGINX_CHECKS, ids=lambda c: c.__name__)
def test_nginx_configuration_passes(facts, check):
    assert_passes(check(facts))


def test_nginx_service_is_running_and_enabled(host):
    nginx = host.service("nginx")
    assert nginx.is_running and nginx.is_enabled


def test_the_handshake_through_the_public_url_upgrades(facts):
    assert_passes(checks.handshake_upgrades(facts))


def test_plain_http_redirects_to_https(site):
    """An http:// request is answered with a redirect to the https:// URL."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.build_opener(NoRedirect).open(f"http://{site.server_name}/api/health/", timeout=5)
    assert answer.value.code == 301
    assert answer.value.headers["Location"] == site.url("/api/health/", scheme="https")


def test_api_answers_through_nginx(site):
    assert request(site, "GET", "/api/health/") == (200, {"status": "ok"})


def test_certificate_is_valid_for_the_name(facts):
    assert_passes(checks.tls_certificate(facts))
