"""Where the app's Redis is, declared once: REDIS_URL alone, or through Redis Sentinel.

With REDIS_SENTINELS (host:port, comma-separated) and REDIS_MASTER_NAME, every client of the app
(both channel layers, the layer watch, the socket count, the sign-in limit, the group diagnostics)
asks the Sentinels for the current master and follows it through a failover; REDIS_URL then gives
only the user, password and database (its host is not used). REDIS_SENTINEL_PASSWORD is the
Sentinels' own. `host(...)` is one channels_redis host (the format of CHANNEL_LAYERS' "hosts"),
which the other helpers turn into a client.
"""

from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.sentinel
from channels_redis.utils import create_pool


def sentinel_addresses(text):
    """ "10.0.0.1:26379,10.0.0.2:26379" -> [("10.0.0.1", 26379), ("10.0.0.2", 26379)]."""
    found = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        address, _, port = item.rpartition(":")
        if not address or not port.isdigit():
            raise ValueError(f"{item!r} is not host:port")
        found.append((address.strip("[]"), int(port)))
    return found


def host(url, sentinels=(), master_name="", sentinel_password="", **options):
    """A channels_redis host for REDIS_URL, or for the master the Sentinels name."""
    if not sentinels:
        return {"address": url, **options}
    if not master_name:
        raise ValueError("REDIS_SENTINELS needs REDIS_MASTER_NAME")
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    credentials = {"username": unquote(parts.username) if parts.username else None}
    credentials["password"] = unquote(parts.password) if parts.password else None
    return {
        "sentinels": list(sentinels),
        "master_name": master_name,
        "sentinel_kwargs": {"password": sentinel_password or None, "socket_timeout": 2, "socket_connect_timeout": 2},
        "db": int(db),
        **credentials,
        **options,
    }


def client(config, **options):
    """A synchronous client of the host `config` (the master, through the Sentinels when there are any)."""
    config = dict(config, **options)
    if "master_name" not in config:
        return redis.Redis.from_url(config.pop("address"), **config)
    sentinel = redis.sentinel.Sentinel(config.pop("sentinels"), sentinel_kwargs=config.pop("sentinel_kwargs"))
    return sentinel.master_for(config.pop("master_name"), **config)


def async_pool(config, blocking=False, **options):
    """An asyncio connection pool of the host `config`; `blocking`: callers wait for a free connection."""
    config = dict(config, **options)
    if blocking and "master_name" not in config:
        return aioredis.BlockingConnectionPool.from_url(config.pop("address"), timeout=5, **config)
    return create_pool(config)
