"""Sockets spread back over the app hosts after a roll, a host's return or a new host.

nginx sends a new socket to the app host with the fewest (least_conn), but an open socket stays where
it is: after a host is rolled, restarted or added, the others keep what they took meanwhile. So every
worker (nurcrm_realtime.asgi's lifespan runs `run()`), every WS_REBALANCE_INTERVAL seconds:

- writes its open sockets to the Redis hash `<prefix>:nurcrm:sockets`, field "<host> <pid>", value
  "<sockets> <seen> <started>" (Redis's own clock, the same for every host), and reads every worker's;
  a worker not seen for three intervals is gone and its field removed (one that stops removes its own);
- counts the hosts that have run for WS_REBALANCE_GRACE seconds (a host the roll has just started is
  still checked before it returns to nginx's upstream) and that it has heard from since its last round
  (a killed host's fields stay a while, saying nothing new): sockets closed for them would come back;
- when its host holds more than the fair share (the counted hosts' sockets over their number) by more
  than WS_REBALANCE_TOLERANCE percent and one socket in two rounds in a row, with no more sockets than the
  round before (a worker counts the others' sockets up to an interval late: a burst of new sockets, or the
  ones it has just moved, not yet counted where they landed), closes its part of the surplus with 1012 (service
  restart): the host closes at most WS_REBALANCE_RATE sockets a second, each worker in proportion to its
  sockets, one at a time, spread over the interval. The documented client reconnects after a jittered
  backoff (docs/protocol.md), and nginx gives it a host with fewer: no storm, and a client is away for
  about as long as a reconnect takes;
- after a move, only looks until the hosts' sockets add up again to their total before it, for at most
  LANDING_ROUNDS rounds: while moved clients reconnect the total is short, and so is the fair share it gives.

A host whose closed sockets land nowhere else (the others out of nginx's upstream, say) makes no
progress: a worker that has closed sockets for STALLED_ROUNDS rounds while the other hosts gained none
pauses for PAUSE_ROUNDS rounds and says so. One app host, or the in-memory layer: nothing to do.
"""

import asyncio
import logging
import math
import os
import random
from dataclasses import dataclass

from channels_redis.utils import create_pool, decode_hosts
from redis import asyncio as aioredis

from nurcrm_realtime import conf, metrics

logger = logging.getLogger(__name__)

CLOSE_MOVE = 1012  # service restart: reconnect (to a host with fewer sockets)
STALE_ROUNDS = 3  # a worker not seen for this many intervals is gone
STALLED_ROUNDS = 4
LANDING_ROUNDS = 5  # rounds a worker waits at most for the sockets it moved to land (clients that never return)
PAUSE_ROUNDS = 30

_sockets = set()  # this process's open sockets (nurcrm_realtime.consumer adds and removes them)


def opened(consumer):
    _sockets.add(consumer)


def closed(consumer):
    _sockets.discard(consumer)


@dataclass(frozen=True)
class Worker:
    host: str
    pid: int
    sockets: int
    seen: float
    started: float


def parse(fields):
    """The hash's fields ({b"<host> <pid>": b"<sockets> <seen> <started>"}) as Workers; malformed ones skipped."""
    workers = []
    for name, value in fields.items():
        try:
            host, pid = (name.decode() if isinstance(name, bytes) else name).rsplit(" ", 1)
            sockets, seen, started = (value.decode() if isinstance(value, bytes) else value).split()
            workers.append(Worker(host, int(pid), int(sockets), float(seen), float(started)))
        except ValueError:
            continue
    return workers


def heard_from(workers, before, host):
    """The workers of `host` and of the hosts heard from since the last round (`before`: each host's latest
    `seen` then), and each host's latest `seen` now. A host that was killed could not remove its fields: they
    stay for STALE_ROUNDS intervals, but say nothing new, and sockets closed for it would come back."""
    latest = {}
    for worker in workers:
        latest[worker.host] = max(latest.get(worker.host, worker.seen), worker.seen)
    heard = [w for w in workers if w.host == host or latest[w.host] > before.get(w.host, float("-inf"))]
    return heard, latest


@dataclass(frozen=True)
class Spread:
    """The counted hosts' sockets ({host: sockets}) and this worker's part of its host's surplus."""

    hosts: dict
    fair: float
    to_close: int

    def __str__(self):
        return ", ".join(f"{host} {count}" for host, count in sorted(self.hosts.items()))


def plan(workers, me, now, interval, rate, tolerance, grace):
    """How many of its sockets worker `me` closes this round, and the spread it sees. `workers` are the
    live ones (`me` among them), `now` is Redis's clock, `tolerance` a percentage."""
    sockets, up_since = {}, {}
    for worker in workers:
        sockets[worker.host] = sockets.get(worker.host, 0) + worker.sockets
        up_since[worker.host] = min(up_since.get(worker.host, worker.started), worker.started)
    counted = {host: count for host, count in sockets.items() if now - up_since[host] >= grace}
    fair = sum(counted.values()) / len(counted) if counted else 0.0
    held = counted.get(me.host)
    if held is None or len(counted) < 2 or held <= fair * (1 + tolerance / 100) + 1:
        return Spread(counted, fair, 0)
    budget = min(math.floor(held - fair), rate * interval)
    # The host's budget shared by its workers in proportion to their sockets, to the socket (largest
    # remainders): every worker computes the same shares from the same counts.
    mates = sorted((w for w in workers if w.host == me.host), key=lambda w: w.pid)
    exact = {w.pid: budget * w.sockets / held for w in mates}
    shares = {pid: math.floor(value) for pid, value in exact.items()}
    by_remainder = sorted(mates, key=lambda w: (shares[w.pid] - exact[w.pid], w.pid))
    for worker in by_remainder[: budget - sum(shares.values())]:
        shares[worker.pid] += 1
    return Spread(counted, fair, min(me.sockets, shares[me.pid]))


class Guard:
    """One worker's brake: it moves sockets only for a surplus seen in two rounds in a row, its host not
    growing, without a move of its own between them (every worker counts the others' sockets up to an
    interval late: a burst of new sockets, or the ones it has just moved), waits for the sockets it moved to
    land before it judges again (while they reconnect, the total is short and the fair share too low: a host
    would close more than its surplus), and stops moving those that land nowhere else."""

    def __init__(self, host, interval):
        self.host, self.interval = host, interval
        self.others = None  # the other hosts' sockets at the last round
        self.surplus_seen = False  # the last round planned closes too, and this host was not growing
        self.held_before = None  # this host's sockets at the last round
        self.stalled = 0  # rounds this worker closed sockets in while the others gained none
        self.paused = 0  # rounds left to sit out
        self.landing = None  # (the hosts' total sockets when this worker last moved some, rounds left to wait)

    def allow(self, spread):
        """How many of the planned closes to make this round."""
        total = sum(spread.hosts.values())
        if self.landing is not None:
            before, rounds = self.landing
            self.landing = (before, rounds - 1) if total < before and rounds > 0 else None
            if self.landing is not None:
                self.surplus_seen, self.held_before = False, spread.hosts.get(self.host, 0)
                return 0
        others = sum(count for host, count in spread.hosts.items() if host != self.host)
        if (self.others is not None and others > self.others) or not spread.to_close:
            self.stalled = 0
        self.others = others
        # A host still taking new sockets is in a burst that the others' counts may not show yet.
        held = spread.hosts.get(self.host, 0)
        growing = self.held_before is not None and held > self.held_before
        self.held_before = held
        seen_before, self.surplus_seen = self.surplus_seen, bool(spread.to_close) and not growing
        if not (seen_before and self.surplus_seen):
            return 0
        if self.paused:
            self.paused -= 1
            return 0
        if spread.to_close and self.stalled >= STALLED_ROUNDS:
            logger.warning(
                "rebalance: %d rounds of closing sockets here and the other app hosts got none (%s): is one "
                "out of nginx's upstream? Pausing for %d s",
                self.stalled,
                spread,
                PAUSE_ROUNDS * self.interval,
            )
            self.stalled, self.paused = 0, PAUSE_ROUNDS
            return 0
        if spread.to_close:
            self.stalled += 1
            # What it closes lands on the others' counts once the clients reconnect: until then it only looks.
            self.surplus_seen, self.landing = False, (total, LANDING_ROUNDS)
        return spread.to_close


class Balancer:
    def __init__(self, host):
        self.interval = conf.WS_REBALANCE_INTERVAL
        self.redis = aioredis.Redis(connection_pool=create_pool(host))
        self.key = f"{conf.prefix()}:nurcrm:sockets"
        self.field = f"{conf.APP_HOST} {os.getpid()}"
        self.started = None
        self.heard = {}  # each host's latest `seen` at the last round
        self.guard = Guard(conf.APP_HOST, self.interval)
        self.closing = None  # the task closing this round's sockets
        self.unreachable = False

    async def round(self):
        """Say what this worker holds, read the others: how many of its sockets to close this round."""
        seconds, micros = await self.redis.time()
        now = seconds + micros / 1e6
        self.started = self.started or now
        me = Worker(conf.APP_HOST, os.getpid(), len(_sockets), now, self.started)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key, self.field, f"{me.sockets} {me.seen} {me.started}")
            pipe.expire(self.key, STALE_ROUNDS * 10 * self.interval)
            pipe.hgetall(self.key)
            *_, fields = await pipe.execute()
        workers = parse(fields)
        gone = [f"{w.host} {w.pid}" for w in workers if w.seen < now - STALE_ROUNDS * self.interval]
        if gone:
            await self.redis.hdel(self.key, *gone)
        live, self.heard = heard_from(
            [w for w in workers if w.seen >= now - STALE_ROUNDS * self.interval], self.heard, me.host
        )
        spread = plan(
            live,
            me,
            now,
            self.interval,
            conf.WS_REBALANCE_RATE,
            conf.WS_REBALANCE_TOLERANCE,
            conf.WS_REBALANCE_GRACE,
        )
        count = self.guard.allow(spread)
        if count:
            logger.info(
                "rebalance: sockets per app host %s (fair share %.0f): this worker closes %d of its %d with 1012",
                spread,
                spread.fair,
                count,
                me.sockets,
            )
        return count

    async def close(self, count):
        """Close `count` of this worker's sockets with 1012, one at a time, over this round."""
        chosen = random.sample(list(_sockets), min(count, len(_sockets)))
        for consumer in chosen:
            metrics.REBALANCE_CLOSES.inc()
            await consumer.shut(CLOSE_MOVE, "rebalancing: reconnect")
            await asyncio.sleep(self.interval / len(chosen))

    async def run(self):
        try:
            while True:
                try:
                    count = await self.round()
                    if self.unreachable:
                        logger.info("rebalance: Redis answers again")
                    self.unreachable = False
                except Exception as error:  # noqa: BLE001 (Redis away: the sockets stay, the rounds go on)
                    count = 0
                    if not self.unreachable:
                        logger.warning("rebalance: Redis unreachable (%r); trying every %s s", error, self.interval)
                    self.unreachable = True
                if count:  # beside the rounds, which go on saying what this worker holds
                    self.closing = asyncio.create_task(self.close(count))
                await asyncio.sleep(self.interval)
        finally:
            if self.closing is not None:
                self.closing.cancel()
            # A worker that stops leaves the count at once, rather than after STALE_ROUNDS intervals.
            try:
                await asyncio.wait_for(self.redis.hdel(self.key, self.field), 1)
            except Exception as error:  # noqa: BLE001
                logger.debug("rebalance: could not remove %s: %r", self.field, error)
            await self.redis.aclose()


async def run():
    """Each worker's part, from its start to its end (nurcrm_realtime.asgi's lifespan)."""
    config = conf.layer_config("default")
    if not config.get("hosts"):
        return  # the in-memory layer: one process, nothing to spread
    await Balancer(decode_hosts(config["hosts"])[0]).run()
