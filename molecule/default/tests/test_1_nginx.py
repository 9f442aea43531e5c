"""Checklist item 1, nginx: the $connection_upgrade map, `location /ws/` with the WebSocket headers,
`upstream django_asgi` on gunicorn's unix socket, a configuration nginx accepts; the doctor's tls,
nginx and handshake steps."""

import http.client

import pytest
from conftest import assert_check_passes, checks_of, request

testinfra_hosts = ["ansible://web"]
ITEMS = (1,)


@pytest.mark.parametrize("check", checks_of(ITEMS))
def test_the_doctors_check_passes(walk, check):
    assert_check_passes(walk, check)


def test_nginx_service_is_running_and_enabled(host):
    nginx = host.service("nginx")
    assert nginx.is_running and nginx.is_enabled


def test_plain_http_redirects_to_https(site):
    """An http:// request is answered with a redirect to the https:// URL."""
    answer = http.client.HTTPConnection(site.host, 80, timeout=5)
    answer.request("GET", "/api/health/", headers={"Host": site.server_name})
    response = answer.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == site.url("/api/health/", scheme="https")
    answer.close()


def test_api_answers_through_nginx(site):
    assert request(site, "GET", "/api/health/") == (200, {"status": "ok"})
