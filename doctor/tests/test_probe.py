"""The probe's parsers and its log positions, on files and command outputs made here."""

import base64
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from doctor import probe
from doctor.registry import ROOT


def test_an_env_file_is_read_as_systemd_reads_it():
    text = "# a comment\nDEBUG=0\nexport SECRET_KEY='a b'\nALLOWED_HOSTS=\"app.nurcrm.kg\"\nnot a line\n"
    assert probe.parse_env_file(text) == {"DEBUG": "0", "SECRET_KEY": "a b", "ALLOWED_HOSTS": "app.nurcrm.kg"}


def test_an_env_file_as_the_app_role_quotes_it_and_as_a_hand_written_dotenv_has_it():
    """The role's quoting (an escaped quote inside) and a .env's spaces around = and trailing blanks."""
    text = "REDIS_URL='redis://nurcrm:p%40ss@nurcrm/0'\nNAME='it'\"'\"'s'\nDB_NAME = nurcrm_prod  \nBROKEN='open\n"
    assert probe.parse_env_file(text) == {
        "REDIS_URL": "redis://nurcrm:p%40ss@nurcrm/0",
        "NAME": "it's",
        "DB_NAME": "nurcrm_prod",
        "BROKEN": "open",
    }


SENTINEL_LISTS = [
    ("10.0.0.1:26379,10.0.0.2:26379", [("10.0.0.1", 26379), ("10.0.0.2", 26379)]),
    (" [::1]:26379 , ::1:26380,", [("::1", 26379), ("::1", 26380)]),
    ("", []),
    ("10.0.0.1", ValueError),
    ("10.0.0.1:port", ValueError),
]


def _parsed(parse, text):
    try:
        return parse(text)
    except ValueError:
        return ValueError


@pytest.mark.parametrize("text, parsed", SENTINEL_LISTS)
def test_the_sentinel_list_is_read_as_the_app_reads_it(text, parsed):
    """One reading of REDIS_SENTINELS for the doctor and the benchmark, equal to the app's own copy."""
    sys.path.insert(0, str(ROOT / "roles" / "app" / "files"))
    try:
        from nurcrm_realtime.redisconn import sentinel_addresses as apps
    finally:
        sys.path.remove(str(ROOT / "roles" / "app" / "files"))
    assert _parsed(probe.sentinel_addresses, text) == parsed == _parsed(apps, text)


@pytest.mark.parametrize(
    "url, target",
    [
        ("redis://default:pw@10.0.0.21:6380/2", {"host": "10.0.0.21", "port": 6380, "db": 2, "password": True}),
        ("redis://127.0.0.1", {"host": "127.0.0.1", "port": 6379, "db": 0, "password": False}),
        ("unix:///run/redis/redis.sock?db=3", {"socket": "/run/redis/redis.sock", "db": 3, "password": False}),
        ("", None),
    ],
)
def test_a_redis_url_is_reduced_to_where_it_points(url, target):
    assert probe.redis_target(url) == target


def test_the_layer_view_shows_no_secret():
    view = probe.layer_view({"REDIS_URL": "redis://default:s3cret@h:6379/0", "CHANNEL_LAYER": "redis"})
    assert "s3cret" not in repr(view)
    assert view["REDIS"]["password"] is True and len(view["REDIS_URL_FINGERPRINT"]) == 12


def test_gunicorns_config_is_read_for_worker_class_workers_and_binds():
    config = probe.gunicorn_config(
        'worker_class = "uvicorn_worker.UvicornWorker"\nworkers = 3\nbind = ["unix:/s", "10.0.0.5:8000"]\n'
    )
    assert config == {
        "worker_class": "uvicorn_worker.UvicornWorker",
        "workers": "3",
        "binds": ["unix:/s", "10.0.0.5:8000"],
    }
    assert probe.gunicorn_config("")["worker_class"] == "sync", "gunicorn's own default"


def test_tokens_are_redacted_in_log_lines():
    line = 'GET /ws/cafe/tables/?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.sig&branch_id=1 "refresh=abc"'
    assert probe.redact(line) == 'GET /ws/cafe/tables/?token=[redacted]&branch_id=1 "refresh=[redacted]"'


def test_only_error_lines_are_kept():
    text = "a [notice] start\nb [crit] connect() failed\nc [error] upstream\nd [warn] x\n"
    assert probe.error_lines(text, probe.NGINX_ERROR) == ["b [crit] connect() failed", "c [error] upstream"]


def position_of(path):
    info = os.stat(path)
    return {"inode": info.st_ino, "offset": info.st_size}


def test_a_file_is_read_from_the_position_taken(tmp_path):
    log = tmp_path / "error.log"
    log.write_text("old [crit] before the walk\n")
    position = position_of(log)
    with log.open("a") as f:
        f.write("new [crit] during the walk\n")
    assert probe.read_after(log, position) == "new [crit] during the walk\n"


def test_a_rotated_file_is_read_whole(tmp_path):
    log = tmp_path / "error.log"
    log.write_text("old [crit] before the walk, and long enough to be past the new file's end\n")
    position = position_of(log)
    log.rename(tmp_path / "error.log.1")
    log.write_text("new [crit]\n")
    assert probe.read_after(log, position) == "new [crit]\n"


def test_the_position_is_the_journals_cursor_and_nginx_logs_ends(monkeypatch, tmp_path):
    errors, answers = tmp_path / "error.log", tmp_path / "access.log"
    errors.write_text("12345")
    answers.write_text("1234567")
    monkeypatch.setattr(probe, "NGINX_ERROR_LOG", str(errors))
    monkeypatch.setattr(probe, "NGINX_ACCESS_LOG", str(answers))
    shown = "-- No entries --\n-- cursor: s=ab12;i=5af;b=cd;m=27;t=66;x=77\n"
    monkeypatch.setattr(probe, "run", lambda argv, **_: {"rc": 0, "out": shown, "err": ""})
    position = probe.log_position()
    assert position["journal_cursor"] == "s=ab12;i=5af;b=cd;m=27;t=66;x=77"
    assert position["nginx_error_log"] == position_of(errors)
    assert position["nginx_access_log"] == position_of(answers) != position_of(errors)


# Lines of roles/nginx's `nurcrm` access-log format: a /ws/ handshake nginx could not pass on, and one it did.
ACCESS_502 = (
    '127.0.0.1 - [01/Dec/2026:10:00:02 +0000] "GET /ws/cafe/tables/?[query] HTTP/1.1" 502 157 0.000 '
    '"Python/3.11 websockets/13.1" upstream=unix:/home/nur/asgi.sock upstream_status=502'
)
ACCESS_101 = ACCESS_502.replace('" 502 157 ', '" 101 62 ').replace("upstream_status=502", "upstream_status=101")


def test_the_walks_logs_are_only_those_after_its_position(monkeypatch, tmp_path):
    """Two walks back to back: the second does not see the first one's errors. /ws/ logs no error lines:
    its failures are the access log's 5xx answers."""
    log, answers = tmp_path / "error.log", tmp_path / "access.log"
    log.write_text("2026/12/01 10:00:00 [crit] connect() to unix:/home/nur/asgi-old.sock failed\n")
    answers.write_text(ACCESS_502 + "\n")
    monkeypatch.setattr(probe, "NGINX_ERROR_LOG", str(log))
    monkeypatch.setattr(probe, "NGINX_ACCESS_LOG", str(answers))
    asked = []

    def run(argv, **_):
        asked.append(argv)
        return {"rc": 0, "out": "-- cursor: s=1;i=2\n" if "--show-cursor" in argv else "", "err": ""}

    monkeypatch.setattr(probe, "run", run)
    position = probe.log_position()
    with log.open("a") as f:
        f.write("2026/12/01 10:00:01 [notice] reloading\n2026/12/01 10:00:02 [error] during this walk\n")
    with answers.open("a") as f:
        f.write(f"{ACCESS_101}\n{ACCESS_502}\n")
    found = probe.logs({"roles": ["web", "app"], "service": "gunicorn", "position": position})
    assert found == {"gunicorn": [], "nginx": ["2026/12/01 10:00:02 [error] during this walk", ACCESS_502]}
    assert ["journalctl", "-u", "gunicorn", "--after-cursor", "s=1;i=2"] == asked[-1][:5]


def access_line(when, status):
    stamp = when.astimezone().strftime("%d/%b/%Y:%H:%M:%S %z")
    return ACCESS_502.replace("01/Dec/2026:10:00:02 +0000", stamp).replace('" 502 157 ', f'" {status} 157 ')


def test_the_last_ten_minutes_errors_include_the_access_logs_5xx(monkeypatch, tmp_path):
    """What the report shows with the first failure: /ws/ failures are only in the access log."""
    now = datetime.now()
    errors, answers = tmp_path / "error.log", tmp_path / "access.log"
    errors.write_text(f"{(now - timedelta(minutes=1)):%Y/%m/%d %H:%M:%S} [error] upstream prematurely closed\n")
    old, failed, upgraded = (access_line(now - timedelta(minutes=20), 502), access_line(now, 502),
                             access_line(now, 101))  # fmt: skip
    answers.write_text(f"{old}\n{failed}\n{upgraded}\n")
    monkeypatch.setattr(probe, "NGINX_ERROR_LOG", str(errors))
    monkeypatch.setattr(probe, "NGINX_ACCESS_LOG", str(answers))
    found = probe.nginx_errors({"since_seconds": 600})
    assert found[1:] == [failed] and "[error] upstream prematurely closed" in found[0] and len(found) == 2


def test_the_last_ten_minutes_are_read_from_the_end_of_a_long_log(tmp_path):
    log = tmp_path / "error.log"
    log.write_text("x" * 5000 + "\n" + "".join(f"line {n}\n" for n in range(100)))
    tail = probe.tail(log, limit=300)
    assert tail.endswith("line 99\n") and not tail.startswith("x")
    assert tail.splitlines()[0].startswith("line ") and len(tail) <= 300
    assert probe.tail(tmp_path / "absent.log") is None


def test_without_a_cursor_the_journal_is_read_since_the_walks_start(monkeypatch):
    asked = []
    monkeypatch.setattr(probe, "run", lambda argv, **_: asked.append(argv) or {"rc": 0, "out": "", "err": ""})
    probe.journal_after("gunicorn", {"journal_cursor": None, "time": 1796160860.5})
    assert asked[0][3:5] == ["--since", "@1796160860"]


class FakeRedisCli:
    """`run` for the probe: redis-cli answers per host:port and command (a host:port missing from `answers`
    refuses connections, as a stopped service does), systemctl per unit. Each redis-cli call is recorded with
    its arguments and the password it was given in REDISCLI_AUTH."""

    def __init__(self, answers, units=None):
        self.answers, self.units, self.calls = answers, units or {}, []

    def __call__(self, argv, timeout=10, env=None, input_text=None, cwd=None):
        if argv[:2] == ["systemctl", "is-active"]:
            return {"rc": 0, "out": self.units.get(argv[2], "inactive") + "\n", "err": ""}
        if argv[0] != "redis-cli":
            return {"rc": 0, "out": "", "err": ""}
        where = f"{argv[argv.index('-h') + 1]}:{argv[argv.index('-p') + 1]}"
        command = argv[argv.index("--no-auth-warning") + 1 :] if "--no-auth-warning" in argv else argv[5:]
        user = argv[argv.index("--user") + 1] if "--user" in argv else None
        self.calls.append({"where": where, "command": command, "user": user, "auth": (env or {}).get("REDISCLI_AUTH")})
        if where not in self.answers:
            return {"rc": 1, "out": "", "err": f"Could not connect to Redis at {where}: Connection refused\n"}
        answer = self.answers[where]
        return {
            "rc": 0,
            "out": answer(command, user, self.calls[-1]["auth"]) if callable(answer) else answer,
            "err": "",
        }


MASTER_ADDR = "10.0.0.3\n6379\n"
APP_ENV = {
    "REDIS_URL": "redis://nurcrm:app%40pw@nurcrm/2",
    "REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26379",
    "REDIS_MASTER_NAME": "nurcrm",
    "REDIS_SENTINEL_PASSWORD": "sentinel-pw",
    "CHANNEL_LAYER": "redis-pubsub",
}


def master(command, user, auth):
    """The master Redis: PONG for the app's user, NOAUTH for anyone else."""
    return "PONG\n" if (user, auth) == ("nurcrm", "app@pw") else "NOAUTH Authentication required.\n"


def test_under_sentinel_the_apps_redis_is_the_master_the_first_answering_sentinel_names(monkeypatch):
    fake = FakeRedisCli({"10.0.0.2:26379": MASTER_ADDR, "10.0.0.3:6379": master})
    monkeypatch.setattr(probe, "run", fake)
    found = probe.redis_facts(APP_ENV)
    assert found["master"] == "10.0.0.3:6379" and found["master_name"] == "nurcrm"
    assert found["sentinels"] == [
        {
            "address": "10.0.0.1:26379",
            "master": None,
            "answer": "Could not connect to Redis at 10.0.0.1:26379: Connection refused",
        },
        {"address": "10.0.0.2:26379", "master": "10.0.0.3:6379", "answer": "10.0.0.3:6379"},
    ]
    assert found["target"] == {"host": "10.0.0.3", "port": 6379, "db": 2, "password": True}
    assert (found["ping"], found["anonymous_ping"]) == ("PONG", "NOAUTH Authentication required.")
    asked = [(c["where"], c["command"][:2], c["user"], c["auth"]) for c in fake.calls]
    assert asked == [
        ("10.0.0.1:26379", ["SENTINEL", "get-master-addr-by-name"], None, "sentinel-pw"),
        ("10.0.0.2:26379", ["SENTINEL", "get-master-addr-by-name"], None, "sentinel-pw"),
        ("10.0.0.3:6379", ["PING"], None, None),
        ("10.0.0.3:6379", ["PING"], "nurcrm", "app@pw"),
    ]


def test_the_redis_mode_and_the_senders_group_keys_go_to_the_master(monkeypatch):
    fake = FakeRedisCli({"10.0.0.1:26379": MASTER_ADDR, "10.0.0.3:6379": "asgi__group__cafe_tables_7\n"})
    monkeypatch.setattr(probe, "run", fake)
    monkeypatch.setattr(probe, "app_env", lambda service: APP_ENV)
    monkeypatch.setattr(probe, "MARKER", "/")  # a host the bundle deployed
    assert probe.redis({"service": "gunicorn", "command": ["PUBSUB", "CHANNELS", "*"]})["rc"] == 0
    sent = probe.send({"service": "gunicorn", "company": "7"})
    assert sent["group_keys"] == ["asgi__group__cafe_tables_7"]
    assert [c["where"] for c in fake.calls if c["command"][0] != "SENTINEL"] == ["10.0.0.3:6379", "10.0.0.3:6379"]
    assert all(c["auth"] == "app@pw" for c in fake.calls if c["command"][0] != "SENTINEL")


class Done:
    """What subprocess.run returns."""

    def __init__(self, out):
        self.returncode, self.stdout, self.stderr = 0, out, ""


def test_no_password_reaches_a_command_line(monkeypatch):
    argvs = []
    monkeypatch.setattr(probe.subprocess, "run", lambda argv, **_: argvs.append(argv) or Done(MASTER_ADDR))
    probe.redis_facts(APP_ENV)
    assert argvs and not [argv for argv in argvs if any("pw" in word for word in argv)], argvs


def test_when_no_sentinel_names_the_master_the_facts_and_the_redis_mode_say_so(monkeypatch):
    fake = FakeRedisCli({"10.0.0.1:26379": "\n"})  # a nil reply: no master of that name
    monkeypatch.setattr(probe, "run", fake)
    monkeypatch.setattr(probe, "app_env", lambda service: APP_ENV)
    found = probe.redis_facts(APP_ENV)
    assert (found["master"], found["ping"]) == (None, "no Sentinel names the master")
    assert [s["answer"] for s in found["sentinels"]][0] == "(nil)"
    done = probe.redis({"service": "gunicorn", "command": ["PING"]})
    assert done["rc"] == 1 and done["err"].startswith("no Sentinel names master nurcrm: {'10.0.0.1:26379': '(nil)'")
    assert all(c["command"][0] == "SENTINEL" for c in fake.calls), "nothing is sent to a guessed address"


def test_without_sentinels_the_url_is_used_as_it_is(monkeypatch):
    fake = FakeRedisCli({"127.0.0.1:6379": "PONG\n"})
    monkeypatch.setattr(probe, "run", fake)
    found = probe.redis_facts({"REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert found == {
        "configured": True,
        "target": {"host": "127.0.0.1", "port": 6379, "db": 0, "password": False},
        "ping": "PONG",
        "anonymous_ping": None,
    }


def test_a_configuration_file_is_read_as_redis_reads_it_quotes_and_all():
    found = probe.directives(
        '# a comment\nbind 127.0.2.31 -::1\nrequirepass "p\\"w\\x41 b"\nmasteruser \'nurcrm-ops\'\n'
        "sentinel monitor nurcrm 127.0.2.31 6379 2\nsentinel monitor nurcrm 127.0.2.32 6379 2\n"
    )
    assert probe.directive(found, "requirepass") == ['p"wA b']
    assert probe.directive(found, "masteruser") == ["nurcrm-ops"]
    assert probe.listens(found, 6379) == (["127.0.2.31", "::1"], 6379)
    assert probe.directive(found, "sentinel", "monitor") == ["nurcrm", "127.0.2.32", "6379", "2"], "the last one"
    assert probe.directive(found, "replicaof") == []


INFO_MASTER = (
    "# Replication\nrole:master\nconnected_slaves:1\nslave0:ip=127.0.2.32,port=6379,state=online,offset=9,lag=0\n"
    "master_failover_state:no-failover\n"
)
REPLICAS = (
    "name\n127.0.2.32:6379\nip\n127.0.2.32\nport\n6379\nflags\nslave\nname\n127.0.2.33:6379\nflags\ns_down,slave\n"
)


@pytest.fixture
def redis_host(monkeypatch, tmp_path):
    """A Redis host of the bundle under Sentinel: its files (as Redis rewrites them), as the probe reads them."""
    (tmp_path / "redis.conf").write_text('bind 127.0.2.31\nport 6379\nmasteruser "nurcrm-ops"\nmasterauth ops\n')
    (tmp_path / "sentinel.conf").write_text(
        'port 26379\nbind 127.0.2.31\nrequirepass "sentinel pw"\nsentinel monitor nurcrm 127.0.2.31 6379 2\n'
    )
    (tmp_path / "ops.secret").write_text("ops pw\n")
    for name, path in {
        "REDIS_CONF": "redis.conf",
        "SENTINEL_CONF": "sentinel.conf",
        "OPS_SECRET": "ops.secret",
    }.items():
        monkeypatch.setattr(probe, name, str(tmp_path / path))
    return tmp_path


def sentinel(command, user, auth):
    return {"get-master-addr-by-name": "127.0.2.31\n6379\n", "ckquorum": "OK 3 usable Sentinels.\n"}.get(
        command[1], REPLICAS
    )


def test_a_redis_host_under_sentinel_reports_its_replication_and_its_sentinel(monkeypatch, redis_host):
    fake = FakeRedisCli(
        {"127.0.2.31:6379": INFO_MASTER, "127.0.2.31:26379": sentinel},
        units={"redis-server": "active", "redis-sentinel": "active"},
    )
    monkeypatch.setattr(probe, "run", fake)
    found = probe.facts({"roles": ["redis"]})
    assert found["redis_server"]["replication"] == {
        "role": "master",
        "connected_slaves": 1,
        "replicas": {"127.0.2.32:6379": "online"},
        "master_host": None,
        "master_port": None,
        "master_link_status": None,
    }
    assert found["sentinel"] == {
        "service": "active",
        "address": "127.0.2.31:26379",
        "master_name": "nurcrm",
        "quorum": 2,
        "master": "127.0.2.31:6379",
        "answer": "127.0.2.31:6379",
        "ckquorum": "OK 3 usable Sentinels.",
        "replicas": {"127.0.2.32:6379": "slave", "127.0.2.33:6379": "s_down,slave"},
    }
    signed_in = {(c["where"], c["command"][0], c["user"], c["auth"]) for c in fake.calls}
    assert ("127.0.2.31:6379", "INFO", "nurcrm-ops", "ops pw") in signed_in
    assert {(w, u, a) for w, command, u, a in signed_in if command == "SENTINEL"} == {
        ("127.0.2.31:26379", None, "sentinel pw")
    }


def test_a_redis_host_whose_services_are_down_says_so(monkeypatch, redis_host):
    monkeypatch.setattr(probe, "run", FakeRedisCli({}))
    found = probe.facts({"roles": ["redis"]})
    refused = "Could not connect to Redis at 127.0.2.31:26379: Connection refused"
    assert found["redis_server"]["service"] == "inactive"
    assert found["redis_server"]["replication"] == {
        "error": "Could not connect to Redis at 127.0.2.31:6379: Connection refused"
    }
    assert found["sentinel"] == {
        "service": "inactive",
        "address": "127.0.2.31:26379",
        "master_name": "nurcrm",
        "quorum": 2,
        "master": None,
        "answer": refused,
        "ckquorum": refused,
        "replicas": {},
    }


def test_a_standalone_redis_host_has_no_sentinel_facts(monkeypatch, redis_host):
    (redis_host / "sentinel.conf").unlink()
    monkeypatch.setattr(probe, "run", FakeRedisCli({"127.0.2.31:6379": "NOAUTH Authentication required.\n"}))
    found = probe.facts({"roles": ["redis"]})
    assert "sentinel" not in found and "replication" not in found["redis_server"]
    assert found["redis_server"]["ping"] == "NOAUTH Authentication required."


def test_a_program_the_probe_needs_and_does_not_find_is_named(monkeypatch):
    monkeypatch.setattr(probe, "MISSING", [])
    assert probe.run(["redis-cli-not-installed-here", "PING"])["rc"] == 127
    assert probe.MISSING == ["redis-cli-not-installed-here"]


def installed(tmp_path, user="watchdog"):
    """The probe as roles/monitoring installs it for the monitoring host's doctor: probe.py and token-user."""
    shutil.copy(Path(probe.__file__), tmp_path / "probe.py")
    (tmp_path / "token-user").write_text(user + "\n")
    return tmp_path / "probe.py"


def run_probe(path, **args):
    payload = base64.b64encode(json.dumps({"roles": [], **args}).encode()).decode()
    return subprocess.run([sys.executable, str(path), payload], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ({"mode": "redis", "command": ["FLUSHALL"]}, "runs only facts, token, send, logs, not 'redis'"),
        ({"mode": "token", "token_user": "owner", "service": "gunicorn"}, "mints tokens for watchdog only"),
    ],
)
def test_the_installed_probe_refuses_what_the_walk_does_not_ask(tmp_path, args, said):
    done = run_probe(installed(tmp_path), **args)
    assert done.returncode != 0 and said in done.stderr and done.stdout == ""


def test_the_installed_probe_runs_the_walk_for_its_user(tmp_path):
    done = run_probe(installed(tmp_path), mode="logs", service="gunicorn", position={})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {}


# --- A gunicorn set up by hand: its settings from its command line, its app run as it runs ------------------
HAND_STARTED = (
    "{ path=/home/nur/venv/bin/gunicorn ; argv[]=/home/nur/venv/bin/gunicorn core.asgi:application --workers 3 "
    "--worker-class uvicorn.workers.UvicornWorker --bind unix:/home/nur/asgi.sock -b 127.0.0.1:8001 --umask 007 "
    "--access-logfile - --preload -e DJANGO_SETTINGS_MODULE=core.settings_prod ; ignore_errors=no ; "
    "start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }"
)


def test_gunicorns_command_line_gives_its_settings_as_gunicorn_reads_them():
    argv = probe.exec_argv({"ExecStart": HAND_STARTED})
    assert argv[0] == "/home/nur/venv/bin/gunicorn"
    cli = probe.gunicorn_cli(probe.gunicorn_args(argv))
    assert cli == {
        "app": "core.asgi:application",
        "workers": "3",
        "worker_class": "uvicorn.workers.UvicornWorker",
        "binds": ["unix:/home/nur/asgi.sock", "127.0.0.1:8001"],
        "env": ["DJANGO_SETTINGS_MODULE=core.settings_prod"],
    }
    # -w3, --workers=3, -c file, and python -m gunicorn
    assert probe.gunicorn_cli(["-w3", "--bind=unix:/run/a.sock", "-c", "conf.py", "app:app"]) == {
        "workers": "3",
        "binds": ["unix:/run/a.sock"],
        "config": "conf.py",
        "app": "app:app",
        "env": [],
    }
    assert probe.gunicorn_args(["/usr/bin/python3", "-m", "gunicorn", "-k", "x"]) == ["-k", "x"]
    assert probe.gunicorn_args(["/usr/bin/supervisord", "-n"]) is None


def test_the_apps_interpreter_is_the_first_word_or_the_scripts_shebang(tmp_path):
    script = tmp_path / "gunicorn"
    script.write_text("#!/home/nur/venv/bin/python3\nimport sys\n")
    assert probe.interpreter([str(script), "core.asgi:application"]) == "/home/nur/venv/bin/python3"
    assert probe.interpreter(["/srv/venv/bin/python3.11", "-m", "gunicorn"]) == "/srv/venv/bin/python3.11"
    env_shebang = tmp_path / "gunicorn-env"
    env_shebang.write_text("#!/usr/bin/env python3\n")
    assert probe.interpreter([str(env_shebang)]) == "python3"


def test_the_settings_module_is_the_environments_else_the_one_manage_py_sets(tmp_path):
    (tmp_path / "manage.py").write_text('os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")\n')
    assert probe.settings_module(str(tmp_path), {}, "core.asgi:application") == "core.settings"
    assert probe.settings_module(str(tmp_path), {"DJANGO_SETTINGS_MODULE": "x.y"}, None) == "x.y"
    (tmp_path / "manage.py").unlink()
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "asgi.py").write_text("os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'core.prod')\n")
    assert probe.settings_module(str(tmp_path), {}, "core.asgi:application") == "core.prod"


def test_the_apps_settings_are_read_by_its_own_interpreter_as_its_user(tmp_path, monkeypatch):
    """A real Django project (the app's own settings module, in its directory, its environment): what the probe
    reads is what the settings give, and a settings module that fails names its error in one line."""
    project = tmp_path / "crm"
    (project / "core").mkdir(parents=True)
    (project / "core" / "__init__.py").write_text("")
    (project / "core" / "settings.py").write_text(
        "import os\nSECRET_KEY = 'x'\nALLOWED_HOSTS = [os.environ['PUBLIC_NAME']]\nDEBUG = False\n"
        "ASGI_APPLICATION = 'core.asgi.application'\nINSTALLED_APPS = []\n"
        "CHANNEL_LAYERS = {'default': {'BACKEND': 'channels_redis.core.RedisChannelLayer',"
        " 'CONFIG': {'hosts': [os.environ['REDIS_URL']]}}}\n"
    )
    (project / "manage.py").write_text('os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")\n')
    monkeypatch.setattr(probe, "layer_groups", lambda url, backend, prefix: {"seen": url})
    env = {"PUBLIC_NAME": "app.example.kg", "REDIS_URL": "redis://:secret@127.0.0.1:6390/2"}
    cli = {"app": "core.asgi:application"}
    facts, layer_env = probe.django_facts([sys.executable, "-m", "gunicorn"], str(project), None, env, cli)
    assert facts["settings"] == {
        "allowed_hosts": ["app.example.kg"],
        "asgi_application": "core.asgi.application",
        "debug": False,
        "channel_layer": "channels_redis.core.RedisChannelLayer",
        "channel_layer_prefix": "asgi",
    }
    assert layer_env["REDIS_URL"] == env["REDIS_URL"]  # kept on the host, for redis-cli
    assert "secret" not in json.dumps(facts["settings"]) and facts["groups"] == {"seen": env["REDIS_URL"]}
    facts, layer_env = probe.django_facts([sys.executable], str(project), None, {}, cli)
    assert "KeyError: 'PUBLIC_NAME'" in facts["error"] and layer_env == {}


def test_the_layers_groups_are_read_as_each_layer_keeps_them(monkeypatch):
    calls = []

    def answers(argv, timeout=10, env=None, input_text=None, cwd=None):
        calls.append(argv)
        if "--scan" in argv:
            return {"rc": 0, "out": "asgi:group:cafe_tables_7\nasgi:group:cafe_tables_7_3\n", "err": ""}
        if "EVAL" in argv:
            return {"rc": 0, "out": "1\n0\n", "err": ""}
        if "CHANNELS" in argv:
            return {"rc": 0, "out": "asgi__group__cafe_tables_7\n", "err": ""}
        return {"rc": 0, "out": "asgi__group__cafe_tables_7\n2\n", "err": ""}

    monkeypatch.setattr(probe, "run", answers)
    url = "redis://127.0.0.1:6379/0"
    assert probe.layer_groups(url, "channels_redis.core.RedisChannelLayer", "asgi") == {
        "cafe_tables_7": 1,
        "cafe_tables_7_3": 0,
    }
    assert probe.layer_groups(url, "channels_redis.pubsub.RedisPubSubChannelLayer", "asgi") == {"cafe_tables_7": 2}
    assert calls[0][-3:] == ["--scan", "--pattern", "asgi:group:*"]  # SCAN, never KEYS (redis-cli 7.0 has no --count)


def test_a_deployed_project_without_the_bundles_sender_is_sent_to_by_the_notes_own(monkeypatch):
    """A project other than app/, deployed by the bundle, has no send_test_notification: the doctor runs the
    production note's sender in the app, as on a server the bundle did not build."""
    monkeypatch.setattr(probe, "MARKER", "/")  # a host the bundle deployed
    unknown = "Unknown command: 'send_test_notification'\nType 'manage.py help' for usage.\n"
    monkeypatch.setattr(probe, "manage", lambda args, *command, **_: {"rc": 1, "out": "", "err": unknown})
    monkeypatch.setattr(probe, "send_as_app", lambda args: {"rc": 0, "sender": probe.SENDER, "groups": {}})
    assert probe.send({"service": "gunicorn", "company": "7"})["sender"] == probe.SENDER


def test_a_failing_send_test_notification_is_reported_not_replaced(monkeypatch):
    monkeypatch.setattr(probe, "MARKER", "/")
    monkeypatch.setattr(probe, "manage", lambda args, *command, **_: {"rc": 1, "out": "", "err": "Redis refused"})
    monkeypatch.setattr(probe, "app_env", lambda service: {})
    monkeypatch.setattr(probe, "send_as_app", lambda args: pytest.fail("the note's sender replaced a failure"))
    assert probe.send({"service": "gunicorn", "company": "7"})["rc"] == 1


def test_the_folder_of_a_process_we_may_not_see_is_none(monkeypatch):
    """Without root, /proc/<pid>/cwd of another user's process is refused: no folder, not a traceback."""

    def refused(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(probe.os, "readlink", refused)
    assert probe.cwd_of(4242) is None
    assert probe.cwd_of(0) is None
