"""Failed logins counted per user name, in Redis, so that every gunicorn worker sees the same count.

POST /api/auth/token/ takes an attempt before it checks the password (`take`): the count of a
user name goes up by one, and the first attempt starts a window of LOGIN_FAILURE_WINDOW seconds.
Past LOGIN_MAX_FAILURES attempts in the window every attempt is refused (HTTP 429, Retry-After:
the rest of the window), whatever the password. A successful login clears the count (`clear`);
an attempt that never got to the password (a 400) gives its attempt back (`give_back`). Taking
the attempt first makes the limit hold for attempts racing in parallel on several workers.

The key is `<CHANNEL_LAYER_PREFIX>:nurcrm:login:<sha256 of the casefolded user name>`: no user name
is stored in Redis. Redis unreachable: the attempt is allowed and an error logged (nginx still
limits each address); logins must not all fail because Redis does.
"""

import hashlib
import logging
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from nurcrm_realtime import redisconn

logger = logging.getLogger(__name__)

# KEYS[1]: the user name's counter. ARGV[1]: the window. Returns the count and the window's rest.
TAKE = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
# KEYS[1]: the counter. Never leaves a counter at zero or below, nor one without its expiry.
GIVE_BACK = """
if redis.call('DECR', KEYS[1]) <= 0 then
  redis.call('DEL', KEYS[1])
end
"""


@dataclass
class Attempt:
    key: str | None  # None: not counted (Redis unreachable)
    allowed: bool
    retry_after: int = 0


@lru_cache(maxsize=4)
def _client(url, sentinels, master_name):
    # Short timeouts and one quick retry: a login waits for Redis a second or two at most.
    config = redisconn.host(url, sentinels, master_name, settings.REDIS_SENTINEL_PASSWORD)
    return redisconn.client(
        config, socket_timeout=2, socket_connect_timeout=2, retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1)
    )


def _redis():
    return _client(settings.REDIS_URL, tuple(settings.REDIS_SENTINELS), settings.REDIS_MASTER_NAME)


def _key(username):
    name = unicodedata.normalize("NFKC", username).casefold()
    return f"{settings.CHANNEL_LAYER_PREFIX}:nurcrm:login:{hashlib.sha256(name.encode()).hexdigest()}"


def take(username):
    """One attempt at `username`'s password: allowed, or refused with the seconds until the next."""
    key = _key(username)
    client = _redis()
    try:
        count, ttl = client.register_script(TAKE)(keys=[key], args=[settings.LOGIN_FAILURE_WINDOW])
    except redis.RedisError as exc:
        logger.error("login attempts are not limited: Redis failed (%r)", exc)
        return Attempt(None, True)
    if count > settings.LOGIN_MAX_FAILURES:
        return Attempt(key, False, max(int(ttl), 1))
    return Attempt(key, True)


def clear(attempt):
    """The login succeeded: the user name's count starts again from nothing."""
    _quietly(attempt, lambda client: client.delete(attempt.key))


def give_back(attempt):
    """The attempt never got to the password (a malformed request): it does not count."""
    _quietly(attempt, lambda client: client.register_script(GIVE_BACK)(keys=[attempt.key]))


def _quietly(attempt, command):
    if attempt.key is None:
        return
    try:
        command(_redis())
    except redis.RedisError as exc:
        logger.error("login attempts: Redis failed (%r)", exc)
