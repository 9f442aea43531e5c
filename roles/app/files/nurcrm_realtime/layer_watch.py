"""Each worker's check that its link to the channel layer holds; its consumers resync when it did not.

Production Redis persists nothing (save "", no AOF), and the layer's messages travel only while a
worker is connected. Whatever interrupts that link may lose events without closing a socket:
connected but stale, or deaf. A restart, a FLUSHALL or a failover to an empty replica drops every
group of RedisChannelLayer; a failover to a replica that lags loses the last writes; the pub/sub
layer loses whatever is published while its subscription reconnects. RedisChannelLayer also drops
a member after group_expiry (a day), so a screen open longer goes deaf as well.

One watcher per event loop (a worker process has one) runs while the loop has consumers:

- Every CHANNEL_LAYER_WATCH_INTERVAL seconds one atomic command, `SET <prefix>:nurcrm:alive:<id>
  1 EX <ttl> GET`, on a connection of the watcher's own, refreshes the worker's sentinel key and tells
  whether it was still there.
- Every consumer gets {"type": "layer.reset"}, rejoins its group and sends its client a fresh snapshot
  (its tables, each with its version) when the link was interrupted in any way:
  * the key is gone: Redis lost its data since the last poll (a restart, a flush);
  * the watcher's own connection had to be made again: Redis went away or restarted, a failover moved
    the master (the Sentinels disconnect the clients of a demoted one), the network broke;
  * with the pub/sub layer, its subscription connection had to be made again (`interrupted()`, from
    nurcrm_realtime.layers): what was published meanwhile is lost.
  The reset waits, with the pub/sub layer, until PUBSUB NUMSUB shows the consumer's channel subscribed
  again (a reset published before that would be lost too), so the snapshot is read after the worker
  receives the group's events again: nothing falls between the two. Only an outage longer than the
  key's TTL (a minute) resyncs once more, which is harmless.
- Every CHANNEL_LAYER_REJOIN_INTERVAL seconds every consumer gets {"type": "layer.rejoin"} and
  re-adds itself, before group_expiry drops it.

Both travel through the layer to the consumer's own channel, so the consumer handles them in its
dispatch order: between two events, never alongside one. What the events' senders keep meanwhile is theirs
(the reference project keeps an outbox); its client drops an event older than what it shows (docs/protocol.md).

Redis unreachable: one warning, the polls go on, the worker never stops for it.
"""

import asyncio
import contextlib
import logging
import math
import uuid

from channels.exceptions import ChannelFull
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import create_pool, decode_hosts
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from nurcrm_realtime import conf, metrics

logger = logging.getLogger(__name__)

RESET = {"type": "layer.reset"}
REJOIN = {"type": "layer.rejoin"}

_watches = {}  # (event loop, channel layer) -> LayerWatch


async def watch(consumer):
    """Watch Redis for `consumer` from now on; return once the watcher has polled once.

    Called before the consumer joins its group: a loss between joining and the first poll,
    which only plants the sentinel, would go unseen."""
    config = conf.layer_config(consumer.channel_layer_alias)
    if not config.get("hosts"):
        return  # the in-memory layer: nothing outside this process to lose
    key = (asyncio.get_running_loop(), consumer.channel_layer)
    if key not in _watches:
        host = decode_hosts(config["hosts"])[0]  # nurcrm_realtime.layers configures one Redis
        _watches[key] = LayerWatch(consumer.channel_layer, host, config.get("prefix", "asgi"))
    watcher = _watches[key]
    watcher.consumers.add(consumer)
    await watcher.polled.wait()


def interrupted(layer):
    """The link of this loop's `layer` to Redis was made again (nurcrm_realtime.layers): its consumers resync."""
    watcher = _watches.get((asyncio.get_running_loop(), layer))
    if watcher is not None:
        watcher.interrupted = "the layer's subscription was made again"


def forget(consumer):
    """The consumer is gone; the last one to go stops its loop's watcher."""
    key = (asyncio.get_running_loop(), getattr(consumer, "channel_layer", None))
    watcher = _watches.get(key)
    if watcher is None:
        return
    watcher.consumers.discard(consumer)
    watcher.to_reset.discard(consumer)
    if not watcher.consumers:
        del _watches[key]
        watcher.task.cancel()


class LayerWatch:
    def __init__(self, layer, host, prefix):
        self.layer = layer
        self.interval = conf.CHANNEL_LAYER_WATCH_INTERVAL
        self.rejoin_every = conf.CHANNEL_LAYER_REJOIN_INTERVAL
        # The layer's own connection settings (address, timeouts, retries): the same Redis and database.
        # One connection, of its own: making it again is an interruption (`reconnected`).
        self.redis = aioredis.Redis(connection_pool=create_pool(host), single_connection_client=True)
        self.interrupted = None  # why the consumers resync at the next poll, if they must
        self.listening = False
        self.key = f"{prefix}:nurcrm:alive:{uuid.uuid4().hex}"
        # Outlives ten missed polls; a stopped worker's key is gone within a minute or so.
        self.ttl = max(60, math.ceil(10 * self.interval))
        self.consumers, self.to_reset = set(), set()
        self.polled = asyncio.Event()
        self.unreachable = False
        self.rejoin_at = asyncio.get_running_loop().time() + self.rejoin_every
        self.task = asyncio.create_task(self.run())

    async def run(self):
        try:
            first = True
            while True:
                await self.poll(first)
                first = False
                self.polled.set()
                await asyncio.sleep(self.interval)
        finally:
            await self.redis.aclose()

    async def poll(self, first):
        """One round; any failure is logged once per outage and retried at the next poll."""
        try:
            await self.check(first)
        except Exception as exc:
            metrics.REDIS_ERRORS.labels(where="layer_watch").inc()
            if not self.unreachable:
                logger.warning(
                    "channel layer watch: Redis unreachable (%r); polling on every %s s",
                    exc,
                    self.interval,
                    exc_info=not isinstance(exc, RedisError),  # a traceback for what is not Redis's doing
                )
            self.unreachable = True
            return
        if self.unreachable:
            logger.info("channel layer watch: Redis answers again")
        self.unreachable = False

    def reconnected(self, connection):
        """redis-py made the watcher's connection again."""
        self.interrupted = "the connection to Redis was made again"

    async def check(self, first):
        connection = self.redis.connection
        if connection is not None and not connection.is_connected:
            # Made again here, through the Sentinels: redis-py 8 reconnects a lone client's connection inside a
            # command to the address it had, so under Sentinel it would knock on the old master forever.
            await connection.connect()
        # The first poll plants the key; any later one finds it, after a failed poll too, unless Redis lost it.
        if await self.redis.set(self.key, 1, ex=self.ttl, get=True) is None and not first:
            self.interrupted = "Redis lost the channel layer's data (a restart or a flush)"
        if not self.listening:  # from the first connection on: the next one is an interruption
            self.redis.connection.register_connect_callback(self.reconnected)
            self.listening = True
        if self.interrupted:
            logger.warning("%s: %d socket(s) rejoin and resync", self.interrupted, len(self.consumers))
            metrics.LAYER_RESETS.inc()
            self.to_reset |= self.consumers
            self.interrupted = None
        now = asyncio.get_running_loop().time()
        if now >= self.rejoin_at:
            await self.tell(list(self.consumers), REJOIN)
            self.rejoin_at = now + self.rejoin_every
        reset = await self.tell(await self.resubscribed(list(self.to_reset)), RESET)
        self.to_reset.difference_update(reset)

    async def resubscribed(self, consumers):
        """With the pub/sub layer, those whose channel this worker subscribes to again: a reset
        published before redis-py resubscribed would be lost."""
        if not consumers or not isinstance(self.layer, RedisPubSubChannelLayer):
            return consumers
        counts = dict(await self.redis.pubsub_numsub(*(consumer.channel_name for consumer in consumers)))
        return [consumer for consumer in consumers if counts.get(consumer.channel_name.encode())]

    async def tell(self, consumers, message):
        """Send `message` to each consumer's own channel; return those it reached."""
        told = []
        for consumer in consumers:
            with contextlib.suppress(ChannelFull):  # a backlog of `capacity` messages: again at the next poll
                await self.layer.send(consumer.channel_name, message)
                told.append(consumer)
        return told
