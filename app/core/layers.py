"""The CHANNEL_LAYERS setting, built in one place for settings.py and the Redis test suites."""

BACKENDS = {
    "redis": "channels_redis.core.RedisChannelLayer",
    "redis-pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "memory": "channels.layers.InMemoryChannelLayer",
}
# RedisChannelLayer waits for messages with a blocking BZPOPMIN of this many seconds.
BLOCKING_READ = 5


def channel_layers(backend, redis_url, prefix="asgi", capacity=100, group_expiry=86400, socket_timeout=15):
    """CHANNEL_LAYERS for `backend` ("redis", "redis-pubsub" or "memory").

    redis-py 8 reads with a 5 s socket timeout by default: with it, every consumer whose
    socket stays idle dies of "Timeout reading from Redis" when BZPOPMIN's 5 s run out.
    The read timeout must outlast the blocking read.
    """
    if backend == "memory":
        return {"default": {"BACKEND": BACKENDS[backend], "CONFIG": {}}}
    if socket_timeout <= BLOCKING_READ:
        raise ValueError(f"the Redis read timeout ({socket_timeout} s) must exceed the {BLOCKING_READ} s blocking read")
    host = {"address": redis_url, "socket_timeout": socket_timeout, "socket_connect_timeout": 5}
    config = {"hosts": [host], "prefix": prefix}
    if backend == "redis":
        config.update(capacity=capacity, group_expiry=group_expiry)
    return {"default": {"BACKEND": BACKENDS[backend], "CONFIG": config}}
