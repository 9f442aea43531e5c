"""The worker report the doctor reads: effective settings, never a secret."""

import json

import pytest

from core.workerinfo import redis_target, remove_report, write_report


@pytest.mark.parametrize(
    "url,expected",
    [
        ("redis://default:s3cret@10.0.0.5:6380/2", {"host": "10.0.0.5", "port": 6380, "db": 2, "password": True}),
        ("redis://127.0.0.1", {"host": "127.0.0.1", "port": 6379, "db": 0, "password": False}),
        ("unix:///run/redis/redis.sock?db=3", {"socket": "/run/redis/redis.sock", "db": 3, "password": False}),
    ],
)
def test_redis_target_keeps_the_address_and_drops_the_password(url, expected):
    assert redis_target(url) == expected


def test_report_names_the_worker_class_and_layer_and_is_removed_on_exit(tmp_path, settings):
    settings.REDIS_URL = "redis://default:s3cret@127.0.0.1:6379/0"

    class UvicornWorker:
        pass

    write_report(tmp_path, UvicornWorker())
    (path,) = tmp_path.iterdir()
    report = json.loads(path.read_text())
    assert report["worker_class"].endswith("UvicornWorker")
    assert report["asgi_application"] == "core.asgi.application"
    assert report["redis"] == {"host": "127.0.0.1", "port": 6379, "db": 0, "password": True}
    assert "s3cret" not in path.read_text()
    remove_report(tmp_path, report["pid"])
    assert not list(tmp_path.iterdir())


def test_report_says_whom_a_uvicorn_worker_believes_forwarded_headers_from(tmp_path):
    """gunicorn's forwarded_allow_ips reaches uvicorn's config as a list; the report carries it for the doctor."""
    from uvicorn.config import Config

    class UvicornWorker:
        config = Config(app=None, forwarded_allow_ips=["127.0.2.10", "10.0.0.10"])

    write_report(tmp_path, UvicornWorker())
    (path,) = tmp_path.iterdir()
    uvicorn = json.loads(path.read_text())["uvicorn"]
    assert uvicorn["proxy_headers"] is True
    assert uvicorn["forwarded_allow_ips"] == ["10.0.0.10", "127.0.2.10"]
