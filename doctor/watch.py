"""How long a running service stops answering while something is done to it (a takeover, a deploy): probes
tried over and over in a background thread, each attempt timed, and the windows in which a probe failed.
`nurcrm-doctor --watch -- COMMAND` runs a command under a watch of the site (docs/takeover.md):

    with Watch([site_http(site, "/"), site_handshake(site, f"token={token}")]) as watch:
        playbook("-i", inventory, "-e", "takeover=true")
    watch.report()  # {"GET /": {"attempts": 412, "failures": 3, "longest_s": 0.61, "failed_s": 0.61}, ...}

A window opens at the start of the first failed attempt and closes at the start of the next attempt that
succeeds (or when the watch ends): a client retrying as often as the probe waited at least that long.
"""

import asyncio
import http.client
import subprocess
import threading
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect


@dataclass
class Probe:
    """One thing a client does: `check` (a coroutine function) returns when it worked and raises otherwise."""

    name: str
    check: object
    attempts: list = field(default_factory=list)  # (started, ok, what failed)


class Watch:
    """Tries each probe every `every` seconds (each attempt at most `timeout`) until the `with` block ends."""

    def __init__(self, probes, every=0.1, timeout=2.0):
        self.probes, self.every, self.timeout = probes, every, timeout
        self.started = self.ended = None
        self.clock = 0.0  # the wall clock when the watch started: windows are told by the time of day
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self):
        self.started, self.clock = time.monotonic(), time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(self.timeout + 5)
        self.ended = time.monotonic()
        return False

    async def _run(self):
        await asyncio.gather(*(self._keep_trying(probe) for probe in self.probes))

    async def _keep_trying(self, probe):
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await asyncio.wait_for(probe.check(self.timeout), self.timeout)
                probe.attempts.append((started, True, ""))
            except Exception as exc:  # noqa: BLE001 (every way a client can fail is a failure here)
                probe.attempts.append((started, False, f"{type(exc).__name__}: {exc}"[:200]))
            await asyncio.sleep(max(0.0, self.every - (time.monotonic() - started)))

    def windows(self, probe):
        """[(start, end)] of each run of failed attempts, in seconds since the watch started."""
        found, opened = [], None
        for started, ok, _ in probe.attempts:
            if not ok and opened is None:
                opened = started
            elif ok and opened is not None:
                found.append((opened - self.started, started - self.started))
                opened = None
        if opened is not None:
            found.append((opened - self.started, (self.ended or time.monotonic()) - self.started))
        return found

    def time_of_day(self, offset):
        """A moment `offset` seconds after the watch started, as HH:MM:SS (UTC), to match against a run's log."""
        return time.strftime("%H:%M:%S", time.gmtime(self.clock + offset))

    def report(self):
        """Per probe: attempts, failures, the longest window and all windows together (seconds), the first
        failure's reason, and each window: [its start as the time of day (UTC), its length]."""
        summary = {}
        for probe in self.probes:
            windows = self.windows(probe)
            failed = [what for _, ok, what in probe.attempts if not ok]
            summary[probe.name] = {
                "attempts": len(probe.attempts),
                "failures": len(failed),
                "longest_s": round(max((end - start for start, end in windows), default=0.0), 2),
                "failed_s": round(sum(end - start for start, end in windows), 2),
                "first_failure": failed[0] if failed else "",
                "windows": [[self.time_of_day(start), round(end - start, 2)] for start, end in windows],
            }
        return summary


# How often each probe is tried: within the bundle's limit of 10 handshakes a second per client (nginx), and
# what a user retrying by hand notices. The takeover's goal for the longest window (issue 28).
EVERY_S = 0.25
LIMIT_S = 10.0


def site_http(site, path, token=None, expect=(200,)):
    """GET `path` from a doctor Site (its name in SNI, its pinned address): works when the status is expected
    (`expect=None`: any answer but a server error, 5xx)."""

    def get(timeout):
        connection = http.client.HTTPConnection(site.server_name, site.port, timeout=timeout)
        connection.sock = site.connect(timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        failed = response.status >= 500 if expect is None else response.status not in expect
        if failed:
            raise RuntimeError(f"HTTP {response.status}")

    async def check(timeout):
        await asyncio.to_thread(get, timeout)

    return Probe(f"GET {path}", check)


def site_handshake(site, query="", path=None):
    """A WebSocket handshake with a doctor Site: works when the server accepts the socket (101)."""
    url = site.url(path) + (f"?{query}" if query else "")

    async def check(timeout):
        options = {"host": site.host, "server_hostname": site.server_name, "ssl": site.tls_context()}
        async with connect(url, origin=site.origin, open_timeout=timeout, **options):
            pass

    return Probe(f"handshake {path or site.ws_path}", check)


def watch_command(site, token, command, every=EVERY_S):
    """Run `command` (argv) while a watch tries the site's front page and a WebSocket handshake (signed in with
    `token` when there is one): (its exit status, the watch's report, seconds it ran)."""
    probes = [site_http(site, "/", expect=None), site_handshake(site, f"token={token}" if token else "")]
    with Watch(probes, every=every) as watch:
        status = subprocess.run(command).returncode
    return status, watch.report(), round(watch.ended - watch.started, 1)


def describe(command, status, report, seconds, limit=LIMIT_S):
    """The report as an operator reads it: a line per probe, then whether the longest window kept to `limit`."""
    lines = [f"While `{' '.join(command)}` ran ({seconds} s, exit status {status}), the site failed to answer:"]
    width = max(len(name) for name in report)
    for name, each in report.items():
        longest = max(each["windows"], key=lambda window: window[1], default=None)
        line = f"  {name:<{width}}  longest {each['longest_s']} s" + (f" (from {longest[0]} UTC)" if longest else "")
        line += f", in all {each['failed_s']} s"
        line += f" ({each['failures']} of {each['attempts']} attempts failed)"
        lines.append(line + (f"; first: {each['first_failure']}" if each["first_failure"] else ""))
    over = [name for name, each in report.items() if each["longest_s"] >= limit]
    lines.append(f"Over the limit of {limit:g} s: {', '.join(over)}" if over else f"Within the limit of {limit:g} s.")
    return "\n".join(lines)
