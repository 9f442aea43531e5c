"""The benchmark's own logic: percentiles, what the clients count, the report's medians, ratios and verdicts."""

import json

import pytest

from bench import report
from bench.clients import Endpoint, _Clients, classify, source_addresses
from bench.deploy import recap_changed
from bench.scenarios import fanout_problems
from bench.stats import median, percentile, summarize

COMPANY = "5eed0000-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1), (50, 50.5), (99, 99.01), (100, 100)],
)
def test_percentiles_interpolate_between_ranks_like_numpy(q, expected):
    assert percentile(list(range(1, 101)), q) == pytest.approx(expected)


def test_a_summary_of_nothing_has_no_figures():
    assert summarize([]) == {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}


def test_a_summary_sorts_its_values_first():
    summary = summarize([5, 1, 3])
    assert (summary["p50"], summary["max"], summary["count"]) == (3, 5, 3)


def test_a_median_leaves_out_missing_figures():
    assert median([3, None, 1, 2]) == 2
    assert median([None]) is None


def test_no_source_address_carries_more_sockets_than_nginx_allows_per_address():
    addresses = source_addresses(3000, 40, first=64_500)
    counts = {address: addresses.count(address) for address in set(addresses)}
    assert max(counts.values()) == 40 and len(counts) == 75
    assert all(address.startswith("127.77.") and address.split(".")[-1] != "0" for address in counts)


def test_handshake_failures_get_short_names():
    assert classify(TimeoutError()) == "timeout"
    assert classify(ConnectionResetError(104, "reset")) == "reset"


def clients():
    box = _Clients(None, Endpoint(url="ws://localhost/"), [None, None], 10)
    box.sockets = [object(), object()]
    box._reset(run="r1", company=COMPANY, warmup_seq=1)
    return box


def frame(seq, run="r1", company=COMPANY, kind="table_status_changed", sent_at=100.0):
    data = {"id": "t1", "company_id": company, "run": run, "seq": seq, "sent_at": sent_at}
    return json.dumps({"type": kind, "data": data}).encode()


def test_clients_count_each_event_once_and_time_those_after_the_warmup():
    box = clients()
    for seq in range(3):
        box._on_frame(0, frame(seq), now=100.25)
    box._on_frame(0, frame(2), now=100.5)
    assert box.received == [3, 0] and box.duplicates == 1
    assert list(box.latencies) == [250.0, 250.0]  # seq 0 was warm-up


@pytest.mark.parametrize(
    "frame_bytes",
    [
        frame(0, run="another run"),
        frame(0, company="another company"),
        frame(0, kind="order_created"),
        json.dumps({"type": "pong"}).encode(),
        b"not json",
        None,  # a fragment
    ],
)
def test_clients_count_any_other_frame_as_bad(frame_bytes):
    box = clients()
    box._on_frame(1, frame_bytes, now=101)
    assert box.bad == 1 and box.received == [0, 0] and len(box.bad_examples) == 1


def fanout_run(side="stack", n=2, rep=0, p50=10.0, p99=20.0, delivered=1.0):
    sent = 10
    return {
        "side": side,
        "n": n,
        "rate": 5.0,
        "rep": rep,
        "open": n,
        "connect_failed": {},
        "sent": sent,
        "expected": n * sent,
        "delivered": round(n * sent * delivered),
        "delivered_ratio": delivered,
        "latency_ms": {"count": 1, "p50": p50, "p95": p99, "p99": p99, "max": p99},
        "bad_frames": 0,
        "bad_examples": [],
        "duplicates": 0,
        "dropped": 0,
        "table_ids": {"t1": n * sent},
        "expected_table_id": "t1",
        "client": {"loop_lag_ms_max": 1.0},
    }


def test_a_complete_run_has_no_problem_and_a_short_one_says_what_is_missing():
    assert fanout_problems(fanout_run()) == []
    short = dict(fanout_run(), delivered=19, table_ids={"t1": 18, "t2": 1})
    problems = fanout_problems(short)
    assert "stack: delivered 19 of 20 events" in problems and len(problems) == 2


def record(kind, runs, label="before", target_name="container", **options):
    """A results file's record, as bench/results.py writes it."""
    return {
        "kind": kind,
        "label": label,
        "options": options,
        "runs": runs,
        "started": "20260101T000000Z",
        "commit": "abc1234",
        "machine": {"cores": 2, "cpu": "test"},
        "target": {"name": target_name, "url": "wss://localhost/ws/cafe/tables/"},
    }


def test_the_report_takes_medians_and_pairs_ratios_within_each_repetition():
    runs = []
    for rep, (stack_p99, floor_p99) in enumerate([(30.0, 10.0), (80.0, 40.0), (50.0, 10.0)]):
        runs += [fanout_run("stack", 1000, rep, p99=stack_p99), fanout_run("floor", 1000, rep, p99=floor_p99)]
    rows = report.fanout_rows([record("fanout", runs)], "before")
    assert rows[0]["stack"]["p99"] == 50.0 and rows[0]["floor"]["p99"] == 10.0
    assert rows[0]["ratio_p99"] == 3.0  # ratios 3, 2, 5: not 50 / 10
    assert (rows[0]["stack"]["p99_low"], rows[0]["stack"]["p99_high"]) == (30.0, 80.0)


def test_the_targets_judge_the_worst_delivery_and_the_ratio():
    runs = [fanout_run("stack", 1000, rep, p99=15.0) for rep in range(3)]
    runs += [fanout_run("floor", 1000, rep, p99=10.0) for rep in range(3)]
    runs[1]["delivered_ratio"] = 0.999
    verdicts = report.targets(report.fanout_rows([record("fanout", runs)], "before"), [], [], None)
    assert verdicts[0][1] is False and "99.90%" in verdicts[0][2]
    assert [met for _, met, _ in verdicts[1:]] == [None] * 5


def test_variants_keep_incomparable_runs_apart():
    local = record("fanout", [], target="local", compression="none")
    assert report.variant(local) == "before (local stack, no compression)"
    assert report.variant(record("fanout", [], target="container", compression="deflate")) == "before"


def test_the_markdown_names_each_target_and_the_plot_file():
    runs = [fanout_run("stack", 100), fanout_run("floor", 100)]
    text = report.markdown([record("fanout", runs)], "before", "report.png")
    assert "![percentiles against N](report.png)" in text
    assert text.count("| - | not measured |") == 6 and "| 100 | 5 | stack | 1 |" in text


def test_the_notes_come_before_how_it_was_measured():
    runs = [fanout_run("stack", 100), fanout_run("floor", 100)]
    text = report.markdown([record("fanout", runs)], "before", None, "## Why a target is not met\n\nMemory: ...\n")
    assert text.index("## Deploy") < text.index("## Why a target is not met") < text.index("## How these were measured")
    assert "## Why" not in report.markdown([record("fanout", runs)], "before")


def test_the_rerun_counts_changed_tasks_from_the_play_recap():
    output = (
        "PLAY RECAP ***\nnurcrm-local               : ok=88   changed=0    unreachable=0    failed=0    skipped=9\n"
    )
    assert recap_changed(output) == 0
    assert recap_changed("nurcrm-local : ok=88 \x1b[0;33mchanged=2\x1b[0m unreachable=0 failed=0") == 2
    assert recap_changed("no recap") is None
    boxed = "  \x1b[2m\x1b[32m│\x1b[0m \x1b[32mnurcrm-local   : ok=55   changed=3    unreachable=0    failed=0\x1b[0m"
    assert recap_changed(boxed) == 3, "molecule's boxed output"


def test_the_documented_backoff_is_full_jitter_doubling_up_to_its_cap():
    import random

    from bench.screens import BASE_S, CAP_S, backoff

    rng = random.Random(7)
    for attempt in range(10):
        bound = min(CAP_S, BASE_S * 2**attempt)
        draws = [backoff(attempt, rng) for _ in range(2000)]
        assert 0 <= min(draws) and max(draws) <= bound
        assert max(draws) > 0.95 * bound and min(draws) < 0.05 * bound  # spread over the whole window
    assert min(CAP_S, BASE_S * 2**9) == CAP_S == 8.0


def hello(*rows, kind="connection_established"):
    return {"type": kind, "tables": [{"id": i, "status": status, "version": v} for i, status, v in rows]}


def changed(table, status, version=None):
    data = {"id": table, "status": status} | ({"version": version} if version is not None else {})
    return {"type": "table_status_changed", "data": data}


def test_a_screen_never_moves_a_table_back_to_an_older_version():
    """The documented client's rule (docs/protocol.md): rows and events older than what it shows are dropped,
    whatever frame brings them; a snapshot drops the tables it no longer lists; a frame without a version is
    applied as it comes."""
    from bench.screens import View

    view = View()
    view.apply(hello(("a", "free", 3), ("b", "free", 1)))
    view.apply(changed("a", "occupied", 2))  # published before the snapshot, arriving after it
    assert (view.tables, view.stale) == ({"a": "free", "b": "free"}, 1)
    view.apply(changed("a", "occupied", 4))
    view.apply(hello(("a", "free", 3), ("c", "reserved", 1), kind="tables_snapshot"))  # read before that event
    assert (view.tables, view.versions, view.stale) == ({"a": "occupied", "c": "reserved"}, {"a": 4, "c": 1}, 2)
    view.apply(changed("a", "cleaning"))  # an older release's event: no version
    assert view.tables["a"] == "cleaning" and view.versions["a"] is None
    assert view.seen[("a", 4)] == {"occupied"} and ("a", 2) not in view.seen


def test_a_load_names_states_no_database_had_and_confirmed_changes_a_screen_misses():
    from bench.screens import Load, Screen

    load = Load(site=None, token="", count=2)
    load.screens = [Screen(index=0), Screen(index=1)]
    load.written = {("a", 2): "occupied", ("a", 3): "free"}
    load.screens[0].apply(hello(("a", "occupied", 2)))
    load.screens[1].apply(hello(("a", "occupied", 3), ("b", "free", None)))
    assert load.missing() == {0: ["a"]}
    assert load.untrue() == {("a", 3): {"occupied"}, ("b", None): {"free"}}


def rolling_run(action, gap, **counts):
    return {
        "action": action,
        "app_hosts": 2,
        "screens": 300,
        "playbook_s": 40.0,
        "reconnected": 300,
        "closes": {"1012": 450, **counts},
        "handshake_failures": {},
        "event_errors": {},
        "stale": 0,
        "longest_gap_s": gap,
    }


def test_the_report_shows_the_newest_deploy_under_load_of_each_target():
    old = record("rolling", [rolling_run("deploy", 9.0)], target_name="cluster")
    new = record("rolling", [rolling_run("deploy", 3.25, **{"1013": 12}), rolling_run("rollback", 2.5)], "after")
    new["target"]["name"] = "cluster"
    lines = report._rolling([old, new, record("rolling", [rolling_run("deploy", 4.0)])])
    rows = [line for line in lines if line.startswith("| cluster") or line.startswith("| container")]
    assert len(rows) == 3
    assert "| 1012: 450, 1013: 12 |" in rows[0] and rows[0].endswith("| 3.25 |")  # the cluster's newest
    assert all("9.00" not in row for row in rows)
    assert report._rolling([])[-1].startswith("Not measured")
