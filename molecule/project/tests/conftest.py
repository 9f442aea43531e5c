"""Fixtures of the second project's scenario: the site as the doctor reaches it (tools/fixtures), the
manager's token minted by the project's own function, and the note's company."""

import http.client
import shlex

import pytest

from tools.fixtures import inventory_fixture, site_fixture  # noqa: F401 (pytest finds them by name)

# The note's company, which the project's seed_crm creates (app_manage_before_switch).
COMPANY = "f966441f-0938-49ed-97a7-07a503655ebc"


def shell(host, code):
    """`manage.py shell -c CODE` in the release the host runs, as the app user: its output."""
    return host.check_output(f"nurcrm-manage shell -v 0 -c {shlex.quote(code)}")


@pytest.fixture(scope="module")
def token(host):
    """The manager's access token, by the project's own token code (the inventory's crm_token_code)."""
    return shell(host, host.ansible.get_variables()["crm_token_code"])


def fetch(site, method, path, body=None, headers=None):
    """One HTTPS request to the site: (status, headers, body)."""
    connection = http.client.HTTPSConnection(site.server_name, site.port, timeout=10)
    connection.sock = site.connect()
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()
