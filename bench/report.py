"""The report: bench/REPORT.md (markdown tables) and bench/report.png (percentiles against N, stack and
floor side by side), from the results files. Every figure is the median over repetitions; ratios are
taken stack to floor within each repetition (the two ran back to back), then their median.

Runs carry a label (`--label`, default the commit); a variant is a label plus any setting that makes
figures incomparable (another target, no compression). The report headlines one variant (the newest
unless asked) and lines up every variant in one table: that is how a change shows its before and after.

The cluster's runs (`--target cluster`) have a section of their own: fan-out through the web host against
the floor, how the sockets spread over the app hosts, and the capacity figure: socket deliveries per
CPU-second of the app hosts' gunicorn, with the capacity of N app hosts extrapolated from it.
"""

from collections import defaultdict

from bench.stats import median, ratio

TARGETS = {
    "fanout_1000": "1,000 clients at 5/s: p99 at most 2x the floor's p99, 100% delivered",
    "fanout_3000": "3,000 clients at 5/s: p99 under 1 s, 100% delivered",
    "burst": "burst of 1,000: zero handshake errors",
    "memory": "at most 30 KiB per idle connection",
    "converge": "first converge at most 4 minutes",
    "rerun": "rerun at most 45 s with changed=0",
}


def _fmt(value, digits=1, suffix=""):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value:,}{suffix}"


def _percent(value):
    return "-" if value is None else f"{value * 100:.2f}%".replace("100.00%", "100%")


def variant(record):
    """A record's variant: its label, plus each setting that makes its figures incomparable with the
    deployed stack's (another target, no compression, another channel layer or worker count)."""
    options, notes = record["options"], []
    if options.get("target", "container") != "container":
        notes.append(f"{options['target']} stack")
        if options.get("layer", "redis-pubsub") != "redis-pubsub":
            notes.append(f"layer {options['layer']}")
        if options.get("workers", 3) != 3:
            notes.append(f"{options['workers']} workers")
    if options.get("compression", "deflate") != "deflate":
        notes.append("no compression")
    return record["label"] + (f" ({', '.join(notes)})" if notes else "")


def is_cluster(record):
    return record["options"].get("target") == "cluster"


def cluster_variant(records):
    """The newest cluster variant with fan-out runs; None when no cluster was measured."""
    fanouts = [record for record in records if is_cluster(record) and record["kind"] == "fanout"]
    return variant(fanouts[-1]) if fanouts else None


def _runs(records, kind, label):
    """(record index, run) of every run of `kind` in variant `label`."""
    return [
        (index, run)
        for index, record in enumerate(records)
        if record["kind"] == kind and variant(record) == label
        for run in record["runs"]
    ]


def fanout_rows(records, label):
    """One row per (N, R): medians over repetitions of each side's figures and of the stack/floor ratios."""
    groups = defaultdict(lambda: {"stack": [], "floor": []})
    for index, run in _runs(records, "fanout", label):
        groups[(run["n"], run["rate"])][run["side"]].append((index, run))
    rows = []
    for (n, rate), sides in sorted(groups.items()):
        row = {"n": n, "rate": rate}
        for side, runs in sides.items():
            latencies = [run["latency_ms"] for _, run in runs]
            row[side] = {
                "reps": len(runs),
                **{key: median(item[key] for item in latencies) for key in ("p50", "p95", "p99", "max")},
                "p99_low": min((item["p99"] for item in latencies if item["p99"] is not None), default=None),
                "p99_high": max((item["p99"] for item in latencies if item["p99"] is not None), default=None),
                "delivered_min": min((run["delivered_ratio"] for _, run in runs), default=None),
                "lag_max": max((run["client"]["loop_lag_ms_max"] for _, run in runs), default=None),
            }
        floors = {(index, run["rep"]): run for index, run in sides["floor"]}
        pairs = [(run, floors.get((index, run["rep"]))) for index, run in sides["stack"]]
        pairs = [(stack, floor) for stack, floor in pairs if floor is not None]
        for key in ("p50", "p99"):
            row[f"ratio_{key}"] = median(ratio(s["latency_ms"][key], f["latency_ms"][key]) for s, f in pairs)
        rows.append(row)
    return rows


# --- Capacity: socket deliveries per CPU-second -------------------------------------------------------

HOSTS = (1, 2, 4, 8)


def server_cpu(run, role):
    """CPU seconds a run's servers of one role spent in its window: "app" (every app host's gunicorn), "web"
    (nginx) or "floor" (its process); None when not read."""
    cpu = run.get("cpu_s") or {}
    spent = cpu.get(role)
    return sum(spent.values()) if isinstance(spent, dict) else spent


def per_cpu_second(run, role):
    """Deliveries (frames delivered to clients) per CPU-second of the role's servers, in one run's window."""
    return ratio(run["delivered"], server_cpu(run, role))


def marginal_per_cpu_second(low, high, role="app"):
    """Deliveries per CPU-second of the extra load from run `low` to run `high` (more sockets): the fixed
    costs of a window (the layer's reads, timers, idle sockets) cancel out."""
    deliveries, cpu = high["delivered"] - low["delivered"], server_cpu(high, role) - server_cpu(low, role)
    return deliveries / cpu if deliveries > 0 and cpu > 0 else None


def extrapolate(per_cpu_s, hosts=HOSTS, cores=1, rate=5.0):
    """(app hosts, deliveries a second, sockets at `rate` events a second) if capacity scales linearly
    with CPU: per_cpu_s deliveries per CPU-second x cores x hosts."""
    return [(count, per_cpu_s * cores * count, per_cpu_s * cores * count / rate) for count in hosts]


def cluster_rows(records, label):
    """fanout_rows plus, per N: the sockets each app host held, deliveries per CPU-second of the app hosts,
    of the web host and of the floor, and the cores the app hosts used while it ran (medians of reps)."""
    runs = defaultdict(lambda: {"stack": [], "floor": []})
    for _, run in _runs(records, "fanout", label):
        runs[(run["n"], run["rate"])][run["side"]].append(run)
    rows = fanout_rows(records, label)
    for row in rows:
        stack, floor = runs[(row["n"], row["rate"])]["stack"], runs[(row["n"], row["rate"])]["floor"]
        spreads = [run["spread"] for run in stack if run.get("spread")]
        row["spread"] = {bind: median(spread.get(bind) for spread in spreads) for bind in spreads[0]} if spreads else {}
        row["app_per_cpu_s"] = median(per_cpu_second(run, "app") for run in stack)
        row["web_per_cpu_s"] = median(per_cpu_second(run, "web") for run in stack)
        row["floor_per_cpu_s"] = median(per_cpu_second(run, "floor") for run in floor)
        row["app_cores"] = median(ratio(server_cpu(run, "app"), run["client"].get("window_s")) for run in stack)
        row["stack_runs"] = stack
    return rows


def capacity(rows):
    """The capacity figures from cluster_rows: at the largest N (its medians), and the marginal one between
    the smallest and the largest N (median over repetitions paired by rep)."""
    rows = [row for row in rows if row["app_per_cpu_s"] is not None]
    if not rows:
        return None
    low, high = rows[0], rows[-1]
    marginal = None
    if high["n"] > low["n"]:
        by_rep = {run["rep"]: run for run in low["stack_runs"]}
        marginal = median(
            marginal_per_cpu_second(by_rep[run["rep"]], run) for run in high["stack_runs"] if run["rep"] in by_rep
        )
    return {
        "n": high["n"],
        "rate": high["rate"],
        "app": high["app_per_cpu_s"],
        "web": high["web_per_cpu_s"],
        "floor": high["floor_per_cpu_s"],
        "app_cores": high["app_cores"],
        "marginal": marginal,
        "marginal_from": low["n"],
    }


def burst_rows(records, label):
    groups = defaultdict(list)
    for _, run in _runs(records, "burst", label):
        groups[(run["n"], run["side"])].append(run)
    rows = []
    for (n, side), runs in sorted(groups.items()):
        errors, logged = defaultdict(int), defaultdict(int)
        for run in runs:
            for kind, count in run["errors"].items():
                errors[kind] += count
            for line, count in (run.get("server_errors") or {}).items():
                logged[line] += count
        rows.append(
            {
                "n": n,
                "side": side,
                "reps": len(runs),
                "errors_max": max(run["handshake_errors"] for run in runs),
                "errors": dict(errors),
                "logged": sorted(logged, key=logged.get, reverse=True)[:2],
                "all_connected_s": median(run["all_connected_s"] for run in runs),
                "connect_p99": median(run["connect_ms"]["p99"] for run in runs),
            }
        )
    return rows


def memory_rows(records, label):
    groups = defaultdict(list)
    for _, run in _runs(records, "memory", label):
        groups[(run["n"], run["side"])].append(run)
    return [
        {
            "n": n,
            "side": side,
            "reps": len(runs),
            "kib": median(run["kib_per_connection"] for run in runs),
            "start_kib": median(run["points"][0][1] for run in runs),
            "end_kib": median(run["points"][-1][1] for run in runs),
        }
        for (n, side), runs in sorted(groups.items())
    ]


def deploy_row(records, label):
    runs = [run for _, run in _runs(records, "deploy", label)]
    if not runs:
        return None
    return {
        "reps": len(runs),
        **{
            key: median(run[key] for run in runs)
            for key in ("create_s", "first_converge_s", "rerun_s", "molecule_test_s")
        },
        "rerun_changed_max": max(
            (run["rerun_changed"] for run in runs if run["rerun_changed"] is not None), default=None
        ),
    }


def targets(fanout, burst, memory, deploy):
    """(target, met: True/False/None for not measured, the figure) for each of the issue's targets."""
    by_n = {(row["n"], row["rate"]): row for row in fanout}
    verdicts = []
    row = by_n.get((1000, 5.0))
    if row and "stack" in row and "floor" in row:
        met = row["ratio_p99"] is not None and row["ratio_p99"] <= 2 and row["stack"]["delivered_min"] == 1
        figure = f"p99 {_fmt(row['ratio_p99'], 2)}x the floor's; delivered {_percent(row['stack']['delivered_min'])}"
        verdicts.append((TARGETS["fanout_1000"], met, figure))
    else:
        verdicts.append((TARGETS["fanout_1000"], None, "not measured"))
    row = by_n.get((3000, 5.0))
    if row and "stack" in row:
        stack = row["stack"]
        met = stack["p99"] is not None and stack["p99"] < 1000 and stack["delivered_min"] == 1
        verdicts.append(
            (TARGETS["fanout_3000"], met, f"p99 {_fmt(stack['p99'])} ms; delivered {_percent(stack['delivered_min'])}")
        )
    else:
        verdicts.append((TARGETS["fanout_3000"], None, "not measured"))
    row = next((row for row in burst if row["n"] == 1000 and row["side"] == "stack"), None)
    if row:
        figure = f"{row['errors_max']} in the worst of {row['reps']} bursts {row['errors'] or ''}".strip()
        verdicts.append((TARGETS["burst"], row["errors_max"] == 0, figure))
    else:
        verdicts.append((TARGETS["burst"], None, "not measured"))
    rows = [row for row in memory if row["side"] == "stack"]
    if rows:
        row = max(rows, key=lambda item: item["n"])
        met = row["kib"] is not None and row["kib"] <= 30
        verdicts.append((TARGETS["memory"], met, f"{_fmt(row['kib'])} KiB at N={row['n']:,}"))
    else:
        verdicts.append((TARGETS["memory"], None, "not measured"))
    if deploy:
        verdicts.append(
            (TARGETS["converge"], deploy["first_converge_s"] <= 240, f"{_fmt(deploy['first_converge_s'])} s")
        )
        met = deploy["rerun_s"] <= 45 and deploy["rerun_changed_max"] == 0
        verdicts.append((TARGETS["rerun"], met, f"{_fmt(deploy['rerun_s'])} s, changed={deploy['rerun_changed_max']}"))
    else:
        verdicts += [(TARGETS["converge"], None, "not measured"), (TARGETS["rerun"], None, "not measured")]
    return verdicts


def variants(records):
    seen = []
    for record in records:
        if variant(record) not in seen:
            seen.append(variant(record))
    return seen


def table(header, rows):
    """A markdown table; a header cell ending in ' >' is a right-aligned (numeric) column."""
    names = [cell.removesuffix(" >") for cell in header]
    rule = ["---:" if cell.endswith(" >") else "---" for cell in header]
    return ["| " + " | ".join(map(str, cells)) + " |" for cells in (names, rule, *rows)]


def markdown(records, label, png_name=None, notes=None):
    """The report; `notes` (markdown, from bench/NOTES.md) says why a target is not met and what was tried."""
    fanout, burst = fanout_rows(records, label), burst_rows(records, label)
    memory, deploy = memory_rows(records, label), deploy_row(records, label)
    lines = [
        "# Benchmark: fan-out, connect burst, memory, deploy",
        "",
        f"Variant **{label}**. Written by `python -m bench report` from the results files "
        "(`make bench` measures and writes it; `bench/README.md` says how).",
        "Every figure is the median over repetitions; a stack/floor ratio is taken within each repetition "
        "(the two ran back to back, with the same clients), then its median. Timing on a shared 2-core machine "
        "is noisy: read ratios and medians, not single figures.",
        "",
        "## Targets",
        "",
    ]
    verdicts = targets(fanout, burst, memory, deploy)
    lines += table(
        ["target", "met", "figure"],
        [(text, "-" if met is None else "yes" if met else "**no**", figure) for text, met, figure in verdicts],
    )
    lines += ["", "## Fan-out latency (ms, send to receive), stack and floor", ""]
    if png_name:
        lines += [f"![percentiles against N]({png_name})", ""]
    rows = []
    for row in fanout:
        for side in ("stack", "floor"):
            if side not in row or not row[side]["reps"]:
                continue
            f = row[side]
            ratios = [_fmt(row[key], 2) + "x" if side == "stack" else "" for key in ("ratio_p50", "ratio_p99")]
            p99 = f"{_fmt(f['p99'])} ({_fmt(f['p99_low'])}-{_fmt(f['p99_high'])})"
            rows.append(
                [f"{row['n']:,}", _fmt(row["rate"], 0), side, f["reps"], _fmt(f["p50"]), _fmt(f["p95"]), p99]
                + [_fmt(f["max"]), _percent(f["delivered_min"]), *ratios, _fmt(f["lag_max"])]
            )
    header = ["N >", "R/s >", "side", "reps >", "p50 >", "p95 >", "p99 (range) >", "max >"]
    header += ["delivered (worst rep) >", "p50 ratio >", "p99 ratio >", "client loop lag max >"]
    lines += table(header, rows)
    lines += ["", "## Connect burst", ""]
    lines += table(
        ["N >", "side", "reps >", "handshake errors (worst rep) >", "errors by kind, all reps"]
        + ["all connected after (s) >", "connect p99 (ms) >", "the server logged"],
        [
            [f"{row['n']:,}", row["side"], row["reps"], row["errors_max"], row["errors"] or "none"]
            + [_fmt(row["all_connected_s"], 2), _fmt(row["connect_p99"]), "; ".join(f"`{x}`" for x in row["logged"])]
            for row in burst
        ],
    )
    lines += [
        "",
        "## Memory per idle connection",
        "",
        "Resident memory of gunicorn's workers, summed (the floor: its one process), from a fresh start "
        "with 0 sockets to N idle sockets.",
        "",
    ]
    lines += table(
        ["N >", "side", "reps >", "at 0 (KiB) >", "at N (KiB) >", "KiB per connection >"],
        [
            [f"{row['n']:,}", row["side"], row["reps"], _fmt(row["start_kib"], 0), _fmt(row["end_kib"], 0)]
            + [_fmt(row["kib"])]
            for row in memory
        ],
    )
    lines += _rolling(records)
    lines += ["", "## Deploy", ""]
    if deploy:
        lines += table(
            ["reps >", "create (s) >", "first converge (s) >", "rerun (s) >", "rerun changed >"]
            + ["whole `molecule test` (s) >"],
            [
                [deploy["reps"], _fmt(deploy["create_s"]), _fmt(deploy["first_converge_s"]), _fmt(deploy["rerun_s"])]
                + [deploy["rerun_changed_max"], _fmt(deploy["molecule_test_s"])]
            ],
        )
    else:
        lines.append("Not measured for this variant (`python -m bench deploy`).")
    if notes:
        lines += ["", notes.strip()]
    lines += _variants([record for record in records if not is_cluster(record)])
    cluster = cluster_variant(records)
    if cluster:
        lines += _cluster(records, cluster)
    lines += ["", "## How these were measured", ""]
    for record in records:
        if variant(record) not in (label, cluster):
            continue
        target, machine = record["target"], record["machine"]
        lines.append(
            f"- {record['started']} `{record['kind']}` at {record['commit']}: {machine['cores']} cores "
            f"({machine['cpu']}), target {target.get('name')} {target.get('url') or ''}, "
            f"options `{_options(record['options'])}`"
        )
    return "\n".join(lines) + "\n"


def rolling_rows(records):
    """The newest `rolling` record of each target: one row per deploy or rollback it ran."""
    newest = {}
    for record in records:
        if record["kind"] == "rolling":
            newest[record["target"].get("name")] = record
    return [(name, run) for name, record in sorted(newest.items()) for run in record["runs"]]


def _rolling(records):
    rows = rolling_rows(records)
    lines = ["", "## Deploys under load", ""]
    if not rows:
        return lines + ["Not measured (`python -m bench rolling`, or `--target cluster`)."]
    lines += [
        "Staff screens open and a table event every 200 ms (bench/screens.py, the documented client) while "
        "`site.yml` deploys a changed release, then while `playbooks/rollback.yml` goes back: the graceful "
        "reload on one app host (container), the rolling deploy behind nginx on two (cluster).",
        "",
    ]
    lines += table(
        ["target", "action", "app hosts >", "screens >", "playbook (s) >", "reconnected >", "closes"]
        + ["handshakes failed >", "events lost >", "stale screens >", "longest gap (s) >"],
        [
            [name, run["action"], run["app_hosts"], run["screens"], _fmt(run["playbook_s"]), run["reconnected"]]
            + [", ".join(f"{code}: {n}" for code, n in sorted(run["closes"].items())) or "none"]
            + [sum(run["handshake_failures"].values()), sum(run["event_errors"].values()), run["stale"]]
            + [_fmt(run["longest_gap_s"], 2)]
            for name, run in rows
        ],
    )
    return lines


def _spread(spread):
    return ", ".join(f"{bind.rpartition(':')[0]}: {_fmt(count, 0)}" for bind, count in spread.items()) or "-"


def _cluster(records, label):
    """The Cluster section: fan-out through the web host against the floor, and the capacity figure."""
    rows = cluster_rows(records, label)
    found = capacity(rows)
    machine = next(record["machine"] for record in records if variant(record) == label)
    lines = [
        "",
        "## Cluster: fan-out through the web host, and capacity",
        "",
        f"Variant **{label}** (`make bench-cluster`). Clients connect to the site's name on the web host "
        "(nginx, TLS), which hands each socket to one of the app hosts (gunicorn, 3 uvicorn workers each) "
        "over TCP; the sender runs on the first app host and every worker reads the broadcast from the Redis "
        "master the Sentinels name. The floor ran in the same run on this machine, subscribed to that same "
        "master, with the same clients. Every host is a container on this one machine, sharing its cores with "
        f"the clients ({machine['cores']} cores, {machine['cpu']}; the single-host figures above may come from "
        "another machine): read the ratios and the CPU-second figures, not the latencies as those of real hosts.",
        "",
    ]
    table_rows = []
    for row in rows:
        for side in ("stack", "floor"):
            if side not in row or not row[side]["reps"]:
                continue
            f, stack = row[side], side == "stack"
            table_rows.append(
                [f"{row['n']:,}", _fmt(row["rate"], 0), side, f["reps"], _fmt(f["p50"])]
                + [f"{_fmt(f['p99'])} ({_fmt(f['p99_low'])}-{_fmt(f['p99_high'])})", _percent(f["delivered_min"])]
                + [_fmt(row[key], 2) + "x" if stack else "" for key in ("ratio_p50", "ratio_p99")]
                + [_spread(row["spread"]) if stack else ""]
                + [_fmt(row["app_per_cpu_s" if stack else "floor_per_cpu_s"], 0)]
                + [_fmt(row["web_per_cpu_s"], 0) if stack else "", _fmt(row["app_cores"], 2) if stack else ""]
            )
    header = ["N >", "R/s >", "side", "reps >", "p50 (ms) >", "p99 (range, ms) >", "delivered (worst rep) >"]
    header += ["p50 ratio >", "p99 ratio >", "sockets per app host", "deliveries per CPU-s of the server >"]
    header += ["deliveries per CPU-s of nginx >", "app hosts' CPU in use (cores) >"]
    lines += table(header, table_rows)
    lines += [
        "",
        "The server is the app hosts' gunicorn, workers and all, for the stack, and the floor's one process for "
        "the floor. CPU time is read on every app host before the sender starts and after the last delivery "
        "(systemd's accounting when it keeps it, else the unit's processes' /proc times); deliveries are the "
        "frames delivered to clients in that window. The floor terminates TLS itself, where the stack's app "
        "hosts leave it to nginx: its figure is not a like-for-like bound on the app hosts'.",
    ]
    if not found:
        return lines
    lines += [
        "",
        "### Capacity",
        "",
        f"**{_fmt(found['app'], 0)} socket deliveries per CPU-second of the app hosts**, measured at "
        f"N={found['n']:,} and {_fmt(found['rate'], 0)} events a second, while the app hosts used "
        f"{_fmt(found['app_cores'], 2)} cores between them.",
    ]
    if found["marginal"]:
        lines[-1] += (
            f" The extra load from N={found['marginal_from']:,} to N={found['n']:,} cost "
            f"{_fmt(found['marginal'], 0)} deliveries per CPU-second: a window's fixed costs (the layer's reads, "
            "timers, idle sockets) weigh less as N grows, so the measured figure is the lower, safer one."
        )
    lines += [
        "",
        f"Extrapolated from it, with 1 CPU per app host (deliveries a second = {_fmt(found['app'], 0)} x "
        "cores x app hosts):",
        "",
    ]
    lines += table(
        ["app hosts >", "deliveries a second >", "sockets at 5 events a second >"],
        [[count, _fmt(per_s, 0), _fmt(sockets, 0)] for count, per_s, sockets in extrapolate(found["app"], rate=5.0)],
    )
    web = found["web"]
    lines += [
        "",
        "Assumptions, plainly:",
        "",
        "- Linear scaling: each app host (or core) added carries what one measured CPU-second carries. It was "
        "measured below saturation; at saturation latency grows first, so the latency targets hold at less.",
        "- Redis is not the bottleneck: with the pub/sub layer a broadcast is one Redis message per worker "
        "(3 per app host), however many sockets there are.",
        "- nginx and the web host are not the bottleneck. Measured, nginx proxied "
        f"{_fmt(web, 0)} deliveries per CPU-second of the web host (TLS and a proxied frame each)"
        + (
            ": one web-host core for every "
            f"{_fmt(web / found['app'], 1)} app-host cores, and more web hosts beyond that."
            if web
            else "."
        ),
        "- The sender's own process (`bench_broadcast` on the first app host) is not counted: a broadcast costs "
        "its sender once per event, not per socket.",
        "- A CPU-second is one of this machine's cores, shared with the clients, nginx and Redis while measured.",
    ]
    return lines


def _options(options):
    return " ".join(f"{key}={value}" for key, value in sorted(options.items()) if value not in (None, "", False))


def _variants(records):
    """Every variant side by side, N by N: the before and after of each change."""
    names = variants(records)
    if len(names) < 2:
        return []
    rows = []
    for name in names:
        fanout = {row["n"]: row for row in fanout_rows(records, name) if row["rate"] == 5.0}
        burst = {row["n"]: row["errors_max"] for row in burst_rows(records, name) if row["side"] == "stack"}
        memory = {row["n"]: row["kib"] for row in memory_rows(records, name) if row["side"] == "stack"}
        for n in sorted(set(fanout) | set(burst) | set(memory)):
            row = fanout.get(n, {"ratio_p99": None})
            stack, floor = row.get("stack") or {}, row.get("floor") or {}
            rows.append(
                [name, f"{n:,}", _fmt(stack.get("p50")), _fmt(stack.get("p99")), _fmt(floor.get("p99"))]
                + [_fmt(row["ratio_p99"], 2), _percent(stack.get("delivered_min"))]
                + [burst.get(n, "-"), _fmt(memory.get(n))]
            )
    header = ["variant", "N >", "stack p50 >", "stack p99 >", "floor p99 >", "p99 ratio >", "delivered >"]
    header += ["burst errors >", "KiB/conn >"]
    return ["", "## Variants (before and after), fan-out at 5/s", "", *table(header, rows)]


def plot(records, label, path):
    """Percentiles against N, stack and floor side by side. None once drawn, else why it was not."""
    rows = fanout_rows(records, label)
    if not rows:
        return "no fan-out results"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return "matplotlib is not installed"
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    cluster = cluster_variant(records)
    panels = [(rows, side, None) for side in ("stack", "floor")]
    if cluster:
        panels.append((fanout_rows(records, cluster), None, "cluster: through the web host, stack and floor"))
    figure, axes = pyplot.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), sharey=True)
    for axis, (rows, side, title) in zip(axes, panels, strict=True):
        if side:
            points = [row for row in rows if side in row and row[side]["reps"]]
            for key, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^-"), ("max", "x:")):
                axis.plot([row["n"] for row in points], [row[side][key] for row in points], style, label=key)
            title = "stack: nginx, gunicorn, channels" if side == "stack" else "floor: one websockets process"
        else:
            for name, colour in (("stack", "C0"), ("floor", "C1")):
                points = [row for row in rows if name in row and row[name]["reps"]]
                for key, style in (("p50", "o--"), ("p99", "^-")):
                    x, y = [row["n"] for row in points], [row[name][key] for row in points]
                    axis.plot(x, y, style, color=colour, label=f"{name} {key}")
        axis.set_title(title)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(sorted({row["n"] for row in rows}))
        axis.xaxis.set_major_formatter(plain)
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(plain)
        axis.set_xlabel("clients (N)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    axes[0].set_ylabel("latency, send to receive (ms)")
    figure.suptitle(label + (f"; cluster: {cluster}" if cluster else ""), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return None
