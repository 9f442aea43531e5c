"""What a running worker really uses, written where nurcrm-ready and the doctor can read it.

gunicorn's post_worker_init hook (nurcrm_ops.hooks) calls `write_report()` in every worker once the
project is loaded; the master's `child_exit` removes the file, even after a SIGKILL. It reads the
settings any Django Channels project has (ALLOWED_HOSTS, DEBUG, ASGI_APPLICATION, CHANNEL_LAYERS; a
REDIS_URL where the project has one, else the layer's first host). The report holds no secret: a Redis
URL is reduced to host, port, database and whether a password is set.
"""

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def redis_target(url):
    """Host, port, database and password presence of a Redis URL, without the password."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        return {"socket": parts.path, "db": int((query.get("db") or ["0"])[0]), "password": bool(parts.password)}
    db = parts.path.lstrip("/") or (query.get("db") or ["0"])[0]
    return {"host": parts.hostname, "port": parts.port or 6379, "db": int(db), "password": bool(parts.password)}


def layer_url(host):
    """The Redis URL of a channels_redis host entry (a URL, a dict with "address", or a (host, port) pair)."""
    if isinstance(host, dict):
        host = host.get("address")
    if isinstance(host, str):
        return host
    if isinstance(host, list | tuple) and len(host) == 2:
        return f"redis://{host[0]}:{host[1]}"
    return None


def sentinel_of(host):
    """The Sentinels and master name of a channels_redis Sentinel host entry, None for a plain Redis."""
    if not isinstance(host, dict) or "master_name" not in host:
        return None
    return {"sentinels": [f"{h}:{p}" for h, p in host["sentinels"]], "master_name": host["master_name"]}


def effective_settings(worker_class="", release="dev"):
    from django.conf import settings

    layer = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default", {})
    backend, config = layer.get("BACKEND", ""), layer.get("CONFIG", {})
    host = (config.get("hosts") or [None])[0]
    url = getattr(settings, "REDIS_URL", None) or layer_url(host)
    return {
        "pid": os.getpid(),
        "release": release,
        "worker_class": worker_class,
        "asgi_application": getattr(settings, "ASGI_APPLICATION", ""),
        "allowed_hosts": list(settings.ALLOWED_HOSTS),
        "debug": settings.DEBUG,
        "channel_layer": backend,
        "channel_layer_prefix": config.get("prefix", "asgi" if backend.startswith("channels_redis.") else ""),
        "redis": redis_target(url) if url else None,
        "redis_sentinel": sentinel_of(host),
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


def write_report(directory, worker, release="dev"):
    cls = type(worker)
    report = effective_settings(f"{cls.__module__}.{cls.__qualname__}", release)
    report["uvicorn"] = uvicorn_options(worker)
    path = Path(directory) / f"worker-{report['pid']}.json"
    path.write_text(json.dumps(report))


def remove_report(directory, pid):
    Path(directory, f"worker-{pid}.json").unlink(missing_ok=True)
