"""The realtime app's Prometheus metrics, each declared once here; the code paths that move them import this module.

Under gunicorn every worker is a process of its own: the unit sets PROMETHEUS_MULTIPROC_DIR, and
prometheus_client's multiprocess mode keeps each worker's values in files there, which the exporter
(the bundle's nurcrm_ops.metrics_server, the `nurcrm-metrics` unit) adds up. gunicorn.conf.py empties
the folder when the master starts and drops a dead worker's open sockets (mark_process_dead), and counts
worker starts itself (nurcrm_worker_starts, the bundle's). Without the variable (a shell, manage.py) the
values stay in the process and nobody reads them.

Labels never carry an id: a company is only its size bucket.
"""

from prometheus_client import Counter, Gauge, Histogram

# The handshake's outcomes: accepted, or the close code it got (the project's authentication: 4400/4401/4403;
# nurcrm_realtime.consumer: 4429, 1013), or refused by the Origin check (nurcrm_realtime.asgi).
OUTCOMES = ("accepted", "4400", "4401", "4403", "4429", "1013", "origin")
COMPANY_SIZES = ("1-9", "10-49", "50+")
REDIS_ERROR_PLACES = ("layer_watch", "consumer", "broadcast", "ws_guard")

OPEN_SOCKETS = Gauge(
    "nurcrm_ws_open_sockets",
    "WebSockets open now, per worker and size of their company (its tables).",
    ["company_size"],
    multiprocess_mode="liveall",
)
HANDSHAKES = Counter("nurcrm_ws_handshakes", "WebSocket handshakes by outcome.", ["outcome"])
EVENTS_BROADCAST = Counter("nurcrm_events_broadcast", "Events sent to the channel layer, by type.", ["type"])
FRAMES_WRITTEN = Counter("nurcrm_ws_frames_written", "Frames handed to sockets.")
BACKLOG_CLOSES = Counter(
    "nurcrm_ws_backlog_closes", "Sockets closed with 1013 because they fell too many broadcasts behind."
)
LAYER_RESETS = Counter(
    "nurcrm_channel_layer_resets",
    "Times a worker resynced its sockets: Redis lost the layer's data, or the worker's link to it was interrupted.",
)
EVENTS_RELAYED = Counter(
    "nurcrm_events_relayed", "Events the outbox relay published because Redis refused them at their commit."
)
REBALANCE_CLOSES = Counter(
    "nurcrm_ws_rebalance_closes",
    "Sockets closed with 1012 to move them to an app host holding fewer (nurcrm_realtime.balance).",
)
REDIS_ERRORS = Counter("nurcrm_redis_errors", "Redis commands that failed, by where.", ["where"])
SNAPSHOT_SECONDS = Histogram(
    "nurcrm_snapshot_seconds",
    "Seconds to read the tables snapshot a socket gets on connect.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Every series a rate or an alert reads exists from the start, at 0: absent is not zero to Prometheus.
for _outcome in OUTCOMES:
    HANDSHAKES.labels(outcome=_outcome)
for _size in COMPANY_SIZES:
    OPEN_SOCKETS.labels(company_size=_size)
for _where in REDIS_ERROR_PLACES:
    REDIS_ERRORS.labels(where=_where)


def company_size(tables):
    """The bucket of a company with `tables` tables."""
    if tables < 10:
        return "1-9"
    return "10-49" if tables < 50 else "50+"
