"""Refresh tokens can be revoked: rotated and blacklisted on use, revoked with a new password or a
deactivation, refused (401, never 500) for a deleted or inactive user; access tokens die with the password.
The blacklist's tables come from migrations that `manage.py migrate` applies."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.forms import AdminPasswordChangeForm
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from apps.users.models import User
from tests.conftest import close_code, socket_to

pytestmark = pytest.mark.django_db(transaction=True)
APP_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def login_on_real_redis(settings, redis_server):
    """The login endpoint counts attempts in Redis (test_login_limit.py): a real one, keys of this test's own."""
    settings.REDIS_URL = redis_server
    settings.CHANNEL_LAYER_PREFIX = f"tokens{os.urandom(4).hex()}"


def login(client, username="staff", password="pw-staff-1"):
    response = client.post("/api/auth/token/", {"username": username, "password": password})
    assert response.status_code == 200, response.content
    return response.json()


def refresh(client, token):
    return client.post("/api/auth/token/refresh/", {"refresh": token})


def test_a_refresh_returns_a_new_refresh_token_and_the_used_one_is_refused_after(client, tenant):
    """Rotation: each refresh answers a new access and a new refresh token; the one used is blacklisted,
    so a second use is a 401; the new one works once in its turn."""
    first = login(client)["refresh"]
    rotated = refresh(client, first)
    assert rotated.status_code == 200
    assert set(rotated.json()) == {"access", "refresh"} and rotated.json()["refresh"] != first
    assert refresh(client, first).status_code == 401
    assert refresh(client, rotated.json()["refresh"]).status_code == 200
    assert BlacklistedToken.objects.count() == 2


def test_a_deleted_users_refresh_token_is_a_401_not_a_500(client, tenant):
    """The user is gone: the refresh endpoint answers 401 (simplejwt's own raised DoesNotExist: a 500)."""
    token = login(client)["refresh"]
    tenant[2].delete()
    response = refresh(client, token)
    assert response.status_code == 401
    assert response.json()["detail"] == "No active account found for the given token."


@pytest.mark.parametrize("how", ["save", "queryset-update"])
def test_an_inactive_users_refresh_token_is_a_401(client, tenant, how):
    """Deactivated by save() or by a QuerySet.update() that no signal sees: the refresh is refused."""
    token = login(client)["refresh"]
    user = tenant[2]
    if how == "save":
        user.is_active = False
        user.save()
    else:
        User.objects.filter(pk=user.pk).update(is_active=False)
    assert refresh(client, token).status_code == 401


def change_password_by_save(user):
    user.set_password("a-new-pw-2")
    user.save()


def change_password_in_the_admins_form(user):
    form = AdminPasswordChangeForm(user, {"password1": "a-new-pw-2", "password2": "a-new-pw-2"})
    assert form.is_valid(), form.errors
    form.save()


def change_password_by_update(user):
    probe = User(password="")
    probe.set_password("a-new-pw-2")
    User.objects.filter(pk=user.pk).update(password=probe.password)


@pytest.mark.parametrize(
    "change",
    [change_password_by_save, change_password_in_the_admins_form, change_password_by_update],
    ids=["save", "admin-form", "queryset-update"],
)
def test_a_new_password_revokes_every_refresh_and_access_token_issued_before(client, api, tenant, change):
    """Two sessions' refresh tokens and an access token, then a new password (by save(), the admin's
    password form, or a QuerySet.update()): both refreshes are 401, the REST API refuses the access
    token; a login with the new password works."""
    sessions = [login(client), login(client)]
    change(tenant[2])
    for session in sessions:
        assert refresh(client, session["refresh"]).status_code == 401
        stale = client.get("/api/cafe/tables/", HTTP_AUTHORIZATION=f"Bearer {session['access']}")
        assert stale.status_code == 401
    fresh = login(client, password="a-new-pw-2")
    assert refresh(client, fresh["refresh"]).status_code == 200


def test_a_password_change_through_save_blacklists_the_outstanding_refresh_tokens(client, tenant):
    """What save() adds over the password digest in the tokens: the tokens are blacklisted for good."""
    for _ in range(3):
        login(client)
    change_password_by_save(tenant[2])
    assert BlacklistedToken.objects.filter(token__user=tenant[2]).count() == OutstandingToken.objects.count() == 3


def test_a_deactivated_then_reactivated_user_keeps_no_refresh_token(client, tenant):
    """Deactivation through save() blacklists the user's refresh tokens: reactivating the user does not
    bring them back."""
    token = login(client)["refresh"]
    user = tenant[2]
    user.is_active = False
    user.save()
    user.is_active = True
    user.save()
    assert refresh(client, token).status_code == 401
    assert refresh(client, login(client)["refresh"]).status_code == 200


def test_a_save_that_changes_neither_password_nor_active_revokes_nothing(client, tenant):
    token = login(client)["refresh"]
    user = tenant[2]
    user.first_name = "Aida"
    user.save()
    assert refresh(client, token).status_code == 200


async def test_a_socket_opened_with_an_access_token_older_than_the_password_is_closed_with_4401(tenant):
    """The WebSocket handshake checks the token's password digest as the REST API does."""
    from channels.db import database_sync_to_async
    from rest_framework_simplejwt.tokens import AccessToken

    user = tenant[2]
    token = str(AccessToken.for_user(user))
    await database_sync_to_async(change_password_by_update)(user)
    async with socket_to(token=token) as ws:
        assert await close_code(ws) == 4401


def test_migrate_creates_the_blacklist_tables_and_no_model_lacks_a_migration(tmp_path):
    """What the deploy runs (`manage.py migrate`) applies token_blacklist's migrations on a fresh database,
    and `makemigrations --check` finds nothing missing."""
    env = {
        "PATH": os.environ["PATH"],
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "core.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }

    def manage(*args):
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=APP_DIR, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    manage("migrate", "--verbosity", "0")
    applied = manage("showmigrations", "token_blacklist", "users")
    assert "[ ]" not in applied and "[X] 0013_alter_blacklistedtoken_options_and_more" in applied
    manage("makemigrations", "--check", "--dry-run")
