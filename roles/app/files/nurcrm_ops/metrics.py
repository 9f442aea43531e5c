"""The bundle's own metrics of a worker, beside whatever the project counts (the same folder, the same
exporter). Declared on first use: a process that never starts a worker (manage.py) registers nothing."""

import functools


@functools.cache
def worker_starts():
    from prometheus_client import Counter

    return Counter("nurcrm_worker_starts", "gunicorn workers started (gunicorn.conf.py's post_worker_init).")
