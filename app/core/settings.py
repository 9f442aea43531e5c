"""Settings of the nurcrm realtime app.

Every deploy-time value comes from the environment (see core/env.py and the
table of variables in app/README.md). DEBUG is off unless set; with DEBUG off the app refuses to start
without the settings production needs, naming them in one line.
"""

import json
import socket
from datetime import timedelta
from pathlib import Path

import dj_database_url

from core.env import Env, SettingsError
from nurcrm_realtime import redisconn
from nurcrm_realtime.conf import DEFAULTS as REALTIME
from nurcrm_realtime.layers import BACKENDS, channel_layers

BASE_DIR = Path(__file__).resolve().parent.parent

env = Env()

DEBUG = env.bool("DEBUG", False)
PRODUCTION = not DEBUG

SECRET_KEY = env.required("SECRET_KEY", production=PRODUCTION, fallback="dev-only-insecure-secret-key-0123456789")

# An explicit list; "*" only when someone writes it on purpose.
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", () if PRODUCTION else ("localhost", "127.0.0.1", "[::1]"))
if PRODUCTION and not ALLOWED_HOSTS:
    env.missing.append("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    [f"https://{host.lstrip('.')}" for host in ALLOWED_HOSTS if host != "*"],
)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "channels",
    "nurcrm_realtime",
    "apps.users",
    "apps.cafe",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "core.urls"
ASGI_APPLICATION = "core.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL in deployments; SQLite beside the code when unset, for a local run.
DATABASE_URL = env.required("DATABASE_URL", production=PRODUCTION, fallback=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env.int("DATABASE_CONN_MAX_AGE", 60))}

AUTH_USER_MODEL = "users.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = env.str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Behind nginx, which terminates TLS and sets X-Forwarded-Proto: a request nginx got over
# https is secure, so the redirect below never loops.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Deploy settings (`manage.py check --deploy` passes with them); a local run (DEBUG) goes without.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PRODUCTION
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", PRODUCTION)

# --- Channel layer -----------------------------------------------------------------
# "redis-pubsub" (the default) is channels_redis's RedisPubSubChannelLayer with broadcasts
# written straight to the sockets (nurcrm_realtime.layers, nurcrm_realtime.fanout; groups are the pub/sub channels
# <prefix>__group__<name>, PUBSUB NUMSUB); "redis" is RedisChannelLayer (groups are the sorted
# sets <prefix>:group:<name>, ZRANGE); bench/REPORT.md compares them. "memory" works in one
# process only and exists for tests: with several workers, messages never cross between them.
CHANNEL_LAYER = env.str("CHANNEL_LAYER", "redis-pubsub")
if CHANNEL_LAYER not in BACKENDS:
    raise SettingsError(f"CHANNEL_LAYER={CHANNEL_LAYER!r} is not one of {', '.join(BACKENDS)}")
REDIS_URL = env.required("REDIS_URL", production=PRODUCTION, fallback="redis://127.0.0.1:6379/0")
# Redis under Sentinel (nurcrm_realtime.redisconn): the Sentinels (host:port, comma-separated) and the master's
# name they watch; REDIS_URL then gives the user, password and database alone.
try:
    REDIS_SENTINELS = redisconn.sentinel_addresses(env.str("REDIS_SENTINELS", ""))
except ValueError as exc:
    raise SettingsError(f"REDIS_SENTINELS: {exc}") from None
REDIS_MASTER_NAME = env.str("REDIS_MASTER_NAME", "")
REDIS_SENTINEL_PASSWORD = env.str("REDIS_SENTINEL_PASSWORD", "")
if REDIS_SENTINELS and not REDIS_MASTER_NAME:
    raise SettingsError("REDIS_SENTINELS is set: REDIS_MASTER_NAME must name the master the Sentinels watch")
CHANNEL_LAYER_PREFIX = env.str("CHANNEL_LAYER_PREFIX", "asgi")
CHANNEL_LAYER_GROUP_EXPIRY = env.int("CHANNEL_LAYER_GROUP_EXPIRY", 86400)
try:
    CHANNEL_LAYERS = channel_layers(
        CHANNEL_LAYER,
        REDIS_URL,
        prefix=CHANNEL_LAYER_PREFIX,
        capacity=env.int("CHANNEL_LAYER_CAPACITY", 100),
        group_expiry=CHANNEL_LAYER_GROUP_EXPIRY,
        socket_timeout=env.int("REDIS_SOCKET_TIMEOUT", 15),
        max_connections=env.int("REDIS_MAX_CONNECTIONS", 1000),
        sentinels=REDIS_SENTINELS,
        master_name=REDIS_MASTER_NAME,
        sentinel_password=REDIS_SENTINEL_PASSWORD,
    )
except ValueError as exc:
    raise SettingsError(f"REDIS_SOCKET_TIMEOUT: {exc}") from None
# Redis persists nothing: every worker checks this often (seconds) that it still holds the
# layer's data, and re-adds its sockets to their groups at the rejoin interval, before
# group_expiry drops them (nurcrm_realtime.layer_watch).
CHANNEL_LAYER_WATCH_INTERVAL = env.int("CHANNEL_LAYER_WATCH_INTERVAL", REALTIME["CHANNEL_LAYER_WATCH_INTERVAL"])
CHANNEL_LAYER_REJOIN_INTERVAL = env.int("CHANNEL_LAYER_REJOIN_INTERVAL", CHANNEL_LAYER_GROUP_EXPIRY // 2)
if CHANNEL_LAYER_WATCH_INTERVAL <= 0:
    raise SettingsError(f"CHANNEL_LAYER_WATCH_INTERVAL={CHANNEL_LAYER_WATCH_INTERVAL} must be at least 1 (seconds)")
if not 0 < CHANNEL_LAYER_REJOIN_INTERVAL < CHANNEL_LAYER_GROUP_EXPIRY:
    raise SettingsError(
        f"CHANNEL_LAYER_REJOIN_INTERVAL={CHANNEL_LAYER_REJOIN_INTERVAL} must be positive and below "
        f"CHANNEL_LAYER_GROUP_EXPIRY={CHANNEL_LAYER_GROUP_EXPIRY}, or sockets drop out of their groups"
    )

# Events Redis did not take when their change committed wait in the outbox (apps/cafe/outbox.py): every
# worker's relay looks every OUTBOX_RELAY_INTERVAL seconds for those older than OUTBOX_RELAY_DELAY.
OUTBOX_RELAY_INTERVAL = env.int("OUTBOX_RELAY_INTERVAL", 1, minimum=1)
OUTBOX_RELAY_DELAY = env.int("OUTBOX_RELAY_DELAY", 2, minimum=1)

# --- Spreading sockets over the app hosts (nurcrm_realtime.balance) ----------------------------
# This app host's name among the others (the app role sets the inventory's); the machine's name if unset.
APP_HOST = env.str("APP_HOST", socket.gethostname())
# Every worker says how many sockets it holds this often (seconds). A host over its share by more than
# WS_REBALANCE_TOLERANCE percent (and one socket) closes the surplus with 1012, at most WS_REBALANCE_RATE
# sockets a second for the whole host; a host counts once it has run WS_REBALANCE_GRACE seconds.
WS_REBALANCE_INTERVAL = env.int("WS_REBALANCE_INTERVAL", REALTIME["WS_REBALANCE_INTERVAL"], minimum=1)
WS_REBALANCE_RATE = env.int("WS_REBALANCE_RATE", REALTIME["WS_REBALANCE_RATE"], minimum=1)
WS_REBALANCE_TOLERANCE = env.int("WS_REBALANCE_TOLERANCE", REALTIME["WS_REBALANCE_TOLERANCE"], minimum=0)
WS_REBALANCE_GRACE = env.int("WS_REBALANCE_GRACE", REALTIME["WS_REBALANCE_GRACE"], minimum=0)

# --- Authentication ----------------------------------------------------------------
JWT_SIGNING_KEY = env.required("JWT_SIGNING_KEY", production=PRODUCTION, fallback=SECRET_KEY)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SIMPLE_JWT = {
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "ALGORITHM": "HS256",
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_ACCESS_TTL", 15 * 60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_REFRESH_TTL", 7 * 24 * 3600)),
    "UPDATE_LAST_LOGIN": False,
    # A refresh token is good for one refresh: it is blacklisted and a new one is returned.
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    # Tokens carry a digest of the password hash: a password change, however made, voids them
    # (REST, refresh, WebSocket handshake).
    "CHECK_REVOKE_TOKEN": True,
    # A deleted or inactive user's refresh is a 401, not a 500 (apps.users.serializers).
    "TOKEN_REFRESH_SERIALIZER": "apps.users.serializers.TokenRefreshSerializer",
}
# POST /api/auth/token/ per user name, counted in Redis for all workers (apps.users.login_attempts):
# after this many failed attempts within the window every attempt gets 429 until the window ends.
LOGIN_MAX_FAILURES = env.int("LOGIN_MAX_FAILURES", 5, minimum=1)
LOGIN_FAILURE_WINDOW = env.int("LOGIN_FAILURE_WINDOW", 300, minimum=1)

# --- Release -----------------------------------------------------------------------
# The release this process runs: the roles' releases/<id>/release.json, read through the `current` link as
# the worker starts. Every connection_established and every worker's report says it; "dev" outside a deploy.
RELEASE_FILE = env.str("RELEASE_FILE", "")
RELEASE = json.loads(Path(RELEASE_FILE).read_text())["id"] if RELEASE_FILE and Path(RELEASE_FILE).is_file() else "dev"

# --- WebSocket ----------------------------------------------------------------------
# A text frame longer than this gets an error reply (the socket stays open); the ASGI
# server's own, larger frame limit closes the socket with 1009.
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", REALTIME["WS_MAX_MESSAGE_BYTES"])
# The Sec-WebSocket-Protocol name a client offers beside its token, and that the
# server answers with: the token itself is never echoed.
WS_AUTH_SUBPROTOCOL = "nurcrm.bearer"
# Every worker re-reads the users of its open sockets this often (seconds, one query) and closes
# the sockets of a user deleted, deactivated, given a new password or another company or branch
# since the handshake; sockets are closed when their token expires (4401) and after
# WS_MAX_LIFETIME seconds whatever the token (4408). See nurcrm_realtime.guard.
WS_GUARD_USER_FIELDS = ("company_id", "branch_id")  # a socket is scoped to them at its handshake
WS_AUTH_RECHECK_INTERVAL = env.int("WS_AUTH_RECHECK_INTERVAL", REALTIME["WS_AUTH_RECHECK_INTERVAL"], minimum=1)
WS_MAX_LIFETIME = env.int("WS_MAX_LIFETIME", REALTIME["WS_MAX_LIFETIME"], minimum=1)
# Open sockets of one user, counted over all workers; one more is closed with 4429. A load test
# that opens thousands with one user's token sets it higher.
WS_MAX_SOCKETS_PER_USER = env.int("WS_MAX_SOCKETS_PER_USER", REALTIME["WS_MAX_SOCKETS_PER_USER"], minimum=1)
# Handshakes one worker serves at once (each reads a snapshot); one more is accepted and closed at once
# with 1013 (try again later), so that a reconnect storm is spread by the clients' backoff instead of
# queueing on the database until handshakes time out (docs/protocol.md).
WS_MAX_PENDING_HANDSHAKES = env.int("WS_MAX_PENDING_HANDSHAKES", REALTIME["WS_MAX_PENDING_HANDSHAKES"], minimum=1)
# Client frames a socket may send: WS_MESSAGE_RATE a second on average, WS_MESSAGE_BURST at once.
# A frame over it gets an error reply; WS_MESSAGE_FLOOD_CLOSE such frames in a row close the socket.
WS_MESSAGE_RATE = env.int("WS_MESSAGE_RATE", REALTIME["WS_MESSAGE_RATE"], minimum=1)
WS_MESSAGE_BURST = env.int("WS_MESSAGE_BURST", REALTIME["WS_MESSAGE_BURST"], minimum=1)
WS_MESSAGE_FLOOD_CLOSE = env.int("WS_MESSAGE_FLOOD_CLOSE", REALTIME["WS_MESSAGE_FLOOD_CLOSE"], minimum=1)

# --- Orders ---------------------------------------------------------------------------
# Bounds of an order's items; a larger order is a 400 naming the bound.
ORDER_MAX_ITEMS = env.int("ORDER_MAX_ITEMS", 100, minimum=1)
ORDER_MAX_QUANTITY = env.int("ORDER_MAX_QUANTITY", 1000, minimum=1)
ORDER_MAX_PRICE = env.int("ORDER_MAX_PRICE", 1_000_000, minimum=1)

# --- Logging -------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_tokens": {"()": "core.logs.RedactTokens"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_tokens"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}},
}

env.check()
