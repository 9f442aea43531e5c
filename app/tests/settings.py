"""The production settings module, fed a production-like environment (DEBUG off).

Only what a test run cannot have is swapped: SQLite instead of PostgreSQL and the
in-memory channel layer (the Redis suites switch to the real layers themselves). The metrics run in
prometheus_client's multiprocess mode, as under gunicorn, in a folder of this run's own.
"""

import atexit
import os
import shutil
import tempfile

METRICS_DIR = tempfile.mkdtemp(prefix="nurcrm-metrics-")
atexit.register(shutil.rmtree, METRICS_DIR, True)

for name, value in {
    "DEBUG": "0",
    "SECRET_KEY": "test-secret-key-not-for-production-0123456789",
    "JWT_SIGNING_KEY": "test-jwt-signing-key-not-for-production-0123456789",
    "ALLOWED_HOSTS": "testserver,app.nurcrm.kg",
    "DATABASE_URL": "sqlite:///:memory:",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "CHANNEL_LAYER": "memory",
    # The test client speaks plain http to Django; deployments sit behind nginx's TLS.
    "SECURE_SSL_REDIRECT": "0",
    "PROMETHEUS_MULTIPROC_DIR": METRICS_DIR,
}.items():
    os.environ[name] = value

from core.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast hashing for test users only
