"""nurcrm-doctor --metrics: the walk as node-exporter's textfile collector serves it, in the names of issue 16's
contract; the file replaced whole or not at all; nurcrm_doctor_up 0 when the doctor could not look."""

import json
import os
from datetime import UTC, datetime

import pytest
from conftest import HEALTHY, ONE_HOST, REFUSED, make_facts, make_sentinel_cluster
from prometheus_client.parser import text_string_to_metric_families
from test_cli import doctor as console
from test_cli import one_line

from doctor import metrics
from doctor.cli import report
from doctor.registry import HOST, evaluate

NOW = 1_800_000_000.0


def scrape(path):
    """The file as Prometheus reads it: metric name -> {frozenset of its labels: value}."""
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def value(found, name):
    """An unlabelled metric's value."""
    return found[name][frozenset()]


def labels(result):
    return frozenset((label, result[label]) for label in metrics.LABELS)


def written(tmp_path, facts, seconds=12.3):
    """The walk's report over these facts, and the file --metrics writes of it, as scraped."""
    data = report(evaluate(facts), facts, seconds)
    path = tmp_path / "nurcrm_doctor.prom"
    metrics.write(path, metrics.collect(data, now=NOW))
    return data, scrape(path)


def errors_logged(facts):
    """The last step fails: gunicorn logged an error during the walk."""
    facts.walk_logs[ONE_HOST]["gunicorn"] = ["ERROR Exception in ASGI application"]
    return facts


def nothing_delivered(facts):
    """The delivery step fails: the socket received no event, so its arrival was not measured."""
    facts.session["event"] = None
    del facts.session["event_ms"]
    return facts


def test_each_check_result_is_one_check_ok_with_the_labels_the_doctor_prints(tmp_path):
    data, found = written(tmp_path, errors_logged(make_facts()))
    assert found["nurcrm_doctor_check_ok"] == {labels(r): float(r["status"] == "pass") for r in data["results"]}
    assert len(found["nurcrm_doctor_check_ok"]) == len(data["results"])
    failed = [dict(key) for key, ok in found["nurcrm_doctor_check_ok"].items() if not ok]
    assert failed == [{"step": "logs", "check": "recent_errors", "host": ONE_HOST, "layer": "logs"}]


def test_a_healthy_walk_is_up_healthy_without_a_first_failure_and_carries_what_it_measured(tmp_path):
    _, found = written(tmp_path, make_facts())
    assert (value(found, "nurcrm_doctor_up"), value(found, "nurcrm_doctor_healthy")) == (1, 1)
    assert "nurcrm_doctor_first_failure" not in found
    assert set(found["nurcrm_doctor_check_ok"].values()) == {1.0}
    session = HEALTHY["session"]
    assert value(found, "nurcrm_doctor_ping_seconds") == pytest.approx(session["pong_ms"] / 1000)
    assert value(found, "nurcrm_doctor_delivery_seconds") == pytest.approx(session["event_ms"] / 1000)
    not_after = datetime(2027, 12, 1, 21, 30, 10, tzinfo=UTC).timestamp()  # healthy_host.json's certificate
    assert value(found, "nurcrm_doctor_certificate_expiry_timestamp_seconds") == not_after
    assert value(found, "nurcrm_doctor_walk_seconds") == 12.3
    assert value(found, "nurcrm_doctor_last_run_timestamp_seconds") == NOW


def test_the_first_failure_is_the_first_failed_check_alone_and_what_was_not_measured_is_absent(tmp_path):
    data, found = written(tmp_path, errors_logged(nothing_delivered(make_facts())))
    delivery = next(r for r in data["results"] if r["check"] == "delivery")
    assert found["nurcrm_doctor_first_failure"] == {labels(delivery): 1.0}
    assert dict(labels(delivery)) == {"step": "delivery", "check": "delivery", "host": "localhost", "layer": "delivery"}
    assert value(found, "nurcrm_doctor_healthy") == 0 and value(found, "nurcrm_doctor_up") == 1
    assert "nurcrm_doctor_delivery_seconds" not in found and "nurcrm_doctor_ping_seconds" in found


def test_a_host_that_does_not_answer_is_the_first_failure_on_its_host_in_layer_host(tmp_path):
    facts = make_sentinel_cluster()
    facts.hosts["app2"] = {"unreachable": REFUSED}
    _, found = written(tmp_path, facts)
    first = dict(next(iter(found["nurcrm_doctor_first_failure"])))
    assert first == {"step": "gunicorn", "check": "gunicorn_active", "host": "app2", "layer": HOST}
    on_app2 = [ok for key, ok in found["nurcrm_doctor_check_ok"].items() if dict(key)["host"] == "app2"]
    assert len(on_app2) > 1 and set(on_app2) == {0.0}, "its other checks were skipped: not proven, so not ok"


def test_a_site_the_doctor_got_no_certificate_from_has_no_expiry(tmp_path):
    facts = make_facts()
    facts.tls = {"addresses": ["127.0.0.1"], "error": "certificate rejected: certificate has expired"}
    _, found = written(tmp_path, facts)
    assert "nurcrm_doctor_certificate_expiry_timestamp_seconds" not in found
    tls = next(key for key in found["nurcrm_doctor_check_ok"] if dict(key)["check"] == "tls_certificate")
    assert found["nurcrm_doctor_check_ok"][tls] == 0


def test_when_the_doctor_could_not_look_it_writes_up_0_and_the_time_only(tmp_path):
    path = tmp_path / "nurcrm_doctor.prom"
    metrics.write(path, metrics.collect(None, now=NOW))
    assert scrape(path) == {
        "nurcrm_doctor_up": {frozenset(): 0.0},
        "nurcrm_doctor_last_run_timestamp_seconds": {frozenset(): NOW},
    }


# --- The file is replaced whole ------------------------------------------------------------------------------
def test_a_new_run_replaces_the_file_by_a_rename_so_a_reader_never_sees_half_of_it(tmp_path):
    path = tmp_path / "nurcrm_doctor.prom"
    metrics.write(path, metrics.collect(None, now=NOW))
    old, inode = path.read_text(), path.stat().st_ino
    with path.open() as reading:  # node-exporter in the middle of reading the old run
        metrics.write(path, metrics.collect(report(evaluate(make_facts()), make_facts(), 1.0), now=NOW + 60))
        assert reading.read() == old, "the old file was written over in place"
    assert path.stat().st_ino != inode and value(scrape(path), "nurcrm_doctor_up") == 1
    assert os.listdir(tmp_path) == [path.name], "a temporary file was left beside it"


class Broken:
    """A collector that fails while the file is being made."""

    def collect(self):
        yield from ()
        raise RuntimeError("the run broke off")


def test_a_write_that_breaks_off_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "nurcrm_doctor.prom"
    metrics.write(path, metrics.collect(None, now=NOW))
    old = path.read_text()
    registry = metrics.collect(report(evaluate(make_facts()), make_facts(), 1.0), now=NOW + 60)
    registry.register(Broken())
    with pytest.raises(RuntimeError):
        metrics.write(path, registry)
    assert path.read_text() == old and os.listdir(tmp_path) == [path.name]


# --- The command --------------------------------------------------------------------------------------------
def test_the_command_writes_what_its_json_says_and_prints_as_without_metrics(doctor, tmp_path):
    path = tmp_path / "nurcrm_doctor.prom"
    code, out, err = doctor("--json", "--metrics", str(path))
    data = json.loads(out)
    assert (code, err) == (0, "") and data["healthy"]
    found = scrape(path)
    assert found["nurcrm_doctor_check_ok"] == {labels(r): 1.0 for r in data["results"]}
    assert value(found, "nurcrm_doctor_walk_seconds") == data["seconds"]
    assert value(found, "nurcrm_doctor_ping_seconds") == data["measured"]["ping_seconds"]
    code, table, _ = doctor("--metrics", str(path))
    assert code == 0 and table.splitlines()[:-1] == doctor()[1].splitlines()[:-1], "all but the walk's seconds"


def test_the_command_with_a_host_down_exits_1_and_names_it_in_the_file(doctor, tmp_path):
    path = tmp_path / "nurcrm_doctor.prom"
    code, _, _ = doctor("--metrics", str(path), down={"app2"})
    found = scrape(path)
    assert code == 1 and value(found, "nurcrm_doctor_healthy") == 0
    assert {dict(key)["host"] for key in found["nurcrm_doctor_first_failure"]} == {"app2"}


def test_the_command_that_cannot_look_keeps_its_line_and_exit_status_and_writes_up_0(doctor, tmp_path):
    path = tmp_path / "nurcrm_doctor.prom"
    path.write_text("nurcrm_doctor_up 1\n")  # the last run's
    every = set(make_sentinel_cluster().hosts)
    code, out, err = doctor("--metrics", str(path), down=every)
    assert (code, out) == (2, "") and err == f"nurcrm-doctor: host web1 is unreachable: {REFUSED}\n"
    assert set(scrape(path)) == {"nurcrm_doctor_up", "nurcrm_doctor_last_run_timestamp_seconds"}
    assert value(scrape(path), "nurcrm_doctor_up") == 0


def test_a_file_that_cannot_be_written_is_one_line_and_exit_status_2_after_the_report(doctor, tmp_path):
    (tmp_path / "nurcrm_doctor.prom").mkdir()  # a directory where the file goes
    code, out, err = doctor("--metrics", str(tmp_path / "nurcrm_doctor.prom"))
    assert code == 2 and "checks pass." in out
    assert err == f"nurcrm-doctor: cannot write the metrics to {tmp_path / 'nurcrm_doctor.prom'}: Is a directory\n"
    assert os.listdir(tmp_path) == ["nurcrm_doctor.prom"]


def test_the_installed_command_writes_up_0_for_a_misspelled_inventory(tmp_path):
    """The console script as the monitoring host's timer runs it: its usual line, exit status 2, up 0."""
    path = tmp_path / "nurcrm_doctor.prom"
    code, out, err = console("-i", "inventory/prd", "--metrics", str(path))
    assert (code, out) == (2, "")
    assert one_line(err) == "nurcrm-doctor: inventory inventory/prd: no such file or directory"
    assert value(scrape(path), "nurcrm_doctor_up") == 0


def test_metrics_with_fix_is_refused_in_one_line_before_any_walk(tmp_path):
    """The watcher only looks: a timer must never rerun a playbook."""
    path = tmp_path / "nurcrm_doctor.prom"
    code, out, err = console("--fix", "--metrics", str(path))
    assert (code, out) == (2, "") and one_line(
        err
    ) == "nurcrm-doctor: --metrics goes without --fix: the watcher only looks"
    assert not path.exists()


@pytest.mark.parametrize(
    "name, said",
    [
        ("nurcrm_doctor.txt", "node-exporter reads only *.prom"),
        ("missing/nurcrm_doctor.prom", "no directory {dir}/missing"),
    ],
)
def test_a_metrics_file_nothing_would_read_is_refused_in_one_line(tmp_path, name, said):
    code, _, err = console("--metrics", str(tmp_path / name))
    assert code == 2
    assert one_line(err) == f"nurcrm-doctor: --metrics {tmp_path / name}: {said.format(dir=tmp_path)}"
