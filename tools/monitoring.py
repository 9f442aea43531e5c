"""Prometheus's and Alertmanager's HTTP APIs as the scenario tests read them, and a webhook receiver that
records what Alertmanager sends (the receiver inventory/local and molecule/cluster point at)."""

import json
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def api(base, path):
    """GET base + path as JSON: Prometheus's {"status", "data"} unwrapped, or Alertmanager's as it is."""
    with urllib.request.urlopen(base + path, timeout=10) as answer:
        body = json.load(answer)
    return body["data"] if isinstance(body, dict) and "data" in body else body


def query(base, expr):
    """An instant query's samples: [(labels, value)]."""
    found = api(base, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["result"]
    return [(sample["metric"], float(sample["value"][1])) for sample in found]


def passing_walk(base):
    """The doctor's last graphed walk, check by check, if every check passed; else None. A walk may fail for
    a moment (one while a test has removed app.env to redeploy it): its alert waits 2 minutes, so do tests."""
    checks = query(base, "nurcrm_doctor_check_ok")
    return checks if checks and all(value == 1 for _, value in checks) else None


def failed_walk(base):
    """What shows instead of a passing walk: its failed checks, or that none is graphed."""
    failed = [labels for labels, value in query(base, "nurcrm_doctor_check_ok") if value != 1]
    return failed or "no nurcrm_doctor_check_ok in Prometheus: journalctl -u nurcrm-doctor on the monitoring host"


def seconds(duration):
    """A Prometheus duration ("15s", "1m", "1m30s") in seconds."""
    total, number = 0.0, ""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    i = 0
    while i < len(duration):
        if duration[i].isdigit() or duration[i] == ".":
            number += duration[i]
            i += 1
            continue
        unit = "ms" if duration[i : i + 2] == "ms" else duration[i]
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    return total


class WebhookReceiver:
    """An HTTP server on address:port keeping every alert Alertmanager POSTs, with when it came."""

    def __init__(self, address, port):
        self.received = []  # (monotonic time, alert dict with "status" and "labels")
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                now = time.monotonic()
                receiver.received += [(now, alert) for alert in body.get("alerts", [])]
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def alerts(self, name, status, since=0.0):
        """The alerts of that name and status ("firing", "resolved") received after `since`."""
        return [
            (at, alert)
            for at, alert in self.received
            if at >= since and alert["labels"].get("alertname") == name and alert["status"] == status
        ]
