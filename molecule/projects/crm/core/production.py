"""Settings on a server deployed by the nurcrm bundle: the CRM's own, with everything from the environment the
bundle writes (no .env beside the code, which is read-only there), Redis as the cache as well as the channel
layer, and the folders the bundle gives it."""

import os

from core.settings import *  # noqa: F403 (the CRM's settings, changed below)
from core.settings import REDIS_URL

STATIC_ROOT = os.environ["STATIC_ROOT"]
MEDIA_ROOT = os.environ["MEDIA_ROOT"]
# The same Redis and user as the channel layer, under keys of its own (cache:*, which the bundle lets the
# user touch: redis_app_extra_keys).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cache",
    }
}
