"""Staff screens as the documented client keeps them (docs/protocol.md), under a steady stream of table
events: what the deploy, rollback, reconnect-storm, failover and balance tests (molecule/cluster/tests)
measure and `python -m bench rolling` reports.

A screen shows, for each table, the newest state it was told: a snapshot (the `connection_established`
hello, which also names the release that served it, or a `tables_snapshot` after the server's link to
Redis was interrupted) gives every table, a `table_status_changed` one. Each carries the table's version;
a row or event older than what the screen shows is dropped (a snapshot read before an event it follows,
an event relayed late), so a screen never moves a table back. A snapshot also drops the tables it no
longer lists. When its socket closes (1012 when a host restarts or moves sockets to another host, 1013
when a worker sheds a storm, 1006 when the connection is cut) or a handshake fails, it reconnects after a
random delay in [0, min(CAP_S, BASE_S * 2**attempt)] ("full jitter"); `attempt` counts the failures since
its last hello. The hello gives every table again, so nothing missed while away stays missed.

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


SNAPSHOTS = ("connection_established", "tables_snapshot")


@dataclass
class View:
    """The tables a client shows (id -> status) and their versions, kept as docs/protocol.md says."""

    tables: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    stale: int = 0  # rows and events dropped as older than what was shown
    # (table id, version) -> every status a row of that version had: one, when versions tell the truth.
    seen: dict = field(default_factory=dict)

    def apply(self, message):
        if message["type"] in SNAPSHOTS:
            listed = {row["id"] for row in message["tables"]}
            for gone in set(self.tables) - listed:
                del self.tables[gone]
                self.versions.pop(gone, None)
            for row in message["tables"]:
                self.show(row)
        elif message["type"] == "table_status_changed":
            self.show(message["data"])

    def show(self, row):
        version, shown = row.get("version"), self.versions.get(row["id"])
        if version is not None and shown is not None and version < shown:
            self.stale += 1
            return
        self.tables[row["id"]], self.versions[row["id"]] = row["status"], version
        self.seen.setdefault((row["id"], version), set()).add(row["status"])


@dataclass
class Screen(View):
    index: int = 0
    source: str = "127.0.0.1"
    release: str | None = None
    hellos: int = 0
    closes: Counter = field(default_factory=Counter)  # close codes the server sent
    failures: Counter = field(default_factory=Counter)  # handshakes that failed, by why
    gaps: list = field(default_factory=list)  # seconds from losing the socket to the next hello
    connected: bool = False

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
    """`count` screens of one company and an event every EVENT_EVERY_S: a REST PATCH of a table's status
    (never of the tables in `spared`, left for a test to change itself). Every change the API confirms is
    noted with the version it answered (`written`)."""

    site: object
    token: str
    count: int
    first_address: int = 0
    spared: frozenset = frozenset()
    screens: list = field(default_factory=list)
    events_sent: int = 0
    event_errors: Counter = field(default_factory=Counter)
    written: dict = field(default_factory=dict)  # (table id, version) -> the status the API saved

    async def __aenter__(self):
        self.stop, self.quiet = asyncio.Event(), asyncio.Event()
        rng = random.Random(self.count)
        sources = source_addresses(self.count, PER_ADDRESS, self.first_address)
        self.screens = [Screen(index=i, source=source) for i, source in enumerate(sources)]
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

    async def change(self, table, status):
        """PATCH one table's status; the version the API answered (noted in `written`), or None if refused."""
        try:
            _, saved = await asyncio.to_thread(
                request, self.site, "PATCH", f"/api/cafe/tables/{table}/", self.token, {"status": status}
            )
        except urllib.error.HTTPError as refused:
            self.event_errors[f"http {refused.code}"] += 1
        except OSError as error:
            self.event_errors[classify(error)] += 1
        else:
            self.written[table, saved["version"]] = saved["status"]
            return saved["version"]
        return None

    async def drive(self):
        statuses = ["occupied", "reserved", "free"]
        ids = sorted(set(self.tables) - self.spared)
        while not self.quiet.is_set():
            table = ids[self.events_sent % len(ids)]
            await self.change(table, statuses[(self.events_sent // len(ids)) % len(statuses)])
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

    def untrue(self):
        """Every state a screen showed that the database never had: a row without a version, one version with
        two statuses, or a status other than the one the API saved with that version."""
        seen = {}
        for screen in self.screens:
            for key, statuses in screen.seen.items():
                seen.setdefault(key, set()).update(statuses)
        return {
            key: statuses
            for key, statuses in seen.items()
            if key[1] is None or len(statuses) > 1 or (key in self.written and statuses != {self.written[key]})
        }

    def missing(self):
        """The screens that show a table older than the last change of it the API confirmed (index -> ids)."""
        newest = {}
        for table, version in self.written:
            newest[table] = max(version, newest.get(table, 0))
        behind = {}
        for screen in self.screens:
            late = [t for t, version in newest.items() if (screen.versions.get(t) or 0) < version]
            if late:
                behind[screen.index] = late
        return behind

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
            # Rows and events older than what a screen showed, dropped (a reconnect's snapshot, then events
            # published before it).
            "stale_dropped": sum(s.stale for s in self.screens),
        }
