"""The report: bench/REPORT.md (markdown tables) and bench/report.png (percentiles against N, stack and
floor side by side), from the results files. Every figure is the median over repetitions; ratios are
taken stack to floor within each repetition (the two ran back to back), then their median.

Runs carry a label (`--label`, default the commit); a variant is a label plus any setting that makes
figures incomparable (another target, no compression). The report headlines one variant (the newest
unless asked) and lines up every variant in one table: that is how a change shows its before and after.
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
    lines += _variants(records)
    lines += ["", "## How these were measured", ""]
    for record in records:
        if variant(record) != label:
            continue
        target, machine = record["target"], record["machine"]
        lines.append(
            f"- {record['started']} `{record['kind']}` at {record['commit']}: {machine['cores']} cores "
            f"({machine['cpu']}), target {target.get('name')} {target.get('url') or ''}, "
            f"options `{_options(record['options'])}`"
        )
    return "\n".join(lines) + "\n"


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
    figure, axes = pyplot.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for axis, side in zip(axes, ("stack", "floor"), strict=True):
        points = [row for row in rows if side in row and row[side]["reps"]]
        for key, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^-"), ("max", "x:")):
            axis.plot([row["n"] for row in points], [row[side][key] for row in points], style, label=key)
        axis.set_title("stack: nginx, gunicorn, channels" if side == "stack" else "floor: one websockets process")
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
    figure.suptitle(label, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return None
