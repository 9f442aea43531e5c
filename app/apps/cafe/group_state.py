"""What the configured channel layer holds for a group, read straight from Redis.

RedisChannelLayer keeps a group as the sorted set `<prefix>:group:<name>` of channel
names (ZRANGE shows them); RedisPubSubChannelLayer publishes on the pub/sub channel
`<prefix>__group__<name>`, whose subscribers are worker connections (PUBSUB NUMSUB).
`SUBSCRIBE asgi:group:...` shows nothing with either.
"""

import time
from dataclasses import dataclass

from django.conf import settings


@dataclass
class GroupState:
    group: str
    redis_key: str | None
    members: int | None
    unit: str
    how: str


def _redis():
    from nurcrm_realtime import redisconn

    config = redisconn.host(
        settings.REDIS_URL, settings.REDIS_SENTINELS, settings.REDIS_MASTER_NAME, settings.REDIS_SENTINEL_PASSWORD
    )
    return redisconn.client(config, socket_timeout=5)


def group_state(group):
    backend = settings.CHANNEL_LAYER
    prefix = settings.CHANNEL_LAYER_PREFIX
    if backend == "redis":
        key = f"{prefix}:group:{group}"
        expiry = settings.CHANNEL_LAYERS["default"]["CONFIG"]["group_expiry"]
        live = _redis().zcount(key, time.time() - expiry, "+inf")
        return GroupState(group, key, live, "consumer(s)", f"ZRANGE {key} 0 -1")
    if backend == "redis-pubsub":
        key = f"{prefix}__group__{group}"
        ((_, subscribers),) = _redis().pubsub_numsub(key)
        return GroupState(group, key, subscribers, "subscribed worker connection(s)", f"PUBSUB NUMSUB {key}")
    return GroupState(group, None, None, "unknown: the in-memory layer is per process", "none")
