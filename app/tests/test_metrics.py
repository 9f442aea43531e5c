"""The app's Prometheus metrics (nurcrm_realtime.metrics), each moved by its real code path and read back the way
Prometheus reads them: through the exporter (nurcrm_ops.metrics_server) from this run's PROMETHEUS_MULTIPROC_DIR
(tests/settings.py), parsed with prometheus_client's parser. Then the exporter as a process, and
gunicorn with the asgi role's own config: its hooks count worker starts and drop a dead worker's sockets.
"""

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import jinja2
import pytest
import yaml
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from apps.cafe import outbox
from apps.cafe.consumers import TableStatusConsumer
from apps.cafe.models import Table
from apps.cafe.notifications import TABLE_STATUS_CHANGED, _broadcast, table_payload
from apps.cafe.views import send_table_status_changed_notification
from apps.users.models import User
from nurcrm_ops.metrics_server import application
from nurcrm_realtime import fanout, metrics
from nurcrm_realtime.layers import channel_layers
from tests.conftest import ORIGIN, close_code, connect_ok, free_port, socket_to, token_for
from tests.localstack import APP_DIR, OPS_PATH, LocalStack, children
from tests.settings import METRICS_DIR
from tests.test_fanout import overflowed
from tests.test_layer_reset import POLL, use_layer

ROLE = APP_DIR.parent / "roles" / "asgi"


def parse(text):
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def get(app, path):
    """(status, body) of a GET of `path` from a WSGI app."""
    environ, answer = {"PATH_INFO": path, "wsgi.input": io.BytesIO()}, {}
    setup_testing_defaults(environ)
    body = b"".join(app(environ, lambda status, headers: answer.update(status=status)))
    return answer["status"], body.decode()


def scrape(path=METRICS_DIR):
    status, body = get(application(path), "/metrics")
    assert status.startswith("200"), status
    return parse(body)


def total(samples, name, **labels):
    """The sum over every process (the `pid` label of the live gauges) of `name`'s samples with `labels`."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def value(name, **labels):
    return total(scrape(), name, **labels)


class Delta:
    """What became of each metric's value between `with Delta(...)` and now: `delta[name, labels]`."""

    def __init__(self, *series):
        self.before = {key: value(key[0], **dict(key[1:])) for key in series}

    def __getitem__(self, key):
        return value(key[0], **dict(key[1:])) - self.before[key]


ACCEPTED = ("nurcrm_ws_handshakes_total", ("outcome", "accepted"))
RELAYED = ("nurcrm_events_relayed_total",)
SMALL = ("nurcrm_ws_open_sockets", ("company_size", "1-9"))
SNAPSHOTS = ("nurcrm_snapshot_seconds_count",)
FRAMES = ("nurcrm_ws_frames_written_total",)
TABLE_EVENTS = ("nurcrm_events_broadcast_total", ("type", "table_status_changed"))


def outcome(code):
    return ("nurcrm_ws_handshakes_total", ("outcome", code))


def where(place):
    return ("nurcrm_redis_errors_total", ("where", place))


# --- The series and their types -----------------------------------------------------------------
def test_the_exporter_serves_every_metric_of_the_contract_with_its_type():
    families = text_string_to_metric_families(get(application(METRICS_DIR), "/metrics")[1])
    assert {family.name: family.type for family in families} == {
        "nurcrm_ws_open_sockets": "gauge",
        "nurcrm_ws_handshakes": "counter",
        "nurcrm_events_broadcast": "counter",
        "nurcrm_ws_frames_written": "counter",
        "nurcrm_ws_backlog_closes": "counter",
        "nurcrm_channel_layer_resets": "counter",
        "nurcrm_events_relayed": "counter",
        "nurcrm_ws_rebalance_closes": "counter",
        "nurcrm_redis_errors": "counter",
        "nurcrm_snapshot_seconds": "histogram",
        # and the bundle's own nurcrm_worker_starts, which only gunicorn's hooks count (below)
    }


def test_every_handshake_outcome_and_company_size_is_exported_before_it_happens():
    """Absent is not 0 to Prometheus: a rate over a series that appears only with its first refusal misses it."""
    samples = scrape()
    outcomes = {s.labels["outcome"] for s in samples if s.name == "nurcrm_ws_handshakes_total"}
    sizes = {s.labels["company_size"] for s in samples if s.name == "nurcrm_ws_open_sockets"}
    types = {s.labels["type"] for s in samples if s.name == "nurcrm_events_broadcast_total"}
    assert outcomes == {"accepted", "4400", "4401", "4403", "4429", "1013", "origin"}
    assert types == fanout.FORWARDED >= set(TableStatusConsumer.forward_events)  # any consumer's, in this process
    assert sizes == {"1-9", "10-49", "50+"}
    assert all("pid" in s.labels for s in samples if s.name == "nurcrm_ws_open_sockets"), "one series per worker"


@pytest.mark.parametrize(("tables", "bucket"), [(0, "1-9"), (9, "1-9"), (10, "10-49"), (49, "10-49"), (50, "50+")])
def test_a_company_is_labelled_by_its_size_bucket_never_its_id(tables, bucket):
    assert metrics.company_size(tables) == bucket


# --- Sockets --------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
async def test_an_accepted_socket_counts_a_handshake_a_snapshot_and_an_open_socket_until_it_closes(tenant):
    delta = Delta(ACCEPTED, SMALL, SNAPSHOTS, FRAMES)
    async with socket_to(token=token_for(tenant[2])) as ws:
        await connect_ok(ws)
        assert (delta[ACCEPTED], delta[SMALL], delta[SNAPSHOTS], delta[FRAMES]) == (1, 1, 1, 1)
        await ws.send_json_to({"action": "ping"})
        await ws.receive_json_from()
        assert delta[FRAMES] == 2, "the hello and the pong"
    assert delta[SMALL] == 0, "closed, no longer open"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("per_branch", "scoped", "bucket"),
    [(10, False, "10-49"), (25, True, "50+")],
    ids=["company-wide", "a-branch-of-a-large-company"],
)
async def test_an_open_socket_counts_under_its_companys_size(make_company, per_branch, scoped, bucket):
    """The company's tables, not the socket's: a branch of 25 tables of a company of 50 is 50+."""
    company, branches = await database_sync_to_async(make_company)("Large", branches=("A", "B"), tables=per_branch)
    user = await database_sync_to_async(User.objects.create_user)("big", password="pw-big-1", company=company)
    query = {"branch_id": str(branches[0].pk)} if scoped else {}
    series = ("nurcrm_ws_open_sockets", ("company_size", bucket))
    delta = Delta(series)
    async with socket_to(token=token_for(user), **query) as ws:
        hello = await connect_ok(ws)
        assert len(hello["tables"]) == per_branch * (1 if scoped else 2)
        assert delta[series] == 1
    assert delta[series] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("code", ["4400", "4401", "4403", "4429", "1013", "origin"])
async def test_a_refused_handshake_counts_its_outcome(tenant, other_tenant, settings, code):
    user = tenant[2]
    delta = Delta(outcome(code), ACCEPTED)
    if code == "origin":
        async with socket_to(token=token_for(user), origin=b"https://evil.example") as ws:
            assert not (await ws.connect())[0]
    elif code == "4429":
        settings.WS_MAX_SOCKETS_PER_USER = 1
        async with socket_to(token=token_for(user)) as first, socket_to(token=token_for(user)) as second:
            await connect_ok(first)
            assert await close_code(second) == 4429
    else:
        if code == "1013":
            settings.WS_MAX_PENDING_HANDSHAKES = 0  # every handshake is one too many
        query = {
            "4400": {"token": token_for(user), "branch_id": "nope"},
            "4401": {},
            "4403": {"token": token_for(user), "branch_id": str(other_tenant[1][0].pk)},
            "1013": {"token": token_for(user)},
        }[code]
        async with socket_to(origin=ORIGIN, **query) as ws:
            assert await close_code(ws) == int(code)
    assert delta[outcome(code)] == 1
    assert delta[ACCEPTED] == (1 if code == "4429" else 0)


# --- Broadcasts -----------------------------------------------------------------------------------
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_a_broadcast_counts_one_event_and_a_frame_per_socket_in_one_step_per_worker(
    redis_layer, tenant, monkeypatch
):
    """Three screens of the company, one table change sent to its two groups (company and branch): one
    event; three frames, counted once for the three with the pub/sub layer's direct writes, one by one
    through the handlers of RedisChannelLayer's sockets."""
    company, _, user = tenant
    table = await database_sync_to_async(lambda: Table.objects.filter(company=company).first())()
    async with socket_to(token=token_for(user)) as a, socket_to(token=token_for(user)) as b:
        async with socket_to(token=token_for(user)) as c:
            for ws in (a, b, c):
                await connect_ok(ws)
            delta, counted = Delta(TABLE_EVENTS, FRAMES), []
            frames = metrics.FRAMES_WRITTEN

            class Spy:
                def inc(self, amount=1):
                    counted.append(amount)
                    frames.inc(amount)

            monkeypatch.setattr(metrics, "FRAMES_WRITTEN", Spy())
            await database_sync_to_async(send_table_status_changed_notification)(table)
            for ws in (a, b, c):
                assert (await ws.receive_json_from(timeout=5))["type"] == "table_status_changed"
    assert delta[TABLE_EVENTS] == 1
    assert delta[FRAMES] == 3
    assert counted == ([3] if redis_layer[0] == "redis-pubsub" else [1, 1, 1])


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_redis_refuses_counts_an_error_and_no_event_until_the_relay_sends_it(tenant, settings):
    settings.CHANNEL_LAYERS = channel_layers("redis", f"redis://127.0.0.1:{free_port()}/0")
    table = Table.objects.filter(company=tenant[0]).first()
    delta = Delta(TABLE_EVENTS, where("broadcast"), RELAYED)
    _broadcast(TABLE_STATUS_CHANGED, table.company_id, table.branch_id, table_payload(table))
    assert (delta[TABLE_EVENTS], delta[where("broadcast")], delta[RELAYED]) == (0, 1, 0)
    settings.CHANNEL_LAYERS = channel_layers("memory", "")
    assert async_to_sync(outbox.relay_once)(0)[:2] == (1, 0)
    assert (delta[TABLE_EVENTS], delta[RELAYED]) == (1, 1)


async def test_a_socket_too_far_behind_counts_a_backlog_close():
    delta = Delta(("nurcrm_ws_backlog_closes_total",))
    behind = await overflowed("behind")
    assert behind.closed == 1013
    assert delta[("nurcrm_ws_backlog_closes_total",)] == 1


# --- Redis lost ------------------------------------------------------------------------------------
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("backend", "place"), [("redis", "consumer"), ("redis-pubsub", "layer_watch")])
async def test_redis_losing_its_data_counts_a_reset_and_redis_down_counts_errors(
    settings, restartable_redis, tenant, backend, place
):
    """A flush: one reset. Redis stopped: RedisChannelLayer's socket fails its read (and is closed with
    1012, which ends its worker's watch); the pub/sub layer's socket stays, and the watch's polls fail."""
    use_layer(settings, backend, restartable_redis)
    resets = ("nurcrm_channel_layer_resets_total",)
    delta = Delta(resets, where(place))
    async with socket_to(token=token_for(tenant[2])) as ws:
        await connect_ok(ws)
        restartable_redis.client().flushall()
        assert (await ws.receive_json_from(timeout=10))["reason"] == "channel_layer_reset"
        assert delta[resets] == 1
        restartable_redis.stop()
        try:
            deadline = time.monotonic() + 10
            while delta[where(place)] < 1:
                assert time.monotonic() < deadline, f"no Redis error counted where={place}"
                await asyncio.sleep(POLL)
        finally:
            restartable_redis.start()


# --- The exporter, a process of its own -------------------------------------------------------
def test_the_exporter_answers_only_metrics_and_nothing_from_a_missing_folder(tmp_path):
    assert get(application(str(tmp_path / "absent")), "/metrics") == ("200 OK", "")
    assert get(application(METRICS_DIR), "/")[0] == "404 Not Found"
    assert get(application(METRICS_DIR), "/metrics/x")[0] == "404 Not Found"


def exporter(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "nurcrm_ops.metrics_server", *args],
        cwd=APP_DIR,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": OPS_PATH},  # no PROMETHEUS_MULTIPROC_DIR: it reads --dir only
        stderr=subprocess.PIPE,
        text=True,
    )


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def until_serving(url, process):
    deadline = time.monotonic() + 10
    while True:
        try:
            return http_get(url)
        except OSError:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the exporter did not answer"
            time.sleep(0.05)


def test_the_exporter_process_serves_the_folder_on_its_address():
    port = free_port()
    process = exporter("--listen", f"127.0.0.1:{port}", "--dir", METRICS_DIR)
    try:
        status, body = until_serving(f"http://127.0.0.1:{port}/metrics", process)
        assert status == 200
        assert total(parse(body), "nurcrm_ws_handshakes_total") == value("nurcrm_ws_handshakes_total")
        assert http_get(f"http://127.0.0.1:{port}/")[0] == 404
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    ("listen", "says"),
    [
        ("9808", "expected ADDR:PORT"),
        ("127.0.0.1:http", "expected ADDR:PORT"),
        ("127.0.0.1:70000", "expected ADDR:PORT"),
        ("app.nurcrm.kg:9808", "is not an IP address"),
    ],
)
def test_a_bad_listen_address_is_one_line_and_exit_2(listen, says):
    done = subprocess.run(
        [sys.executable, "-m", "nurcrm_ops.metrics_server", "--listen", listen, "--dir", METRICS_DIR],
        cwd=APP_DIR,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": OPS_PATH},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_address_in_use_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = exporter("--listen", f"127.0.0.1:{taken.getsockname()[1]}", "--dir", METRICS_DIR)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 1
    assert "cannot listen on" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# --- gunicorn with the asgi role's config ------------------------------------------------------------
def render_gunicorn_conf(**overrides):
    """roles/asgi/templates/gunicorn.conf.py.j2 with the role's defaults and the bundle's wiring, as Ansible
    renders it on one host (nginx beside gunicorn: no TCP bind, X-Forwarded-* believed from loopback)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = __import__("json").dumps
    wiring = yaml.safe_load((ROLE.parents[1] / "playbooks" / "group_vars" / "all" / "wiring.yml").read_text())
    one_host = {"asgi_tcp_binds": [], "asgi_forwarded_allow_ips": ["127.0.0.1", "::1"]}
    variables = wiring | yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()) | one_host | overrides

    def render(value):
        try:
            return env.from_string(value).render(variables) if isinstance(value, str) else value
        except jinja2.TemplateError:  # a value of another host's or of the inventory's: not gunicorn's
            return value

    for _ in range(3):  # defaults that name other defaults
        variables = {k: render(v) for k, v in variables.items()}
    return env.from_string((ROLE / "templates" / "gunicorn.conf.py.j2").read_text()).render(
        variables, ansible_managed="rendered by tests/test_metrics.py"
    )


def worker_files(folder, kind):
    return {int(p.stem.rsplit("_", 1)[1]) for p in Path(folder).glob(f"{kind}_*.db")}


@pytest.mark.slow
@pytest.mark.redis
def test_gunicorn_with_the_roles_config_counts_worker_starts_and_forgets_a_dead_workers_sockets(tmp_path, redis_server):
    """The master empties the metrics folder as it starts; every worker's start is counted; a worker
    killed with SIGKILL is replaced, counted again, and its open-socket series go (mark_process_dead)."""
    metrics_dir, reports = tmp_path / "metrics", tmp_path / "reports"
    metrics_dir.mkdir()
    reports.mkdir()
    (metrics_dir / "counter_1.db").write_bytes((Path(METRICS_DIR) / f"counter_{os.getpid()}.db").read_bytes())
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(render_gunicorn_conf(asgi_code_dir=str(APP_DIR), asgi_workers=3))
    stack = LocalStack(
        tmp_path,
        redis_server,
        config=config,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        RUNTIME_DIRECTORY=f"{reports}:{metrics_dir}",  # as systemd sets it for the unit's two folders
    )
    try:
        workers = stack.worker_pids()
        assert not (metrics_dir / "counter_1.db").exists(), "an earlier run's file was left"
        assert sorted(int(p.stem.split("-")[1]) for p in reports.glob("worker-*.json")) == workers
        assert total(scrape(str(metrics_dir)), "nurcrm_worker_starts_total") == 3
        assert worker_files(metrics_dir, "gauge_liveall") == set(workers)

        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (
            len(set(children(stack.pid)) - {workers[0]}) < 3
            or total(scrape(str(metrics_dir)), "nurcrm_worker_starts_total") < 4
        ):
            assert time.monotonic() < deadline, stack.logs_text()
            time.sleep(0.1)
        samples = scrape(str(metrics_dir))
        assert total(samples, "nurcrm_worker_starts_total") == 4
        assert workers[0] not in worker_files(metrics_dir, "gauge_liveall")
        assert str(workers[0]) not in {s.labels.get("pid") for s in samples}
        assert worker_files(metrics_dir, "gauge_liveall") == set(stack.worker_pids())
    finally:
        stack.stop()
