"""Management commands operators type: seed_demo, issue_token, send_test_notification."""

import io
import time

import pytest
from django.core.management import CommandError, call_command
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
from apps.cafe.models import Table
from apps.users.models import Branch, Company, User

pytestmark = pytest.mark.django_db


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_seed_demo_twice_changes_nothing():
    """The second run of seed_demo reports and makes no change."""
    first = run("seed_demo")
    counts = (Company.objects.count(), Branch.objects.count(), Table.objects.count(), User.objects.count())
    second = run("seed_demo")
    assert "changed:" in first and second.splitlines()[-1] == "unchanged"
    assert counts == (2, 2, 10, 2)  # the demo company's 2 branches, 9 tables, its user; the watchdog's own
    assert (Company.objects.count(), Branch.objects.count(), Table.objects.count(), User.objects.count()) == counts
    assert str(DEMO_COMPANY_ID) in second


def test_seed_demo_puts_the_watchdog_in_a_company_of_its_own():
    """The monitoring doctor's test notifications go to the watchdog's one table, never to a demo screen."""
    run("seed_demo")
    watchdog = User.objects.get(username="watchdog")
    assert str(watchdog.company_id) == "5eed0000-0000-4000-8000-0000000000dc" != str(DEMO_COMPANY_ID)
    assert watchdog.branch_id is None and not watchdog.has_usable_password()
    assert Table.objects.filter(company_id=watchdog.company_id).count() == 1


def test_seed_demo_sets_a_password_once():
    run("seed_demo", "--password", "demo-pass-123")
    assert User.objects.get(username="demo").check_password("demo-pass-123")
    assert run("seed_demo", "--password", "demo-pass-123").splitlines()[-1] == "unchanged"


def test_issue_token_prints_a_valid_access_token_for_the_user():
    run("seed_demo")
    token = AccessToken(run("issue_token", "--user", "demo").strip())
    assert token["user_id"] == str(User.objects.get(username="demo").pk)


def test_issue_token_ttl_sets_the_lifetime():
    run("seed_demo")
    token = AccessToken(run("issue_token", "--user", "demo", "--ttl", "60").strip())
    assert 55 <= token["exp"] - time.time() <= 61
    with pytest.raises(TokenError):
        AccessToken(run("issue_token", "--user", "demo", "--ttl", "-1").strip())


def test_issue_token_for_an_unknown_user_names_it():
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        run("issue_token", "--user", "ghost")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--company", "nope"], "--company 'nope' is not a UUID"),
        (["--company", "5eed0000-0000-4000-8000-00000000dead"], "no company with id"),
        (["--company", str(DEMO_COMPANY_ID), "--branch", "5eed0000-0000-4000-8000-00000000dead"], "no branch"),
        (["--company", str(DEMO_COMPANY_ID), "--table", "5eed0000-0000-4000-8000-00000000dead"], "no such table"),
    ],
    ids=["bad-uuid", "unknown-company", "foreign-branch", "unknown-table"],
)
def test_send_test_notification_rejects_bad_arguments_by_name(args, message):
    run("seed_demo")
    with pytest.raises(CommandError, match=message):
        run("send_test_notification", *args)
