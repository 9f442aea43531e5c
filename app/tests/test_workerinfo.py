"""The worker report the doctor reads: effective settings, never a secret."""

import json

import pytest

from nurcrm_ops.workerinfo import redis_target, remove_report, write_report


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


def test_a_project_without_redis_url_is_reported_from_its_layers_first_host(tmp_path, settings):
    """Another project names no REDIS_URL of the bundle's: the layer's own host says where it points."""
    del settings.REDIS_URL
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://crm:s3cret@10.0.0.7:6381/1"}]},
        }
    }

    class UvicornWorker:
        pass

    write_report(tmp_path, UvicornWorker(), "3f2a9c1b7d4e")
    (path,) = tmp_path.iterdir()
    report = json.loads(path.read_text())
    assert report["release"] == "3f2a9c1b7d4e"
    assert report["redis"] == {"host": "10.0.0.7", "port": 6381, "db": 1, "password": True}
    assert report["channel_layer_prefix"] == "asgi"  # channels_redis's default
    assert report["redis_sentinel"] is None
    assert "s3cret" not in path.read_text()


def test_the_release_is_read_from_the_releases_file(tmp_path):
    from nurcrm_ops.hooks import release_of

    (tmp_path / "release.json").write_text('{"id": "3f2a9c1b7d4e", "source": "git"}')
    assert release_of(tmp_path / "release.json") == "3f2a9c1b7d4e"
    assert release_of(tmp_path / "absent.json") == "dev"
