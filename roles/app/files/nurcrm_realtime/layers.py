"""The CHANNEL_LAYERS setting, built in one place for settings.py and the Redis test suites."""

import asyncio
import collections

import channels_redis.core
import channels_redis.pubsub
import channels_redis.utils
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from nurcrm_realtime import fanout, layer_watch, metrics, redisconn

BACKENDS = {
    "redis": "nurcrm_realtime.layers.RedisChannelLayer",
    "redis-pubsub": "nurcrm_realtime.layers.RedisPubSubChannelLayer",
    "memory": "channels.layers.InMemoryChannelLayer",
}
# RedisChannelLayer waits for messages with a blocking BZPOPMIN of this many seconds.
BLOCKING_READ = 5


class RedisChannelLayer(channels_redis.core.RedisChannelLayer):
    """channels_redis's RedisChannelLayer, with a receive() that really ends when cancelled.

    A cancel that lands in the first millisecond of a receive (while redis-py is still sending
    or reading) is lost about half the time (redis-py issue #2028): the receive carries on with
    BZPOPMIN forever. Channels cancels it when a socket closes and waits for it, so the consumer
    of every socket that closes at once lived on, polling Redis, and held its worker's graceful
    shutdown (`systemctl reload gunicorn`) until gunicorn killed it. Here the receive runs in a
    task of its own, which is cancelled again until it has ended.
    """

    async def receive(self, channel):
        receiving = asyncio.ensure_future(super().receive(channel))
        try:
            return await asyncio.shield(receiving)
        except asyncio.CancelledError:
            while not receiving.done():
                receiving.cancel()
                await asyncio.wait([receiving], timeout=0.1)
            raise


class RedisPubSubChannelLayer(channels_redis.pubsub.RedisPubSubChannelLayer):
    """channels_redis's RedisPubSubChannelLayer, writing forwarded events straight to sockets.

    A consumer that calls `outlet(consumer)` gets the frames of its groups' forwarded events
    (nurcrm_realtime.fanout.FORWARDED), encoded once per worker, written to its socket by the layer's reader;
    everything else still goes through the consumer's queue. Groups, channels and PUBSUB NUMSUB
    stay as they were.
    """

    def outlet(self, consumer):
        """Register `consumer`'s socket for direct broadcasts; `drop_outlet` when it ends."""
        outlet = fanout.Outlet(consumer)
        self._get_layer().outlets[consumer.channel_name] = outlet
        return outlet

    def drop_outlet(self, consumer):
        outlet = self._get_layer().outlets.pop(consumer.channel_name, None)
        if outlet is not None:
            outlet.close()

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _FanoutLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            channels_redis.utils._wrap_close(self, loop)
        return layer


class _FanoutLoopLayer(channels_redis.pubsub.RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outlets = {}
        self._shards = [_FanoutShard(shard.host, self) for shard in self._shards]  # before any connection

    async def _subscribe_to_channel(self, channel):
        self.channels[channel] = _Inbox()
        await self._get_shard(channel).subscribe(channel)


class _Inbox:
    """A socket's own channel: asyncio.Queue's put_nowait() and get() for its one reader, the
    consumer, in 100 bytes rather than 3 KiB of idle queue (four deques and an event)."""

    __slots__ = ("items", "waiter")

    def __init__(self):
        self.items, self.waiter = None, None

    def put_nowait(self, item):
        if self.items is None:
            self.items = collections.deque()
        self.items.append(item)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self):
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        item = self.items.popleft()
        if not self.items:
            self.items = None
        return item


class _ResubscribingPubSub(PubSub):
    """redis-py's PubSub, telling the layer watch each time it has to connect again: it resubscribes
    every channel, but what was published meanwhile is lost (nurcrm_realtime.layer_watch resyncs the sockets). The
    first connection calls no on_connect: redis-py registers it only once connected."""

    def __init__(self, connection_pool, layer):
        super().__init__(connection_pool)
        self.layer = layer

    async def on_connect(self, connection):
        await super().on_connect(connection)
        layer_watch.interrupted(self.layer)


class _FanoutShard(channels_redis.pubsub.RedisSingleShardConnection):
    def _ensure_redis(self):
        if self._redis is None:
            super()._ensure_redis()
            self._pubsub = _ResubscribingPubSub(self._redis.connection_pool, self.channel_layer.channel_layer)

    def _receive_message(self, message):
        if message is None:
            return
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        layer = self.channel_layer
        members = layer.groups.get(name) if name not in layer.channels else None
        if not members:
            return super()._receive_message(message)
        data, outlets, text, written = message["data"], layer.outlets, None, 0
        for channel in list(members):
            outlet = outlets.get(channel)
            if outlet is not None:
                if text is None:  # encoded once for every member of this worker, whoever sent it
                    text = fanout.frame(layer.channel_layer.deserialize(data)) or False
                if text:
                    written += outlet.put(text)
                    continue
            queue = layer.channels.get(channel)
            if queue is not None:
                queue.put_nowait(data)
        if written:  # one count per broadcast, not per socket
            metrics.FRAMES_WRITTEN.inc(written)


def channel_layers(
    backend,
    redis_url,
    prefix="asgi",
    capacity=100,
    group_expiry=86400,
    socket_timeout=15,
    max_connections=1000,
    sentinels=(),
    master_name="",
    sentinel_password="",
):
    """CHANNEL_LAYERS for `backend` ("redis", "redis-pubsub" or "memory"), on REDIS_URL or on the
    master the Sentinels name (nurcrm_realtime.redisconn). One host for every app host: channels_redis shards
    by position in the hosts list, so every app host must be given the same one.

    redis-py 8 reads with a 5 s socket timeout by default: with it, every consumer whose
    socket stays idle dies of "Timeout reading from Redis" when BZPOPMIN's 5 s run out.
    The read timeout must outlast the blocking read. After Redis restarts, every pooled
    connection is dead: without a retry on ConnectionError the first use of each one fails
    (a 500 at the next handshake), so a command is retried on a fresh connection. Each
    handshake's group_add takes a pooled connection: redis-py's default pool of 100 answered a
    burst of handshakes with MaxConnectionsError (HTTP 500), so the pool is larger.
    """
    if backend == "memory":
        return {"default": {"BACKEND": BACKENDS[backend], "CONFIG": {}}}
    if socket_timeout <= BLOCKING_READ:
        raise ValueError(f"the Redis read timeout ({socket_timeout} s) must exceed the {BLOCKING_READ} s blocking read")
    host = redisconn.host(
        redis_url,
        sentinels,
        master_name,
        sentinel_password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5,
        retry=Retry(ExponentialBackoff(cap=1, base=0.05), 3),
        retry_on_error=[RedisConnectionError],
        max_connections=max_connections,
    )
    config = {"hosts": [host], "prefix": prefix}
    if backend == "redis":
        config.update(capacity=capacity, group_expiry=group_expiry)
    return {"default": {"BACKEND": BACKENDS[backend], "CONFIG": config}}
