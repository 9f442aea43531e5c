"""The local run app/README.md shows, started for real by tests: gunicorn with uvicorn workers on a
unix socket, the app's SQLite database, and a redis-server given by the caller."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from websockets.asyncio.client import unix_connect

APP_DIR = Path(__file__).resolve().parent.parent
# The bundle's own package (roles/app/files/nurcrm_ops), which the app role links into every release's
# virtualenv: gunicorn's config and the exporter import it.
OPS_PATH = str(APP_DIR.parent / "roles" / "app" / "files")


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


class LocalStack:
    def __init__(self, tmp, redis_url, workers=3, layer="redis", config=None, **settings):
        """`settings` are more environment variables of the app (WS_MAX_LIFETIME="2", say); `config` a
        gunicorn config file (the command line's options override it)."""
        self.workers = workers
        self.env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": OPS_PATH,
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "JWT_SIGNING_KEY": uuid.uuid4().hex * 2,
            "ALLOWED_HOSTS": "localhost",
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "REDIS_URL": redis_url,
            "CHANNEL_LAYER": layer,
            "CHANNEL_LAYER_PREFIX": f"asgi{uuid.uuid4().hex[:6]}",
            **settings,
        }
        self.manage("migrate", "--verbosity", "0")
        self.manage("seed_demo")
        self.sock, self.log, self.output = tmp / "asgi.sock", tmp / "gunicorn.log", tmp / "gunicorn.out"
        command = [sys.executable, "-m", "gunicorn", "core.asgi:application"]
        command += ["--config", str(config)] if config else []
        command += ["--worker-class", "uvicorn_worker.UvicornWorker", "--workers", str(workers)]
        command += ["--bind", f"unix:{self.sock}", "--error-logfile", str(self.log), "--log-level", "info"]
        with open(self.output, "wb") as out:  # the workers' stdout and stderr (Django's own log lines)
            self.server = subprocess.Popen(command, cwd=APP_DIR, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._ready():
            assert self.server.poll() is None and time.monotonic() < deadline, self.logs_text()
            time.sleep(0.1)

    def _ready(self):
        return (
            self.sock.exists()
            and len(self.worker_pids()) == self.workers
            and self.log.read_text().count("Application startup complete") >= self.workers
        )

    @property
    def pid(self):
        return self.server.pid

    def worker_pids(self):
        return sorted(children(self.server.pid))

    def manage(self, *args):
        result = self.run_manage(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    @property
    def manage_env(self):
        """A command's environment, as nurcrm-manage's on a host: the app's, without the unit's metrics folder
        (a command is no worker, and nothing would remove its files)."""
        return {name: value for name, value in self.env.items() if name != "PROMETHEUS_MULTIPROC_DIR"}

    def run_manage(self, *args):
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=APP_DIR, env=self.manage_env, capture_output=True, text=True
        )

    def connect(self, query, **kwargs):
        url = f"ws://localhost/ws/cafe/tables/?{query}"
        return unix_connect(str(self.sock), url, origin="http://localhost", **kwargs)

    @property
    def logs(self):
        return (self.log, self.output)

    def logs_text(self):
        return "\n".join(path.read_text(errors="replace") for path in self.logs if path.exists())

    def stop(self):
        """gunicorn's own stop: TERM, then the arbiter kills a worker still busy after its graceful timeout
        (30 s), so the wait outlasts that; a stop that hangs beyond it fails with the logs."""
        self.server.terminate()
        try:
            self.server.wait(40)
        except subprocess.TimeoutExpired:
            self.server.kill()
            raise AssertionError(f"gunicorn did not stop in 40 s:\n{self.logs_text()[-4000:]}") from None
