"""python -m bench SUBCOMMAND: see bench/README.md, or `python -m bench SUBCOMMAND --help`."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench import deploy, floor, report, results, rolling, scenarios
from bench.target import (
    CACHE,
    CONTAINER,
    ROOT,
    BenchError,
    ensure_cluster,
    ensure_container,
    molecule_inventory,
    target_from_options,
)

DEFAULT_RESULTS = CACHE / "results"
CLUSTER_NS = [100, 1000, 3000]  # what `make bench-cluster` measures


def _ints(text):
    return [int(part.replace("_", "").replace(",", "")) for part in text.split(",") if part]


def _sides(text):
    sides = [part for part in text.split(",") if part]
    unknown = set(sides) - set(scenarios.SIDES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown side(s) {sorted(unknown)}: choose from {scenarios.SIDES}")
    return sides


def target_options():
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("target (a preset, then any option in place of its value)")
    group.add_argument(
        "--target",
        choices=("container", "local", "cluster"),
        default="container",
        help="container: the stack of `make demo` through nginx; local: a stack of the benchmark's "
        "own (redis-server + gunicorn with uvicorn workers on a unix socket), started and stopped here; "
        "cluster: molecule/cluster's hosts through their web host (fan-out only)",
    )
    group.add_argument("--container", default=CONTAINER, help="the container's name (container preset)")
    group.add_argument(
        "--inventory",
        help="the cluster's inventory, with its hosts' connections (default: the one molecule wrote for the "
        "cluster scenario, ~/.ansible/tmp/molecule.*.cluster/inventory)",
    )
    group.add_argument("--workers", type=int, default=3, help="gunicorn workers of the local stack")
    group.add_argument(
        "--layer", default="redis-pubsub", help="CHANNEL_LAYER of the local stack: redis-pubsub (as deployed) or redis"
    )
    group.add_argument("--url", help="WebSocket URL without the token, e.g. wss://localhost/ws/cafe/tables/")
    group.add_argument("--unix-socket", help="connect through this unix socket instead of TCP")
    group.add_argument("--connect-host", help="TCP destination, e.g. 127.0.0.1 (the URL's host stays the TLS name)")
    group.add_argument("--cafile", help="the CA file clients trust (container: .cache/local-ca.pem)")
    group.add_argument("--origin", help="Origin header (default https://<the URL's host>)")
    group.add_argument("--manage", help="manage.py as an argv prefix, e.g. 'docker exec nurcrm-local nurcrm-manage'")
    group.add_argument("--host-exec", help="argv prefix that runs a program on the stack's host ('' = this machine)")
    group.add_argument("--gunicorn", help="gunicorn's master on that host: a pid or systemd:UNIT")
    group.add_argument(
        "--restart-command", help="restarts gunicorn on that host (memory), e.g. 'systemctl restart gunicorn'"
    )
    group.add_argument("--company", help="company UUID (default: seed_demo's)")
    group.add_argument("--user", help="user the token is for (default demo)")
    group.add_argument("--floor-redis-url", help="the floor's Redis (container: redis://127.0.0.1:6379/0)")
    group.add_argument("--floor-redis-password-file", help="a file holding that Redis's password")
    return parser


def run_options():
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("measurement")
    group.add_argument("--sides", type=_sides, default=list(scenarios.SIDES), help="stack,floor (default both)")
    group.add_argument(
        "--procs", type=int, default=0, help="client processes (default: one per 750 sockets, at most 4)"
    )
    group.add_argument(
        "--per-address",
        type=int,
        default=40,
        help="sockets per loopback source address (nginx: 100 open, a burst of 50 handshakes per address)",
    )
    group.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="offer permessage-deflate, as browsers do (default), or nothing",
    )
    group.add_argument("--pause", type=float, default=5.0, help="seconds between repetitions")
    group.add_argument("--label", help="the variant measured, e.g. 'pubsub layer' (default: the commit)")
    group.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default .cache/bench/results)"
    )
    return parser


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    common = [target_options(), run_options()]

    p = commands.add_parser("fanout", parents=common, help="fan-out latency, stack and floor")
    p.add_argument("--n", type=_ints, default=[100, 1000, 3000], help="client counts (default 100,1000,3000)")
    p.add_argument("--rate", type=float, default=5.0, help="broadcasts a second (default 5)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of broadcasting per run (default 20)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per N and side (default 3)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of events left out of the percentiles")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to wait for the last events after sending")

    p = commands.add_parser("burst", parents=common, help="N clients opening at once")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--reps", type=int, default=3)

    p = commands.add_parser("memory", parents=common, help="resident memory per idle connection")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--steps", type=int, default=3, help="measure after each of this many equal batches")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="measure without restarting gunicorn first (the start then carries earlier runs' memory)",
    )

    p = commands.add_parser(
        "smoke", parents=common, help="N=50: delivery and correctness, never speed; exit 1 on failure"
    )
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=3.0)

    p = commands.add_parser(
        "all",
        parents=common,
        help="bring up or reuse the container, then fanout, burst, memory, rolling, report (cluster: fan-out, "
        "rolling, report)",
    )
    p.add_argument("--no-converge", dest="converge", action="store_false", help="reuse the stack as it is")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--report", type=Path, default=ROOT / "bench" / "REPORT.md")

    p = commands.add_parser(
        "rolling",
        parents=[target_options()],
        help="a deploy of a changed release and a rollback under open screens (container or --target cluster)",
    )
    p.add_argument("--screens", type=int, default=rolling.SCREENS)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--label")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)

    p = commands.add_parser("deploy", help="time converge, rerun and `molecule test` (DESTROYS the container)")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--label")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)

    p = commands.add_parser("report", help="write REPORT.md and report.png from the results")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    p.add_argument("--label", help="the variant to headline, as the report names it (default: the newest)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "REPORT.md")

    p = commands.add_parser("floor", help="(internal) the floor server")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--channel", default=floor.CHANNEL)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--unix-socket")
    p.add_argument("--certfile")
    p.add_argument("--keyfile")
    p.add_argument("--no-deflate", dest="deflate", action="store_false", help="refuse permessage-deflate")

    p = commands.add_parser("publish", help="(internal) the floor's sender")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--channel", default=floor.CHANNEL)
    p.add_argument("--company", required=True)
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--run", default="")
    return parser.parse_args(argv)


def _label(options):
    return options.label or results.commit()


def _record(options):
    """The options for a results file (none is secret: a password comes from a file, a token is minted)."""
    return {key: value for key, value in vars(options).items() if key not in ("command", "results", "report")}


def _with_sides(options, target):
    return scenarios.Sides(target, options.sides, None if options.compression == "none" else options.compression)


def _measure(options, kind, work):
    target = target_from_options(options)
    try:
        with _with_sides(options, target) as sides:
            runs = work(sides)
        path = results.save(options.results, kind, _label(options), _record(options), target.describe(), runs)
    finally:
        target.close()
    scenarios.log(f"results: {path}")


def fanout(options):
    def work(sides):
        return scenarios.fanout(
            sides,
            options.n,
            options.rate,
            options.duration,
            options.reps,
            options.procs,
            options.per_address,
            options.warmup,
            options.grace,
            options.pause,
        )

    _measure(options, "fanout", work)


def burst(options):
    def work(sides):
        return scenarios.burst(sides, options.n, options.reps, options.procs, options.per_address, options.pause)

    _measure(options, "burst", work)


def memory(options):
    def work(sides):
        return scenarios.memory(
            sides,
            options.n,
            options.steps,
            options.reps,
            options.procs,
            options.per_address,
            options.restart,
            options.pause,
        )

    _measure(options, "memory", work)


def smoke(options):
    target = target_from_options(options)
    try:
        with _with_sides(options, target) as sides:
            runs, problems = scenarios.smoke(sides, options.n, options.rate, options.duration)
    finally:
        target.close()
    for kind, kind_runs in runs.items():
        results.save(options.results, f"smoke-{kind}", _label(options), _record(options), target.describe(), kind_runs)
    if problems:
        print("bench smoke FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    fanned = ", ".join(f"{run['side']} {run['delivered']}/{run['expected']}" for run in runs["fanout"])
    print(
        f"bench smoke passed: N={options.n}, every event delivered once and well-formed ({fanned}); "
        f"bursts of {options.n} without a handshake error"
    )
    return 0


def run_all(options):
    base = vars(options)
    if options.target == "cluster":
        # Fan-out only: burst and memory would read one app host's workers and logs of several.
        ensure_cluster(options.converge)
        fanout(argparse.Namespace(**base, n=CLUSTER_NS, rate=5.0, warmup=1.0, grace=10.0))
        run_rolling(argparse.Namespace(**dict(base, screens=rolling.SCREENS, reps=1)))
        return write_report(argparse.Namespace(results=options.results, label=None, out=options.report))
    if options.target == "container":
        ensure_container(options.converge)
    fanout(argparse.Namespace(**base, n=[100, 1000, 3000], rate=5.0, warmup=1.0, grace=10.0))
    burst(argparse.Namespace(**dict(base, n=1000)))
    memory(argparse.Namespace(**dict(base, n=3000, steps=3, restart=True)))
    run_rolling(argparse.Namespace(**dict(base, screens=rolling.SCREENS, reps=1)))
    return write_report(argparse.Namespace(results=options.results, label=None, out=options.report))


def write_report(options):
    records = results.load(options.results)
    if not records:
        raise BenchError(f"no results in {options.results}")
    # The headline is a single-host variant; the cluster's runs have a section of their own.
    single = [record for record in records if not report.is_cluster(record)] or records
    fanouts = [record for record in single if record["kind"] == "fanout"] or single
    label = options.label or report.variant(fanouts[-1])
    if label not in report.variants(records):
        raise BenchError(f"no results for {label!r}; there are: {', '.join(map(repr, report.variants(records)))}")
    png = options.out.with_name("report.png")
    missing = report.plot(records, label, png)
    notes = ROOT / "bench" / "NOTES.md"
    notes = notes.read_text() if notes.exists() else None
    options.out.write_text(report.markdown(records, label, None if missing else png.name, notes))
    print(f"wrote {options.out}" + (f" (no PNG: {missing})" if missing else f" and {png}"))
    return 0


def run_rolling(options):
    """A deploy and a rollback under SCREENS open screens: on the cluster (--target cluster) or the container."""
    scenario = "cluster" if options.target == "cluster" else "default"
    inventory = options.inventory or molecule_inventory(scenario)
    runs = rolling.measure(inventory, options.screens, options.reps)
    target = {"name": "cluster" if scenario == "cluster" else "container", "inventory": str(inventory)}
    path = results.save(options.results, "rolling", _label(options), _record(options), target, runs)
    scenarios.log(f"results: {path}")


def run_deploy(options):
    runs = deploy.deploy(options.reps)
    path = results.save(options.results, "deploy", _label(options), _record(options), {"name": "container"}, runs)
    scenarios.log(f"results: {path}")


def main(argv=None):
    options = parse(argv)
    try:
        if options.command == "floor":
            floor.serve_forever(
                options.redis_url,
                options.channel,
                options.port,
                options.unix_socket,
                options.certfile,
                options.keyfile,
                options.deflate,
            )
            return 0
        if options.command == "publish":
            summary = floor.publish(
                options.redis_url, options.company, options.rate, options.duration, options.run, options.channel
            )
            print(json.dumps(summary))
            return 0
        handlers = {
            "fanout": fanout,
            "burst": burst,
            "memory": memory,
            "smoke": smoke,
            "all": run_all,
            "deploy": run_deploy,
            "rolling": run_rolling,
            "report": write_report,
        }
        return handlers[options.command](options) or 0
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"bench {options.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
