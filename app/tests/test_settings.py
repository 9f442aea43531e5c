"""Django settings from the environment (checklist item 4), read by a fresh interpreter each time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "SECRET_KEY": "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "JWT_SIGNING_KEY": "j" * 50,
    "ALLOWED_HOSTS": "app.nurcrm.kg",
    "DATABASE_URL": "postgres://nur:pw@127.0.0.1:5432/nurcrm",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}
# The read timeout outlasts RedisChannelLayer's 5 s blocking wait (see core/settings.py).
# and a command on a dead pooled connection (Redis restarted) is retried on a fresh one.
REDIS_HOST = {
    "address": "redis://127.0.0.1:6379/0",
    "socket_timeout": 15,
    "socket_connect_timeout": 5,
    "retry": "Retry",
    "retry_on_error": ["ConnectionError"],
    "max_connections": 1000,
}
SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({"
    "'DEBUG': s.DEBUG, 'ALLOWED_HOSTS': s.ALLOWED_HOSTS, 'ASGI_APPLICATION': s.ASGI_APPLICATION,"
    "'CHANNEL_LAYERS': s.CHANNEL_LAYERS, 'ENGINE': s.DATABASES['default']['ENGINE'],"
    "'CSRF_TRUSTED_ORIGINS': s.CSRF_TRUSTED_ORIGINS}, default=lambda o: getattr(o, '__name__', type(o).__name__)))"
)


def django(*args, **env):
    """Run manage.py with exactly this environment (plus PATH), as systemd would."""
    clean = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "core.settings", **env}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=APP_DIR, env=clean, capture_output=True, text=True)


def settings_with(**env):
    result = django("shell", "--verbosity", "0", "-c", SHOW, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_settings_come_from_the_environment():
    seen = settings_with(**PRODUCTION_ENV)
    assert seen["DEBUG"] is False
    assert seen["ALLOWED_HOSTS"] == ["app.nurcrm.kg"]
    assert seen["CSRF_TRUSTED_ORIGINS"] == ["https://app.nurcrm.kg"]
    assert seen["ASGI_APPLICATION"] == "core.asgi.application"
    assert seen["ENGINE"] == "django.db.backends.postgresql"
    layer = seen["CHANNEL_LAYERS"]["default"]
    assert layer["BACKEND"] == "nurcrm_realtime.layers.RedisPubSubChannelLayer"
    assert layer["CONFIG"] == {"hosts": [REDIS_HOST], "prefix": "asgi"}


def test_redis_layer_and_its_options_are_selectable():
    layer = settings_with(**PRODUCTION_ENV, CHANNEL_LAYER="redis", CHANNEL_LAYER_PREFIX="nur")["CHANNEL_LAYERS"][
        "default"
    ]
    assert layer == {
        "BACKEND": "nurcrm_realtime.layers.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_HOST], "prefix": "nur", "capacity": 100, "group_expiry": 86400},
    }


def test_local_run_without_settings_uses_sqlite_and_loopback_hosts():
    seen = settings_with(DEBUG="1")
    assert seen["ENGINE"] == "django.db.backends.sqlite3"
    assert seen["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]


@pytest.mark.parametrize("missing", sorted(PRODUCTION_ENV))
def test_a_missing_production_setting_stops_startup_with_one_line_naming_it(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = django("check", **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and missing in lines[0], result.stderr


@pytest.mark.parametrize(
    "name,value",
    [
        ("DEBUG", "maybe"),
        ("CHANNEL_LAYER", "rabbit"),
        ("CHANNEL_LAYER_CAPACITY", "lots"),
        ("REDIS_SOCKET_TIMEOUT", "5"),
        ("CHANNEL_LAYER_WATCH_INTERVAL", "0"),
        ("CHANNEL_LAYER_REJOIN_INTERVAL", "86400"),
        ("WS_MAX_SOCKETS_PER_USER", "0"),
        ("WS_MESSAGE_RATE", "fast"),
        ("WS_AUTH_RECHECK_INTERVAL", "0"),
        ("LOGIN_MAX_FAILURES", "-1"),
        ("ORDER_MAX_ITEMS", "0"),
    ],
)
def test_a_malformed_setting_is_named(name, value):
    result = django("check", **PRODUCTION_ENV, **{name: value})
    assert result.returncode != 0 and name in result.stderr.strip().splitlines()[-1]


def test_asgi_application_refuses_to_import_without_production_settings():
    """What gunicorn imports fails with the setting's name as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", "import core.asgi"],
        cwd=APP_DIR,
        env={"PATH": os.environ["PATH"], **{k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr.strip().splitlines()[-1]


def test_deploy_checks_pass_with_the_production_settings():
    """`manage.py check --deploy` has no warning: secure cookies, HSTS, SSL redirect behind the proxy."""
    result = django("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_request_nginx_got_over_https_is_not_redirected_but_plain_http_is():
    """SECURE_PROXY_SSL_HEADER: X-Forwarded-Proto https counts as secure, so no redirect loop."""
    probe = (
        "from django.test import Client; c = Client(); "
        "print(c.get('/api/health/', HTTP_HOST='app.nurcrm.kg', HTTP_X_FORWARDED_PROTO='https').status_code, "
        "c.get('/api/health/', HTTP_HOST='app.nurcrm.kg').status_code)"
    )
    result = django("shell", "--verbosity", "0", "-c", probe, **PRODUCTION_ENV)
    assert result.stdout.split() == ["200", "301"], result.stdout + result.stderr


def test_the_release_is_read_from_the_release_file_and_is_dev_without_one(tmp_path):
    show = "from django.conf import settings as s; print(s.RELEASE)"
    release = tmp_path / "release.json"
    release.write_text('{"id": "3f2a9c1b7d4e", "source": "archive"}')
    with_file = django("shell", "--verbosity", "0", "-c", show, DEBUG="1", RELEASE_FILE=str(release))
    assert with_file.stdout.strip() == "3f2a9c1b7d4e", with_file.stderr
    assert django("shell", "--verbosity", "0", "-c", show, DEBUG="1").stdout.strip() == "dev"
