"""The measurements: fan-out (stack and floor in one run, with the same clients), the connect burst,
and idle memory. Each returns plain dicts, one per repetition and side, for a results file."""

import json
import math
import sys
import time
import uuid

from bench.clients import ClientPool
from bench.floor import FloorServer
from bench.target import CACHE, BenchError, Command, process_cpu_seconds

SIDES = ("stack", "floor")


def auto_procs(n):
    """Client processes for n sockets: one per 750, at most 4 (the machine has 2 cores to share)."""
    return max(1, min(4, math.ceil(n / 750)))


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Sides:
    """The endpoints and senders of the sides asked for: the stack under test and the floor (started
    here, on the floor's Redis, with the stack's transport). A context manager."""

    def __init__(self, target, sides, compression="deflate"):
        self.target, self.names = target, [side for side in SIDES if side in sides]
        self.compression = compression
        self.floor = None
        self.refresh()

    def refresh(self):
        """A new token and endpoint for the stack (after a restart, say)."""
        self.stack_endpoint = self.target.endpoint(self.target.token(), self.compression)

    def start_floor(self):
        if "floor" not in self.names:
            return None
        if not self.target.floor_redis_url:
            raise BenchError("the floor needs a Redis: pass --floor-redis-url (and --floor-redis-password-file)")
        self.stop_floor()
        self.floor = FloorServer(
            self.target.floor_redis_url,
            self.target.floor_redis_password,
            self.stack_endpoint,
            CACHE,
            deflate=self.stack_deflates(),
        )
        return self.floor

    def stack_deflates(self):
        """Whether the stack agrees to permessage-deflate with these clients (one handshake asks):
        the floor agrees to the same, so that neither side compresses alone."""
        if not self.compression:
            return False
        with ClientPool(self.stack_endpoint, 1, 1, 1) as pool:
            opened = pool.open()
        if not opened["open"]:
            raise BenchError(f"no socket to the stack opened: {opened['failed']}")
        return any("permessage-deflate" in agreed for agreed in opened["extensions"])

    def stop_floor(self):
        if self.floor is not None:
            self.floor.stop()
            self.floor = None

    def endpoint(self, side):
        return self.stack_endpoint if side == "stack" else self.floor.endpoint

    def sender(self, side):
        if side == "stack":
            return Command(
                [*self.target.manage.prefix, "bench_broadcast"], self.target.manage.env, self.target.manage.cwd
            )
        return Command(self.floor.sender_argv(), self.floor.env)

    def cpu_seconds(self, side):
        """The servers' CPU time so far: {"app": {host: s}, "web": {host: s}} of the stack's hosts when the
        target has them, {"floor": s} of the floor's process; None when there is nothing to read."""
        if side == "floor":
            return {"floor": process_cpu_seconds(self.floor.pid)}
        return self.target.cpu_seconds()

    def order(self, rep):
        """Alternate which side goes first, so neither always runs on a machine the other just warmed."""
        return self.names if rep % 2 == 0 else self.names[::-1]

    def __enter__(self):
        self.start_floor()
        return self

    def __exit__(self, *exc):
        self.stop_floor()


def send(sender, company, rate, duration, run):
    """Run the sender; its JSON summary (the last line it prints)."""
    output = sender.run("--company", company, "--rate", rate, "--duration", duration, "--run", run)
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"the sender printed no summary: {output[-500:]!r}")
    return json.loads(lines[-1])


def spread_of(before, during):
    """{app host's bind: sockets it took} from the connections each held before the clients opened and while
    they were open; None without a spread to read."""
    if before is None or during is None:
        return None
    return {bind: max(0, count - before.get(bind, 0)) for bind, count in during.items()}


def cpu_used(before, after):
    """CPU seconds each server spent between two readings of Sides.cpu_seconds, with the same shape."""
    if before is None or after is None:
        return None
    if "floor" in before:
        return {"floor": round(after["floor"] - before["floor"], 3)}
    return {
        role: {host: round(after[role][host] - at, 3) for host, at in hosts.items()} for role, hosts in before.items()
    }


def fanout_once(sides, side, n, rate, duration, procs, per_address, warmup, grace, settle=1.0):
    """N sockets in the company's group, R broadcasts a second for `duration` seconds: one repetition.
    On a target of several app hosts it also records how nginx spread the sockets over them (and fails
    when one got none), and the CPU time the servers spent from just before the sender started to the
    last delivery, for the capacity figure."""
    run = uuid.uuid4().hex[:12]
    company = sides.target.company
    mark = sides.target.log_mark()
    spread_before = sides.target.spread() if side == "stack" else None
    with ClientPool(sides.endpoint(side), n, procs or auto_procs(n), per_address) as pool:
        opened = pool.open()
        time.sleep(settle)
        spread = spread_of(spread_before, sides.target.spread() if side == "stack" else None)
        if spread and not all(spread.values()):
            raise BenchError(f"nginx left an app host without a socket: {spread}")
        pool.measure(run, company, warmup_seq=int(warmup * rate))
        cpu_before = sides.cpu_seconds(side)
        sender = send(sides.sender(side), company, rate, duration, run)
        frames = pool.collect(sender["sent"], grace)
        cpu = cpu_used(cpu_before, sides.cpu_seconds(side))  # before the sockets close: closing is not fan-out
    expected = n * sender["sent"]
    result = {
        "side": side,
        "n": n,
        "rate": rate,
        "duration": duration,
        "run": run,
        "open": opened["open"],
        "connect_failed": opened["failed"],
        "setup_s": opened["wall_s"],
        "extensions": opened["extensions"],
        "sent": sender["sent"],
        "expected": expected,
        "delivered": frames["received"],
        "delivered_ratio": frames["received"] / expected if expected else None,
        "latency_ms": frames["latency_ms"],
        "bad_frames": frames["bad"],
        "bad_examples": frames["bad_examples"],
        "duplicates": frames["duplicates"],
        "dropped": frames["dropped"],
        "table_ids": frames["table_ids"],
        "expected_table_id": sender["table_id"],
        "client": frames["client"],
        "sender": sender,
        "server_errors": sides.target.server_errors(mark) if side == "stack" else None,
        "spread": spread,
        "cpu_s": cpu,
    }
    latency = frames["latency_ms"]
    log(
        f"fanout {side:5} N={n} R={rate}: delivered {frames['received']}/{expected}, "
        f"p50 {latency['p50']} p99 {latency['p99']} max {latency['max']} ms, "
        f"client cpu {frames['client']['cpu_s']} s in {frames['client']['window_s']} s, "
        f"loop lag max {frames['client']['loop_lag_ms_max']} ms"
        + (f"; server errors {result['server_errors']}" if result["server_errors"] else "")
        + (f"; sockets per app host {spread}" if spread else "")
        + (f"; server cpu {cpu} s" if cpu else "")
    )
    return result


def fanout(sides, ns, rate, duration, reps, procs=0, per_address=40, warmup=1.0, grace=10.0, pause=5.0):
    runs = []
    for n in ns:
        for rep in range(reps):
            for side in sides.order(rep):
                runs.append(
                    dict(fanout_once(sides, side, n, rate, duration, procs, per_address, warmup, grace), rep=rep)
                )
                time.sleep(pause)  # the server handles the closes before the next run opens
    return runs


def burst_once(sides, side, n, procs, per_address, hold=1.0):
    mark = sides.target.log_mark()
    with ClientPool(sides.endpoint(side), n, procs or auto_procs(n), per_address) as pool:
        opened = pool.burst()
        time.sleep(hold)
    result = {
        "side": side,
        "n": n,
        "open": opened["open"],
        "errors": opened["failed"],
        "handshake_errors": sum(opened["failed"].values()),
        "all_connected_s": opened["all_connected_s"],
        "connect_ms": opened["connect_ms"],
        "server_errors": sides.target.server_errors(mark) if side == "stack" else None,
    }
    log(
        f"burst  {side:5} N={n}: {opened['open']} open, errors {opened['failed'] or 'none'}, "
        f"all connected in {opened['all_connected_s']} s, connect p50 {opened['connect_ms']['p50']} "
        f"p99 {opened['connect_ms']['p99']} ms; server errors {result['server_errors'] or 'none'}"
    )
    return result


def burst(sides, n, reps, procs=0, per_address=40, pause=5.0):
    """n clients open at once. nginx admits a burst of 50 handshakes per address: per_address stays below."""
    runs = []
    for rep in range(reps):
        for side in sides.order(rep):
            runs.append(dict(burst_once(sides, side, n, procs, per_address), rep=rep))
            time.sleep(pause)
    return runs


def process_rss(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def memory_once(sides, side, n, steps, procs, per_address, restart, settle=3.0):
    """Resident memory of the server (gunicorn's workers summed; the floor's one process) with 0 idle
    sockets, then after each of `steps` equal batches up to n: KiB per idle connection."""
    if side == "stack":
        if restart:
            sides.target.restart()
            sides.refresh()
        probe = lambda: sum(sides.target.worker_rss().values())  # noqa: E731
    else:
        floor = sides.start_floor()  # a fresh process: nothing freed by an earlier run inflates the start
        probe = lambda: process_rss(floor.pid)  # noqa: E731
    endpoint = sides.endpoint(side)
    # Warm up: the first sockets of a fresh worker load code and open pools that no later socket costs.
    with ClientPool(endpoint, 10, 1, per_address) as warm:
        warm.open(retries=10)  # a restarted stack may refuse the first handshakes while its workers load
    time.sleep(settle)
    points = [(0, probe())]
    with ClientPool(endpoint, n, procs or auto_procs(n), per_address) as pool:
        for step in range(steps):
            opened = pool.open(count=n * (step + 1) // steps - n * step // steps)
            time.sleep(settle)
            points.append((opened["open"], probe()))  # every socket the pool holds
    sockets, grown = points[-1][0], points[-1][1] - points[0][1]
    result = {
        "side": side,
        "n": n,
        "points": points,  # (open sockets, resident KiB)
        "open": sockets,
        "kib_per_connection": round(grown / sockets, 2) if sockets else None,
        "restarted": restart if side == "stack" else True,
    }
    log(f"memory {side:5} N={n}: {points} -> {result['kib_per_connection']} KiB per idle connection")
    return result


def memory(sides, n, steps, reps, procs=0, per_address=40, restart=True, pause=5.0):
    runs = []
    for rep in range(reps):
        for side in sides.order(rep):
            runs.append(dict(memory_once(sides, side, n, steps, procs, per_address, restart), rep=rep))
            time.sleep(pause)
    return runs


# --- Smoke: correctness, never speed ------------------------------------------------------------------


def fanout_problems(run):
    """What is wrong with one fan-out repetition, as sentences; empty when all is delivered and right."""
    problems, side = [], run["side"]
    if run["open"] < run["n"]:
        problems.append(
            f"{side}: {run['n'] - run['open']} of {run['n']} sockets failed to open: {run['connect_failed']}"
        )
    if run["delivered"] != run["expected"]:
        problems.append(f"{side}: delivered {run['delivered']} of {run['expected']} events")
    if run["bad_frames"]:
        problems.append(f"{side}: {run['bad_frames']} unexpected frame(s), e.g. {run['bad_examples'][:2]}")
    if run["duplicates"]:
        problems.append(f"{side}: {run['duplicates']} event(s) arrived twice")
    if run["dropped"]:
        problems.append(f"{side}: the server closed {run['dropped']} socket(s) during the run")
    if set(run["table_ids"]) - {run["expected_table_id"]}:
        problems.append(f"{side}: events about tables {sorted(run['table_ids'])}, sent {run['expected_table_id']}")
    return problems


def burst_problems(run):
    if run["handshake_errors"] or run["open"] < run["n"]:
        return [f"{run['side']}: burst of {run['n']}: {run['open']} open, handshake errors {run['errors']}"]
    return []


def smoke(sides, n=50, rate=5.0, duration=3.0):
    """Fan-out and burst with n sockets on each side; the stack's memory, figures only. (runs, problems)"""
    runs = {"fanout": [], "burst": [], "memory": []}
    problems = []
    for side in sides.names:
        run = fanout_once(sides, side, n, rate, duration, 1, 40, warmup=0, grace=10)
        runs["fanout"].append(dict(run, rep=0))
        problems += fanout_problems(run)
        run = burst_once(sides, side, n, 1, 40)
        runs["burst"].append(dict(run, rep=0))
        problems += burst_problems(run)
    if "stack" in sides.names:
        runs["memory"].append(dict(memory_once(sides, "stack", n, 1, 1, 40, restart=False, settle=1.0), rep=0))
    return runs, problems
