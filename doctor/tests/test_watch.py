"""doctor/watch.py, the takeover's measure of how long the CRM stopped answering: its windows from timed
attempts, and a real HTTP server on this machine stopped for a second while a watch tries it."""

import asyncio
import socket
import subprocess
import sys
import time

from doctor.watch import Probe, Watch, describe


def test_a_window_runs_from_the_first_failure_to_the_next_success_and_one_left_open_to_the_end():
    probe = Probe("GET /", None, [(10.0, True, ""), (10.5, False, "x"), (11.0, False, "y"), (12.5, True, "")])
    probe.attempts += [(13.0, False, "z")]
    watch = Watch([probe])
    watch.started, watch.ended, watch.clock = 10.0, 14.0, 1796601600.0  # 2026-12-07 00:00:00 UTC
    assert watch.windows(probe) == [(0.5, 2.5), (3.0, 4.0)]
    assert watch.report()["GET /"] == {
        "attempts": 5, "failures": 3, "longest_s": 2.0, "failed_s": 3.0, "first_failure": "x",
        "windows": [["00:00:00", 2.0], ["00:00:03", 1.0]],
    }  # fmt: skip


def serve(port):
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            assert time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.05)


def test_a_server_stopped_for_a_second_is_one_window_of_about_a_second():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def get(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            status = await reader.readline()
            assert status.split()[1] == b"200", status
        finally:
            writer.close()

    server = serve(port)
    try:
        with Watch([Probe("GET /", get)], every=0.05, timeout=1.0) as watch:
            time.sleep(0.5)
            server.terminate()
            server.wait(10)
            time.sleep(1.0)
            server = serve(port)
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(10)
    report = watch.report()["GET /"]
    assert len(watch.windows(watch.probes[0])) == 1, watch.probes[0].attempts
    # Stopped for 1.0 s plus its restart: never less than the stop less one interval; bounded above loosely
    # (this machine's timing is noisy: the bound only says the window closed once the server answered).
    assert 0.9 <= report["longest_s"] <= 5.0 and report["longest_s"] == report["failed_s"], report
    assert report["first_failure"].startswith(("ConnectionRefusedError", "OSError")), report


def test_the_report_names_each_probes_longest_window_and_whether_it_kept_to_the_limit():
    report = {
        "GET /": {
            "attempts": 400, "failures": 0, "longest_s": 0.0, "failed_s": 0.0, "first_failure": "", "windows": [],
        },
        "handshake /ws/cafe/tables/": {
            "attempts": 380, "failures": 18, "longest_s": 10.2, "failed_s": 11.0, "first_failure": "HTTP 500",
            "windows": [["23:25:10", 10.2], ["23:26:00", 0.8]],
        },
    }  # fmt: skip
    lines = describe(["ansible-playbook", "site.yml"], 0, report, 120.4).splitlines()
    assert lines[0] == "While `ansible-playbook site.yml` ran (120.4 s, exit status 0), the site failed to answer:"
    assert lines[1].split() == "GET / longest 0.0 s, in all 0.0 s (0 of 400 attempts failed)".split()
    assert lines[2].endswith("longest 10.2 s (from 23:25:10 UTC), in all 11.0 s (18 of 380 attempts failed); first: "
                             "HTTP 500")  # fmt: skip
    assert lines[3] == "Over the limit of 10 s: handshake /ws/cafe/tables/"
    report["handshake /ws/cafe/tables/"]["longest_s"] = 9.9
    assert describe(["true"], 0, report, 1.0).splitlines()[-1] == "Within the limit of 10 s."
