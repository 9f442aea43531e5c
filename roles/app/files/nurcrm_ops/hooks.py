"""gunicorn's server hooks, called from gunicorn.conf.py (roles/asgi/templates/gunicorn.conf.py.j2).

Every worker, once the project is loaded, writes its report (workerinfo) where nurcrm-ready and the
doctor read it, and counts its start; the master removes a dead worker's report and marks its metrics
dead, even after a SIGKILL (a killed worker runs no hook of its own). The metrics need prometheus_client,
which the app role adds to a virtualenv whose lock lacks it.
"""

import glob
import json
import os
from pathlib import Path

from nurcrm_ops import workerinfo


def release_of(path):
    """The release id in the release's release.json (written by the app role), "dev" without one."""
    try:
        return json.loads(Path(path).read_text())["id"]
    except (OSError, ValueError, KeyError, TypeError):
        return "dev"


def on_starting(metrics_dir):
    """In the master, once: the files of an earlier run's workers would add their counts to this one's."""
    if metrics_dir:
        for path in glob.glob(os.path.join(metrics_dir, "*.db")):
            os.remove(path)


def post_worker_init(worker, report_dir, release_file, metrics_dir):
    workerinfo.write_report(report_dir, worker, release_of(release_file))
    if metrics_dir:
        from nurcrm_ops import metrics

        metrics.worker_starts().inc()


def child_exit(worker, report_dir, metrics_dir):
    workerinfo.remove_report(report_dir, worker.pid)
    if metrics_dir:
        # Its open sockets are no longer open; its counters stay in the sums.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, metrics_dir)
