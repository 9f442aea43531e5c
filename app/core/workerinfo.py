"""What a running worker really uses, written where the doctor can read it.

gunicorn's post_worker_init hook (roles/asgi/templates/gunicorn.conf.py.j2) calls
`write_report()` in every worker once the app is loaded; the master's `child_exit` removes
the file, even after a SIGKILL. The report holds no secret: the Redis URL is reduced to host,
port, database and whether a password is set.
"""

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from django.conf import settings

from core import redisconn


def redis_target(url):
    """Host, port, database and password presence of a Redis URL, without the password."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        return {"socket": parts.path, "db": int((query.get("db") or ["0"])[0]), "password": bool(parts.password)}
    db = parts.path.lstrip("/") or (query.get("db") or ["0"])[0]
    return {"host": parts.hostname, "port": parts.port or 6379, "db": int(db), "password": bool(parts.password)}


def effective_settings(worker_class=""):
    layer = settings.CHANNEL_LAYERS["default"]
    return {
        "pid": os.getpid(),
        "release": settings.RELEASE,
        "worker_class": worker_class,
        "asgi_application": settings.ASGI_APPLICATION,
        "allowed_hosts": list(settings.ALLOWED_HOSTS),
        "debug": settings.DEBUG,
        "channel_layer": layer["BACKEND"],
        "channel_layer_prefix": layer.get("CONFIG", {}).get("prefix", ""),
        "redis": redis_target(settings.REDIS_URL),
        "redis_sentinel": redisconn.describe(layer["CONFIG"]["hosts"][0])
        if "hosts" in layer.get("CONFIG", {})
        else None,
    }


def uvicorn_options(worker):
    """The loop, HTTP and WebSocket implementations a uvicorn worker was given, and whom it believes
    forwarded headers from (None for another worker)."""
    config = getattr(worker, "config", None)
    if config is None or not hasattr(config, "ws"):
        return None

    def name(value):
        return value if isinstance(value, str) else f"{value.__module__}:{value.__qualname__}"

    trusted = config.forwarded_allow_ips
    trusted = sorted(trusted.split(",") if isinstance(trusted, str) else trusted)
    return {
        "loop": name(config.loop),
        "http": name(config.http),
        "ws": name(config.ws),
        # Whose X-Forwarded-* it believes: the web hosts (asgi_forwarded_allow_ips), never "*".
        "proxy_headers": config.proxy_headers,
        "forwarded_allow_ips": [address.strip() for address in trusted],
    }


def write_report(directory, worker):
    cls = type(worker)
    report = effective_settings(f"{cls.__module__}.{cls.__qualname__}")
    report["uvicorn"] = uvicorn_options(worker)
    path = Path(directory) / f"worker-{report['pid']}.json"
    path.write_text(json.dumps(report))


def remove_report(directory, pid):
    Path(directory, f"worker-{pid}.json").unlink(missing_ok=True)
