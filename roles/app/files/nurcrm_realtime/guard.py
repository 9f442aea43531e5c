"""Each worker's watch over its open sockets' right to stay open: one task per event loop, no task
or timer per socket.

The project's middleware checks a socket's token and user once, at the handshake, and puts the user
in the scope (`scope["user"]`) with the token's expiry (`scope["auth_expires"]`, a Unix time; without
it only the lifetime applies). From then on a guard
per event loop (a worker has one) runs while the loop has sockets, every WS_AUTH_RECHECK_INTERVAL
seconds (1):

- A socket whose token has expired is closed with 4401; its client reconnects with a fresh token.
- A socket open for WS_MAX_LIFETIME seconds is closed with 4408, whatever its token.
- The users of all its sockets are read in ONE query. A socket is closed with 4401 when its user
  is gone, inactive, or has another password hash, or another value of a field named in
  WS_GUARD_USER_FIELDS (the reference project: its company and branch), than the socket saw at the
  handshake. The database is the witness, so a change made any way (the admin, save(),
  QuerySet.update(), raw SQL, another program) closes the user's sockets within a second or two;
  a model signal would miss all but the first two.

It also counts each user's open sockets over all workers, to refuse one more than
WS_MAX_SOCKETS_PER_USER (4429, see `admit`): with a Redis layer, in the sorted set
`<prefix>:nurcrm:sockets:<user id>` of the sockets' channel names, each scored with a deadline
that the guard pushes on while the socket is open, so that the sockets of a killed worker drop
out within a minute. With the in-memory layer (one process: tests) the count is the process's own.

What it costs each socket: two plain attributes (`closes_at`, `close_code`) and its place in
the loop's set. Database or Redis unreachable: one warning, the sockets stay open (expiry and
lifetime still close them), the polls go on.
"""

import asyncio
import collections
import logging
import math
import time

from channels.db import database_sync_to_async
from channels_redis.utils import decode_hosts
from django.contrib.auth import get_user_model
from redis import asyncio as aioredis

from nurcrm_realtime import conf, metrics, redisconn

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401  # the token expired, or the user lapsed: reconnect with a fresh token
CLOSE_LIFETIME = 4408  # open for WS_MAX_LIFETIME: reconnect
CLOSE_TOO_MANY_SOCKETS = 4429  # the user has WS_MAX_SOCKETS_PER_USER open already
REASONS = {CLOSE_UNAUTHORIZED: "token expired", CLOSE_LIFETIME: "socket lifetime reached"}

# A counted socket outlives its worker by this long at most; the guard renews it three times as often.
COUNT_TTL = 60
POOL_SIZE = 4  # Redis connections of a worker's count: one EVALSHA a handshake, well under a millisecond

_guards = {}  # event loop -> Guard


async def admit(consumer):
    """Count the consumer's socket against its user's and watch it from now on; False (and
    neither) when the user has WS_MAX_SOCKETS_PER_USER sockets open already."""
    guard = _guards.get(asyncio.get_running_loop()) or Guard(consumer)
    user = consumer.scope["user"]
    guard.busy += 1  # the guard, and its Redis connection, stay while this waits
    try:
        admitted = await guard.count.admit(user.pk, consumer.channel_name)
    finally:
        guard.busy -= 1
    if admitted:
        lifetime_ends = time.time() + conf.WS_MAX_LIFETIME
        expires = consumer.scope.get("auth_expires", math.inf)
        consumer.closes_at, consumer.close_code = (
            (expires, CLOSE_UNAUTHORIZED) if expires <= lifetime_ends else (lifetime_ends, CLOSE_LIFETIME)
        )
        guard.sockets.add(consumer)
    guard.stop_if_idle()
    return admitted


async def forget(consumer):
    """The consumer is gone: uncount its socket. The last one to go stops its loop's guard."""
    guard = _guards.get(asyncio.get_running_loop())
    if guard is None or consumer not in guard.sockets:
        return
    guard.sockets.discard(consumer)
    guard.busy += 1
    try:
        await guard.count.release(consumer.scope["user"].pk, consumer.channel_name)
    finally:
        guard.busy -= 1
        guard.stop_if_idle()


@database_sync_to_async
def _users(ids):
    """{id: (is_active, password, *WS_GUARD_USER_FIELDS)} of the users that still exist."""
    fields = ("pk", "is_active", "password", *conf.WS_GUARD_USER_FIELDS)
    rows = get_user_model().objects.filter(pk__in=ids).values_list(*fields)
    return {pk: rest for pk, *rest in rows}


def _lapsed(user, row):
    """Why a socket of `user` (as loaded at its handshake) may no longer stay open, or None."""
    if row is None:
        return "user deleted"
    is_active, password, *fields = row
    if not is_active:
        return "user deactivated"
    if password != user.password:
        return "password changed"
    names = conf.WS_GUARD_USER_FIELDS
    changed = [name for name, value in zip(names, fields, strict=True) if value != getattr(user, name)]
    if changed:
        return f"user's {' and '.join(changed)} changed"
    return None


class Guard:
    def __init__(self, consumer):
        self.loop = asyncio.get_running_loop()
        self.interval = conf.WS_AUTH_RECHECK_INTERVAL
        self.sockets = set()
        self.busy = 0  # admissions and releases under way
        self.count = _count_for(consumer)
        self.renew_at = self.loop.time() + COUNT_TTL / 3
        self.unreachable = set()  # "database", "redis": warned once until they answer again
        self.closing = set()  # the closes under way: tasks, referenced until done
        self.task = self.loop.create_task(self.run())
        _guards[self.loop] = self

    def stop_if_idle(self):
        if not self.sockets and not self.busy and _guards.get(self.loop) is self:
            del _guards[self.loop]
            self.task.cancel()

    async def run(self):
        try:
            while True:
                await asyncio.sleep(self.interval)
                await self.sweep()
        finally:
            await self.count.aclose()

    async def sweep(self):
        now = time.time()
        lapsed = collections.defaultdict(list)  # (code, reason, user id) -> consumers
        for consumer in self.sockets:
            if consumer.closes_at <= now and not consumer.closing:
                code = consumer.close_code
                lapsed[code, REASONS[code], consumer.scope["user"].pk].append(consumer)
        ending = self.close(lapsed)
        # Taken before the query: every socket in it loaded its user before the query reads the rows.
        sockets = [consumer for consumer in self.sockets if not consumer.closing and consumer not in ending]
        if sockets:
            ids = {consumer.scope["user"].pk for consumer in sockets}
            rows = await self.attempt("database", "open sockets' users are not rechecked", _users(ids))
            if rows is not None:
                lapsed.clear()
                for consumer in sockets:
                    user = consumer.scope["user"]
                    reason = _lapsed(user, rows.get(user.pk))
                    if reason and not consumer.closing:
                        lapsed[CLOSE_UNAUTHORIZED, reason, user.pk].append(consumer)
                self.close(lapsed)
        if self.loop.time() >= self.renew_at:
            self.renew_at = self.loop.time() + COUNT_TTL / 3
            await self.attempt("redis", "sockets per user are not renewed", self.count.renew(self.sockets))

    def close(self, lapsed):
        """Close each socket in a task of its own: one whose client stopped reading may wait to
        send its close frame, and must not hold up the others or the next sweep. The consumers closed."""
        ending = set()
        for (code, reason, user_id), consumers in lapsed.items():
            logger.info("closing %d socket(s) of user %s with %d: %s", len(consumers), user_id, code, reason)
            for consumer in consumers:
                task = asyncio.ensure_future(consumer.shut(code, reason))
                self.closing.add(task)
                task.add_done_callback(self.closing.discard)
                ending.add(consumer)
        return ending

    async def attempt(self, what, meanwhile, awaitable):
        """The awaitable's result, or None when it failed: warned once until `what` answers again."""
        try:
            result = await awaitable
        except Exception as exc:
            if what == "redis":
                metrics.REDIS_ERRORS.labels(where="ws_guard").inc()
            if what not in self.unreachable:
                logger.warning("websocket guard: the %s failed (%r); %s meanwhile", what, exc, meanwhile)
            self.unreachable.add(what)
            return None
        if what in self.unreachable:
            logger.info("websocket guard: the %s answers again", what)
            self.unreachable.discard(what)
        return result


def _count_for(consumer):
    config = conf.layer_config(consumer.channel_layer_alias)
    if not config.get("hosts"):
        return LocalCount()
    return RedisCount(decode_hosts(config["hosts"])[0], config.get("prefix", "asgi"))


class LocalCount:
    """The in-memory layer's count: this process's sockets are all the sockets there are."""

    def __init__(self):
        self.open = collections.Counter()

    async def admit(self, user_id, channel):
        if self.open[user_id] >= conf.WS_MAX_SOCKETS_PER_USER:
            return False
        self.open[user_id] += 1
        return True

    async def release(self, user_id, channel):
        self.open[user_id] -= 1
        if self.open[user_id] <= 0:
            del self.open[user_id]

    async def renew(self, consumers):
        pass

    async def aclose(self):
        pass


# KEYS[1]: the user's sorted set. ARGV: the channel, the limit, the TTL. Redis's own clock
# scores every entry, so the workers' clocks never disagree.
ADMIT = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
# KEYS: the users' sorted sets. ARGV: the TTL, then for each key the number of its channels still open
# and the channels. One call for all of a worker's sockets; re-adds those a Redis restart lost.
RENEW = """
local ttl = tonumber(ARGV[1])
local deadline = tonumber(redis.call('TIME')[1]) + ttl
local at = 2
for k = 1, #KEYS do
  local last = at + tonumber(ARGV[at])
  for i = at + 1, last do
    redis.call('ZADD', KEYS[k], deadline, ARGV[i])
  end
  redis.call('EXPIRE', KEYS[k], ttl)
  at = last + 1
end
return #KEYS
"""


class RedisCount:
    """Every worker's sockets, counted in the channel layer's Redis."""

    def __init__(self, host, prefix):
        # The layer's own connection settings (address, timeouts, retries), as nurcrm_realtime.layer_watch, but
        # a few connections, waited for: a burst of handshakes would open one each, and keep them all.
        pool = redisconn.async_pool(host, blocking=True, max_connections=POOL_SIZE)
        self.redis = aioredis.Redis(connection_pool=pool)
        self.prefix = f"{prefix}:nurcrm:sockets:"
        self.admit_script = self.redis.register_script(ADMIT)
        self.renew_script = self.redis.register_script(RENEW)
        self.warned = False

    async def admit(self, user_id, channel):
        key, limit = f"{self.prefix}{user_id}", conf.WS_MAX_SOCKETS_PER_USER
        try:
            return bool(await self.admit_script(keys=[key], args=[channel, limit, COUNT_TTL]))
        except Exception as exc:
            metrics.REDIS_ERRORS.labels(where="ws_guard").inc()
            # Fail open: without Redis the socket gets no events anyway, and it is not refused for it.
            if not self.warned:
                logger.warning("websocket guard: Redis failed (%r); sockets per user are not counted meanwhile", exc)
            self.warned = True
            return True

    async def release(self, user_id, channel):
        try:
            await self.redis.zrem(f"{self.prefix}{user_id}", channel)
        except Exception as exc:  # its entry expires within COUNT_TTL
            logger.debug("could not uncount socket %s: %r", channel, exc)

    async def renew(self, consumers):
        channels = collections.defaultdict(list)
        for consumer in consumers:
            channels[consumer.scope["user"].pk].append(consumer.channel_name)
        if not channels:
            return
        args = [COUNT_TTL]
        for names in channels.values():
            args += [len(names), *names]
        # No pipeline: it would check its scripts with SCRIPT EXISTS, which the app's Redis user may not run.
        await self.renew_script(keys=[f"{self.prefix}{user_id}" for user_id in channels], args=args)
        self.warned = False

    async def aclose(self):
        await self.redis.aclose()
