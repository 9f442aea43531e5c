"""One run of the doctor as Prometheus metrics (nurcrm-doctor --metrics FILE): a file in the text format that
node-exporter's textfile collector serves, so a timer on the monitoring host turns the walk into alerts.

The names are the observability contract's (issue 16); a check's labels are the ones the doctor prints
(step, check, host, layer of its Result). The file is written to a temporary name beside it and renamed
over it (prometheus_client's write_to_textfile): the collector never reads half a run.
"""

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

LABELS = ("step", "check", "host", "layer")  # as doctor.registry.Result names them
# The walk's measurements (doctor.walk.measured): each a gauge of its own name, absent when not measured.
MEASURED = {
    "ping_seconds": "Round trip of a ping -> pong on the doctor's WebSocket through the public URL",
    "delivery_seconds": "Arrival of the test notification on the socket after the sender started (its start-up too)",
    "certificate_expiry_timestamp_seconds": "notAfter of the certificate the site serves, as unix time",
}


def collect(data, now):
    """The metrics of one run at unix time `now`: `data` is the walk's report (doctor.cli.report), or None when
    the doctor could not look (then only up 0 and the time of the run)."""
    registry = CollectorRegistry()

    def gauge(name, documentation, labels=()):
        return Gauge(f"nurcrm_doctor_{name}", documentation, labels, registry=registry)

    gauge("up", "1 when the walk ran, 0 when the doctor could not look (inventory, no host answers)").set(bool(data))
    gauge("last_run_timestamp_seconds", "When the doctor last ran, as unix time").set(now)
    if not data:
        return registry
    gauge("healthy", "1 when every check passed").set(data["healthy"])
    gauge("walk_seconds", "How long the walk took").set(data["seconds"])
    check_ok = gauge("check_ok", "1 when the check passed, 0 when it failed or was skipped", LABELS)
    for result in data["results"]:
        check_ok.labels(*(result[label] for label in LABELS)).set(result["status"] == "pass")
    if first := data["first_failure"]:
        first_failure = gauge("first_failure", "The failure to fix first, as the doctor names it", LABELS)
        first_failure.labels(*(first[label] for label in LABELS)).set(1)
    for name, documentation in MEASURED.items():
        if data["measured"].get(name) is not None:
            gauge(name, documentation).set(data["measured"][name])
    return registry


def write(path, registry):
    """Replace the file at `path` with these metrics, atomically; an OSError when it cannot."""
    write_to_textfile(str(path), registry)
