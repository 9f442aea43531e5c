"""Staff screens as the documented client keeps them (README, "What a client sees"), under a steady stream of
table events: what the deploy, rollback and reconnect-storm tests (molecule/cluster/tests/test_6_rolling.py)
measure and `python -m bench rolling` reports.

A screen shows its last snapshot (the `connection_established` hello, which also names the release that
served it) plus every `table_status_changed` after it. When its socket closes (1012 when a host restarts,
1013 when a worker sheds a storm, 1006 when the connection is cut) or a handshake fails, it reconnects after
a random delay in [0, min(CAP_S, BASE_S * 2**attempt)] ("full jitter"); `attempt` counts the failures since
its last hello. The hello replaces the whole picture, so nothing missed while away stays missed.

Sockets spread over loopback source addresses (bench.clients.source_addresses), so nginx's per-address
limits see many clients, as they would in a cafe chain.
"""

import asyncio
import random
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from bench.clients import classify, source_addresses
from doctor.site import receive, request, socket_to

BASE_S = 0.25  # the first reconnect waits up to this long
CAP_S = 8.0  # and no wait is ever longer
PER_ADDRESS = 10  # sockets per loopback source address
EVENT_EVERY_S = 0.2


def backoff(attempt, rng=random):
    """Seconds to wait before reconnect number `attempt` (0 for the first after a hello): full jitter."""
    return rng.uniform(0, min(CAP_S, BASE_S * 2**attempt))


@dataclass
class Screen:
    index: int
    source: str
    tables: dict = field(default_factory=dict)
    release: str | None = None
    hellos: int = 0
    closes: Counter = field(default_factory=Counter)  # close codes the server sent
    failures: Counter = field(default_factory=Counter)  # handshakes that failed, by why
    gaps: list = field(default_factory=list)  # seconds from losing the socket to the next hello
    connected: bool = False

    def apply(self, message):
        if message["type"] in ("connection_established", "tables_snapshot"):
            self.tables = {t["id"]: t["status"] for t in message["tables"]}
        elif message["type"] == "table_status_changed":
            self.tables[message["data"]["id"]] = message["data"]["status"]

    async def keep(self, site, token, stop, rng):
        """Connected until `stop` is set: reconnecting with backoff whenever the socket is lost."""
        attempt, lost_at = 0, None
        while not stop.is_set():
            try:
                async with socket_to(site, f"token={token}", local_addr=(self.source, 0)) as ws:
                    hello = await receive(ws, timeout=10)
                    if hello["type"] != "connection_established":
                        raise RuntimeError(f"first frame {hello['type']}")
                    self.apply(hello)
                    self.release, self.hellos, self.connected, attempt = hello.get("release"), self.hellos + 1, True, 0
                    if lost_at is not None:
                        self.gaps.append(time.monotonic() - lost_at)
                        lost_at = None
                    while not stop.is_set():
                        try:
                            self.apply(await receive(ws, timeout=0.5))
                        except TimeoutError:
                            continue
                    return
            except ConnectionClosed as closed:
                self.closes[closed.rcvd.code if closed.rcvd else 1006] += 1
            except Exception as error:  # noqa: BLE001 (every way a handshake fails is counted, by kind)
                self.failures[classify(error)] += 1
            self.connected = False
            lost_at = lost_at if lost_at is not None else time.monotonic()
            await asyncio.sleep(backoff(attempt, rng))
            attempt += 1


@dataclass
class Load:
    """`count` screens of one company and an event every EVENT_EVERY_S: a REST PATCH of a table's status."""

    site: object
    token: str
    count: int
    first_address: int = 0
    screens: list = field(default_factory=list)
    events_sent: int = 0
    event_errors: Counter = field(default_factory=Counter)

    async def __aenter__(self):
        self.stop, self.quiet = asyncio.Event(), asyncio.Event()
        rng = random.Random(self.count)
        sources = source_addresses(self.count, PER_ADDRESS, self.first_address)
        self.screens = [Screen(i, source) for i, source in enumerate(sources)]
        self.tasks = [asyncio.create_task(s.keep(self.site, self.token, self.stop, rng)) for s in self.screens]
        self.tables = await self.database()
        self.driver = asyncio.create_task(self.drive())
        await self.until_connected(60)
        return self

    async def __aexit__(self, *exc):
        self.quiet.set()
        self.stop.set()
        await asyncio.gather(self.driver, *self.tasks, return_exceptions=True)

    async def database(self):
        """Each table's status as the API reads it from the database."""
        _, tables = await asyncio.to_thread(request, self.site, "GET", "/api/cafe/tables/", self.token)
        tables = tables["results"] if isinstance(tables, dict) else tables
        return {t["id"]: t["status"] for t in tables}

    async def drive(self):
        statuses = ["occupied", "reserved", "free"]
        ids = sorted(self.tables)
        while not self.quiet.is_set():
            table = ids[self.events_sent % len(ids)]
            status = statuses[(self.events_sent // len(ids)) % len(statuses)]
            try:
                await asyncio.to_thread(
                    request, self.site, "PATCH", f"/api/cafe/tables/{table}/", self.token, {"status": status}
                )
            except urllib.error.HTTPError as refused:
                self.event_errors[f"http {refused.code}"] += 1
            except OSError as error:
                self.event_errors[classify(error)] += 1
            self.events_sent += 1
            await asyncio.sleep(EVENT_EVERY_S)

    async def until_connected(self, timeout):
        deadline = time.monotonic() + timeout
        while not all(s.connected for s in self.screens):
            if time.monotonic() > deadline:
                down = [s.index for s in self.screens if not s.connected]
                raise AssertionError(f"{len(down)} screens not connected after {timeout} s: {down[:10]}")
            await asyncio.sleep(0.1)

    async def settle(self, timeout=30):
        """Stop the events, let every screen reconnect and the last event arrive: the database's tables and the
        screens that do not show them (index -> what it shows)."""
        self.quiet.set()
        await self.driver
        await self.until_connected(timeout)
        truth = await self.database()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stale = {s.index: s.tables for s in self.screens if s.tables != truth}
            if not stale:
                break
            await asyncio.sleep(0.2)
        return truth, stale

    def summary(self):
        gaps = [max(s.gaps) for s in self.screens if s.gaps]
        return {
            "screens": len(self.screens),
            "events_sent": self.events_sent,
            "event_errors": dict(self.event_errors),
            "closes": dict(sum((s.closes for s in self.screens), Counter())),
            "handshake_failures": dict(sum((s.failures for s in self.screens), Counter())),
            "reconnected": sum(1 for s in self.screens if s.hellos > 1),
            "longest_gap_s": round(max(gaps), 2) if gaps else 0.0,
            "releases": dict(Counter(s.release for s in self.screens)),
        }
