"""Fixtures of the second project's scenario: the site as the doctor reaches it (tools/fixtures), the
manager's token minted by the project's own function, and the note's company."""

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
