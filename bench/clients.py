"""The load generator: client processes, each with its own asyncio loop (uvloop when installed), each
holding its share of the sockets. The parent drives them over pipes (ClientPool). websockets makes each
handshake; then a lean reader (_Receiver) takes the socket over, parses each frame once (json.loads),
keeps receive time minus sent_at in memory, and the child hands the figures back at the end, with its
own CPU time and event-loop lag: the proof that the load generator was not the bottleneck.

The deployed nginx admits per client address 100 open sockets and 10 handshakes a second with a burst
of 50, so TCP clients spread over loopback source addresses 127.77.x.y (all of 127.0.0.0/8 is loopback
on Linux), at most `per_address` sockets on each; every pool takes fresh addresses, so one run's
sockets never count against the next run's limits.
"""

import asyncio
import errno
import functools
import json
import multiprocessing
import resource
import ssl
import time
import zlib
from array import array
from collections import Counter
from dataclasses import dataclass

from websockets.asyncio.client import connect, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.extensions.permessage_deflate import PerMessageDeflate

from bench.stats import summarize

try:
    import uvloop
except ImportError:  # the app's requirements (uvicorn[standard]) bring it; plain asyncio works too
    uvloop = None

HELLO = "connection_established"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
EVENT = "table_status_changed"
# Addresses 127.77.1.1 .. 127.77.254.254; each pool takes the ones after the previous pool's.
ADDRESSES = 254 * 254
_address_cursor = [int(time.time()) % ADDRESSES]


@dataclass(frozen=True)
class Endpoint:
    """Where the clients connect. The URL's host names the Host header, the Origin and the TLS
    server name; connect_host is the TCP destination (e.g. 127.0.0.1 for wss://localhost/...)."""

    url: str
    unix_socket: str | None = None
    connect_host: str | None = None
    cafile: str | None = None
    origin: str | None = None
    compression: str | None = "deflate"  # what browsers offer; None offers no extension


def source_addresses(count, per_address, first=0):
    """Loopback source addresses for count sockets, at most per_address on each, from address `first` on."""
    addresses = []
    for index in range(count):
        number = (first + index // per_address) % ADDRESSES
        addresses.append(f"127.77.{1 + number // 254}.{1 + number % 254}")
    return addresses


def classify(exc):
    """A short name for why a handshake failed: 'http 500', 'timeout', 'reset', 'closed 4401', ..."""
    if isinstance(exc, InvalidStatus):
        return f"http {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionClosed):
        return f"closed {exc.rcvd.code if exc.rcvd else 'without close frame'}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno:
        return f"oserror {errno.errorcode.get(exc.errno, exc.errno)}"
    return type(exc).__name__


def raise_fd_limit():
    """Up to the hard limit: thousands of sockets need more descriptors than a usual soft limit of 1024."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Receiver(asyncio.Protocol):
    """Reads an open socket's frames in place of websockets' connection, which did the handshake and read
    connection_established. It parses server frames (unmasked) and inflates permessage-deflate with the
    parameters agreed at the handshake: half the CPU of websockets' general parser, and no task wakes
    up per frame. A frame's receive time is when the event loop read its bytes, not when its turn came
    after the process's other sockets. Pings get pongs; a close is answered and ends the socket."""

    def __init__(self, transport, on_frame, on_lost, deflate=None):
        self.transport, self.on_frame, self.on_lost = transport, on_frame, on_lost
        self.buffer = bytearray()
        self.deflate = deflate
        # With context takeover the server's compressor goes on from connection_established: so must this.
        self.inflater = getattr(deflate, "decoder", None)

    def data_received(self, data):
        now = time.time()
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            length, start = buffer[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start or len(buffer) < start + length:
                return
            first, payload = buffer[0], bytes(buffer[start : start + length])
            del buffer[: start + length]
            self._frame(first, payload, now)

    def _frame(self, first, payload, now):
        opcode = first & 0x0F
        if opcode in (OP_TEXT, OP_BINARY) and first & 0x80:
            if first & 0x40:  # compressed
                if self.deflate.remote_no_context_takeover or self.inflater is None:
                    self.inflater = zlib.decompressobj(wbits=-self.deflate.remote_max_window_bits)
                try:
                    payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
                except zlib.error:
                    payload = None
            self.on_frame(payload, now)
        elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            self.on_frame(None, now)  # a fragment: these messages are far too short to be split
        elif opcode == OP_PING:
            self._send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self._send(OP_CLOSE, payload[:2])
            self.transport.close()

    def _send(self, opcode, payload):
        # Clients mask what they send; the all-zero mask keeps the payload as it is.
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + bytes(4) + payload)

    def close(self):
        if not self.transport.is_closing():
            self._send(OP_CLOSE, (1000).to_bytes(2, "big"))
            self.transport.close()

    def connection_lost(self, exc):
        self.on_lost()


class ClientPool:
    """`count` sockets to one endpoint, held by `procs` child processes. Use as a context manager:
    open() or burst(), then measure() before the sender starts and collect() after it ends."""

    def __init__(self, endpoint, count, procs=1, per_address=40, open_timeout=60):
        procs = max(1, min(procs, count))
        if endpoint.unix_socket:
            slots = [None] * count
        else:
            first = _address_cursor[0]
            _address_cursor[0] = (first + -(-count // per_address)) % ADDRESSES
            slots = source_addresses(count, per_address, first)
        context = multiprocessing.get_context("fork")
        self.children = []
        for index in range(procs):
            share = slots[index * count // procs : (index + 1) * count // procs]
            parent, child = context.Pipe()
            process = context.Process(
                target=_child_main,
                args=(child, endpoint, share, open_timeout),
                daemon=True,
                name=f"bench-client-{index}",
            )
            process.start()
            child.close()
            self.children.append((process, parent))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _ask(self, command, timeout, each=None, **args):
        """Send `command` to every child (with each[i] merged into child i's arguments); their replies."""
        for index, (_, pipe) in enumerate(self.children):
            pipe.send((command, dict(args, **(each[index] if each else {}))))
        replies = []
        deadline = time.monotonic() + timeout
        for process, pipe in self.children:
            while not pipe.poll(0.2):
                if not process.is_alive():
                    raise RuntimeError(f"client process {process.name} died (exit code {process.exitcode})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"client process {process.name} did not answer {command} in {timeout} s")
            replies.append(pipe.recv())
        return replies

    def open(self, count=None, concurrency=50, retries=3, timeout=600):
        """Open (more) sockets, `concurrency` handshakes at a time per process, retrying failed ones:
        the set-up of a measurement, not the measurement. count=None opens all the remaining ones."""
        shares = _split(count, len(self.children)) if count is not None else [None] * len(self.children)
        each = [{"count": share} for share in shares]
        return _merge_opened(self._ask("open", timeout, each, concurrency=concurrency, retries=retries))

    def burst(self, delay=1.0, timeout=600):
        """Every socket opens at once, at a wall-clock instant `delay` seconds from now, without retries."""
        opened = _merge_opened(self._ask("burst", timeout, start_at=time.time() + delay))
        # Every connect time counts from the same instant: the slowest is when all were connected.
        opened["all_connected_s"] = None if opened["failed"] else round(opened["connect_ms"]["max"] / 1000, 3)
        return opened

    def measure(self, run, company, warmup_seq=0):
        """Start counting events of this run (the sender starts next)."""
        self._ask("measure", 30, run=run, company=company, warmup_seq=warmup_seq)

    def collect(self, sent, grace):
        """Wait up to `grace` seconds for every socket to hold all `sent` events; the merged figures."""
        replies = self._ask("collect", grace + 120, sent=sent, deadline=time.time() + grace)
        return _merge_collected(replies)

    def close(self):
        if not self.children:
            return
        try:
            self._ask("close", 120)
        finally:
            for process, pipe in self.children:
                process.join(10)
                if process.is_alive():
                    process.kill()
                pipe.close()
            self.children = []


def _split(count, parts):
    return [count * (index + 1) // parts - count * index // parts for index in range(parts)]


def _merge_opened(replies):
    errors, final_errors, extensions, connect_ms = Counter(), Counter(), Counter(), []
    for reply in replies:
        errors.update(reply["errors"])
        final_errors.update(reply["failed"])
        extensions.update(reply["extensions"])
        connect_ms += reply["connect_ms"]
    return {
        "open": sum(reply["open"] for reply in replies),
        "attempt_errors": dict(errors),
        "failed": dict(final_errors),
        "connect_ms": summarize(connect_ms),
        "extensions": dict(extensions),
        "wall_s": round(max(reply["wall_s"] for reply in replies), 3),
    }


def _merge_collected(replies):
    latencies = array("d")
    for reply in replies:
        latencies.frombytes(reply["latencies"])
    lag = [reply["lag_ms"] for reply in replies]
    ids, bad_examples = Counter(), []
    for reply in replies:
        ids.update(reply["ids"])
        bad_examples += reply["bad_examples"]

    def total(key):
        return sum(reply[key] for reply in replies)

    return {
        "sockets": total("sockets"),
        "complete_sockets": total("complete_sockets"),
        "received": total("received"),
        "min_received": min(reply["min_received"] for reply in replies),
        "bad": total("bad"),
        "bad_examples": bad_examples[:5],
        "duplicates": total("duplicates"),
        "dropped": total("dropped"),
        "table_ids": dict(ids),
        "latency_ms": summarize(latencies),
        "client": {
            "processes": len(replies),
            "cpu_s": round(total("cpu_s"), 3),
            "window_s": round(max(reply["window_s"] for reply in replies), 3),
            "loop_lag_ms_p99": max(item["p99"] or 0 for item in lag),
            "loop_lag_ms_max": max(item["max"] or 0 for item in lag),
        },
    }


# --- The child process ------------------------------------------------------------------------


def _child_main(pipe, endpoint, slots, open_timeout):
    raise_fd_limit()
    runner = uvloop.run if uvloop else asyncio.run
    runner(_Clients(pipe, endpoint, slots, open_timeout).serve())


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Clients:
    def __init__(self, pipe, endpoint, slots, open_timeout):
        self.pipe, self.endpoint, self.slots, self.open_timeout = pipe, endpoint, slots, open_timeout
        self.cursor = 0  # slots[:cursor] have been tried
        self.sockets = []  # a _Receiver per open socket
        self.tls = ssl.create_default_context(cafile=endpoint.cafile) if endpoint.url.startswith("wss:") else None
        self.closing = False
        self.dropped = self.lost = 0
        self.extensions = Counter()  # the extensions each handshake agreed on
        self.lag_task = None
        self._reset()

    async def serve(self):
        loop = asyncio.get_running_loop()
        while True:
            command, args = await loop.run_in_executor(None, self.pipe.recv)
            self.pipe.send(await getattr(self, command)(**args))
            if command == "close":
                return

    # --- opening -----------------------------------------------------------------------------
    def _client(self, address):
        options = {
            "origin": self.endpoint.origin,
            "compression": self.endpoint.compression,
            "open_timeout": self.open_timeout,
            "ping_interval": None,  # browsers send no pings; the server's own keep the socket alive
            "close_timeout": 5,
        }
        if self.endpoint.unix_socket:
            return unix_connect(self.endpoint.unix_socket, self.endpoint.url, **options)
        return connect(
            self.endpoint.url,
            host=self.endpoint.connect_host,
            local_addr=(address, 0),
            ssl=self.tls,
            proxy=None,
            **options,
        )

    async def _handshake(self, address, started):
        """Open one socket and wait for connection_established (the socket is in its group then).
        Returns (socket, milliseconds since `started`)."""
        ws = await self._client(address)
        try:
            frame = await asyncio.wait_for(ws.recv(), self.open_timeout)
        except BaseException:
            await ws.close()
            raise
        kind = json.loads(frame).get("type")
        if kind != HELLO:
            await ws.close()
            raise ValueError(f"first frame {kind!r}, not {HELLO}")
        self.extensions[",".join(extension.name for extension in ws.protocol.extensions) or "none"] += 1
        return ws, (time.time() - started) * 1000

    def _adopt(self, ws):
        deflate = next((x for x in ws.protocol.extensions if isinstance(x, PerMessageDeflate)), None)
        receiver = _Receiver(ws.transport, functools.partial(self._on_frame, len(self.sockets)), self._lost, deflate)
        ws.transport.set_protocol(receiver)
        self.sockets.append(receiver)
        self.received.append(0)
        self.seen.append(set())

    async def open(self, count, concurrency, retries):
        self._reset()
        end = len(self.slots) if count is None else min(len(self.slots), self.cursor + count)
        todo, self.cursor = self.slots[self.cursor : end], end
        gate = asyncio.Semaphore(concurrency)
        errors, failed, connect_ms = Counter(), Counter(), []
        began = time.monotonic()

        async def one(address):
            for attempt in range(retries + 1):
                async with gate:
                    try:
                        ws, ms = await self._handshake(address, time.time())
                    except Exception as exc:
                        reason = classify(exc)
                        errors[reason] += 1
                        if attempt == retries:
                            failed[reason] += 1
                        else:
                            await asyncio.sleep(0.5 * (attempt + 1))
                        continue
                self._adopt(ws)
                connect_ms.append(ms)
                return

        await asyncio.gather(*(one(address) for address in todo))
        return self._opened(errors, failed, connect_ms, began)

    async def burst(self, start_at):
        self._reset()
        todo, self.cursor = self.slots[self.cursor :], len(self.slots)
        errors, connect_ms = Counter(), []
        await asyncio.sleep(max(0.0, start_at - time.time()))
        began = time.monotonic()

        async def one(address):
            try:
                ws, ms = await self._handshake(address, start_at)
            except Exception as exc:
                errors[classify(exc)] += 1
                return
            self._adopt(ws)
            connect_ms.append(ms)

        await asyncio.gather(*(one(address) for address in todo))
        return self._opened(errors, errors, connect_ms, began)

    def _opened(self, errors, failed, connect_ms, began):
        return {
            "open": len(self.sockets),
            "errors": dict(errors),
            "failed": dict(failed),
            "connect_ms": connect_ms,
            "wall_s": time.monotonic() - began,
            "extensions": dict(self.extensions),
        }

    # --- receiving ---------------------------------------------------------------------------
    def _reset(self, run=None, company=None, warmup_seq=0):
        self.run, self.company, self.warmup_seq = run, company, warmup_seq
        self.received = [0] * len(self.sockets)
        self.seen = [set() for _ in self.sockets]
        self.latencies = array("d")
        self.bad, self.duplicates, self.bad_examples = 0, 0, []
        self.ids = Counter()

    def _lost(self):
        self.lost += 1
        if not self.closing:
            self.dropped += 1

    def _on_frame(self, index, frame, now):
        """One text frame (None for a fragment) of socket `index`, read at wall-clock time `now`."""
        if self.run is None:
            return  # not measuring: an idle socket
        try:
            message = json.loads(frame.decode())  # a str parses faster than bytes
            data = message["data"]
            good = (
                message["type"] == EVENT
                and data["run"] == self.run
                and data["company_id"] == self.company
                and isinstance(data["seq"], int)
            )
        except (ValueError, KeyError, TypeError, AttributeError):  # not a dict; None for a fragment
            good = False
        if not good:
            self.bad += 1
            if len(self.bad_examples) < 5:
                self.bad_examples.append(bytes(frame or b"(a fragment)")[:300].decode(errors="replace"))
            return
        seen = self.seen[index]
        if data["seq"] in seen:
            self.duplicates += 1
            return
        seen.add(data["seq"])
        self.received[index] += 1
        self.ids[data["id"]] += 1
        if data["seq"] >= self.warmup_seq:
            self.latencies.append((now - data["sent_at"]) * 1000)

    async def measure(self, run, company, warmup_seq):
        self._reset(run, company, warmup_seq)
        self.lag = []
        self.lag_task = asyncio.create_task(self._watch_lag())
        self.cpu_at, self.window_at = _cpu_seconds(), time.monotonic()
        return {}

    async def _watch_lag(self, interval=0.02):
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(interval)
            self.lag.append((loop.time() - before - interval) * 1000)

    async def collect(self, sent, deadline):
        while time.time() < deadline and min(self.received, default=sent) < sent:
            await asyncio.sleep(0.05)
        if self.lag_task:
            self.lag_task.cancel()
        complete = sum(1 for count in self.received if count >= sent)
        reply = {
            "sockets": len(self.sockets),
            "complete_sockets": complete,
            "received": sum(self.received),
            "min_received": min(self.received, default=0),
            "bad": self.bad,
            "bad_examples": self.bad_examples,
            "duplicates": self.duplicates,
            "dropped": self.dropped,
            "ids": dict(self.ids),
            "latencies": self.latencies.tobytes(),
            "lag_ms": summarize(self.lag),
            "cpu_s": _cpu_seconds() - self.cpu_at,
            "window_s": time.monotonic() - self.window_at,
        }
        self.run = None
        return reply

    async def close(self):
        self.closing = True
        for receiver in self.sockets:
            receiver.close()
        deadline = time.monotonic() + 30
        while self.lost < len(self.sockets) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {}
