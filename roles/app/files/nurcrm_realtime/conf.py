"""The app's settings, each with its default declared once here: a project sets only what it changes.

Read as `conf.NAME` when used (a test's override applies at once): the project's Django setting of that
name, else the default below. The reference project (app/) reads each from its environment, with these
defaults (app/core/settings.py).
"""

import socket

from django.conf import settings

DEFAULTS = {
    # Seconds between a worker's looks at Redis for a lost layer (layer_watch).
    "CHANNEL_LAYER_WATCH_INTERVAL": 1,
    # Seconds between re-adding open sockets to their groups, well inside the layer's group_expiry
    # (RedisChannelLayer drops a member after it); None: half of it.
    "CHANNEL_LAYER_REJOIN_INTERVAL": None,
    # Spreading sockets over the app hosts (balance): every INTERVAL seconds a worker on a host over the
    # fair share by TOLERANCE percent closes its surplus with 1012, at most RATE a second per host, once the
    # host has run GRACE seconds.
    "WS_REBALANCE_INTERVAL": 2,
    "WS_REBALANCE_RATE": 20,
    "WS_REBALANCE_TOLERANCE": 10,
    "WS_REBALANCE_GRACE": 15,
    # This app host's name among the others (balance); None: the machine's host name.
    "APP_HOST": None,
    # The guard (guard): seconds between rechecks of the open sockets; a socket's longest life (4408);
    # the sockets a user may have open over all workers (4429); the user's fields that, changed, close
    # its sockets (4401) beside is_active and the password.
    "WS_AUTH_RECHECK_INTERVAL": 1,
    "WS_MAX_LIFETIME": 24 * 3600,
    "WS_MAX_SOCKETS_PER_USER": 50,
    "WS_GUARD_USER_FIELDS": (),
    # The consumer (consumer): handshakes a worker reads at once before it sheds with 1013; frames a socket
    # may send (RATE a second, BURST at once; FLOOD_CLOSE over it in a row close with 1008); a frame's size.
    "WS_MAX_PENDING_HANDSHAKES": 64,
    "WS_MESSAGE_RATE": 10,
    "WS_MESSAGE_BURST": 20,
    "WS_MESSAGE_FLOOD_CLOSE": 50,
    "WS_MAX_MESSAGE_BYTES": 64 * 1024,
}


def layer_config(alias="default"):
    """The CONFIG of the channel layer `alias` ({} for a layer without one)."""
    return settings.CHANNEL_LAYERS.get(alias, {}).get("CONFIG", {})


def __getattr__(name):
    if name not in DEFAULTS:
        raise AttributeError(f"nurcrm_realtime has no setting {name}")
    value = getattr(settings, name, DEFAULTS[name])
    if value is None and name == "APP_HOST":
        return socket.gethostname()
    if value is None and name == "CHANNEL_LAYER_REJOIN_INTERVAL":
        return layer_config().get("group_expiry", 86400) // 2
    return value


def prefix(alias="default"):
    """The prefix of the layer's keys in Redis (channels_redis's default: asgi)."""
    return layer_config(alias).get("prefix", "asgi")
