"""The probe's parsers and its log positions, on files and command outputs made here."""

import os

import pytest

from doctor import probe


def test_an_env_file_is_read_as_systemd_reads_it():
    text = "# a comment\nDEBUG=0\nexport SECRET_KEY='a b'\nALLOWED_HOSTS=\"app.nurcrm.kg\"\nnot a line\n"
    assert probe.parse_env_file(text) == {"DEBUG": "0", "SECRET_KEY": "a b", "ALLOWED_HOSTS": "app.nurcrm.kg"}


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


def test_the_position_is_the_journals_cursor_and_error_logs_end(monkeypatch, tmp_path):
    log = tmp_path / "error.log"
    log.write_text("12345")
    monkeypatch.setattr(probe, "NGINX_ERROR_LOG", str(log))
    shown = "-- No entries --\n-- cursor: s=ab12;i=5af;b=cd;m=27;t=66;x=77\n"
    monkeypatch.setattr(probe, "run", lambda argv, **_: {"rc": 0, "out": shown, "err": ""})
    position = probe.log_position()
    assert position["journal_cursor"] == "s=ab12;i=5af;b=cd;m=27;t=66;x=77"
    assert position["nginx_error_log"] == position_of(log)


def test_the_walks_logs_are_only_those_after_its_position(monkeypatch, tmp_path):
    """Two walks back to back: the second does not see the first one's errors."""
    log = tmp_path / "error.log"
    log.write_text("2026/12/01 10:00:00 [crit] connect() to unix:/home/nur/asgi-old.sock failed\n")
    monkeypatch.setattr(probe, "NGINX_ERROR_LOG", str(log))
    asked = []

    def run(argv, **_):
        asked.append(argv)
        return {"rc": 0, "out": "-- cursor: s=1;i=2\n" if "--show-cursor" in argv else "", "err": ""}

    monkeypatch.setattr(probe, "run", run)
    position = probe.log_position()
    with log.open("a") as f:
        f.write("2026/12/01 10:00:01 [notice] reloading\n2026/12/01 10:00:02 [error] during this walk\n")
    found = probe.logs({"roles": ["web", "app"], "service": "gunicorn", "position": position})
    assert found == {"gunicorn": [], "nginx": ["2026/12/01 10:00:02 [error] during this walk"]}
    assert ["journalctl", "-u", "gunicorn", "--after-cursor", "s=1;i=2"] == asked[-1][:5]


def test_without_a_cursor_the_journal_is_read_since_the_walks_start(monkeypatch):
    asked = []
    monkeypatch.setattr(probe, "run", lambda argv, **_: asked.append(argv) or {"rc": 0, "out": "", "err": ""})
    probe.journal_after("gunicorn", {"journal_cursor": None, "time": 1796160860.5})
    assert asked[0][3:5] == ["--since", "@1796160860"]
