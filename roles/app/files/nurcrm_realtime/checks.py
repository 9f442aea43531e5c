"""`manage.py check` (and every management command) names a setting of the realtime app that cannot work."""

from django.conf import settings
from django.core import checks

from nurcrm_realtime import conf
from nurcrm_realtime.layers import BACKENDS

POSITIVE = (
    "CHANNEL_LAYER_WATCH_INTERVAL",
    "WS_REBALANCE_INTERVAL",
    "WS_REBALANCE_RATE",
    "WS_AUTH_RECHECK_INTERVAL",
    "WS_MAX_LIFETIME",
    "WS_MAX_SOCKETS_PER_USER",
    "WS_MAX_PENDING_HANDSHAKES",
    "WS_MESSAGE_RATE",
    "WS_MESSAGE_BURST",
    "WS_MESSAGE_FLOOD_CLOSE",
    "WS_MAX_MESSAGE_BYTES",
)


@checks.register("nurcrm_realtime")
def settings_check(app_configs=None, **kwargs):
    found = []
    for name in POSITIVE:
        value = getattr(conf, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            found.append(
                checks.Error(f"{name}={value!r} must be a whole number, at least 1", id="nurcrm_realtime.E001")
            )
    for name in ("WS_REBALANCE_TOLERANCE", "WS_REBALANCE_GRACE"):
        value = getattr(conf, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            found.append(checks.Error(f"{name}={value!r} must be a whole number, 0 or more", id="nurcrm_realtime.E001"))
    expiry = conf.layer_config().get("group_expiry", 86400)
    if not 0 < conf.CHANNEL_LAYER_REJOIN_INTERVAL < expiry:
        found.append(
            checks.Error(
                f"CHANNEL_LAYER_REJOIN_INTERVAL={conf.CHANNEL_LAYER_REJOIN_INTERVAL} must be positive and below the "
                f"layer's group_expiry ({expiry}), or sockets drop out of their groups",
                id="nurcrm_realtime.E002",
            )
        )
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if backend.startswith("channels_redis."):
        ours = ", ".join(b for b in BACKENDS.values() if b.startswith("nurcrm_realtime."))
        found.append(
            checks.Warning(
                f"CHANNEL_LAYERS' default layer is {backend}: the resync after Redis loses the groups and the "
                "fast fan-out need one of the realtime app's layers",
                hint=f"use {ours} (nurcrm_realtime.layers.channel_layers builds the setting)",
                id="nurcrm_realtime.W001",
            )
        )
    return found
