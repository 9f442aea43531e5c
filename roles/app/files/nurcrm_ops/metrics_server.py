"""The exporter: every gunicorn worker's metrics, added up, on /metrics.

    python -m nurcrm_ops.metrics_server --listen 127.0.0.1:9808 --dir /run/gunicorn-metrics

It runs as a process of its own (the `nurcrm-metrics` unit), beside gunicorn and never through nginx:
it reads the files the workers keep in their PROMETHEUS_MULTIPROC_DIR (nurcrm_ops.metrics' and the
project's own) at every scrape, so it answers while gunicorn restarts, with what is there (nothing while
the folder is missing). It imports neither Django nor the project: it holds no values of its own. Only
/metrics answers; any other path is 404.
"""

import argparse
import glob
import ipaddress
import os
import socket
import sys
from socketserver import TCPServer, ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector


class WorkersCollector:
    """MultiProcessCollector's sums, read from `path` at each collect, and none while it is missing
    (MultiProcessCollector itself refuses a missing folder once, when made)."""

    def __init__(self, path):
        self.path = path

    def collect(self):
        try:
            return self.merge()
        except FileNotFoundError:  # a counter's file goes only when the master empties the folder at its start
            return self.merge()

    def merge(self):
        return MultiProcessCollector.merge(glob.glob(os.path.join(self.path, "*.db")), accumulate=True)


def application(path):
    """The WSGI app: /metrics from the folder `path`, 404 for anything else."""
    registry = CollectorRegistry()
    registry.register(WorkersCollector(path))
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/metrics":
            return metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: only /metrics is served here\n"]

    return app


def listen_address(value):
    """(host, port) of "ADDR:PORT", "[v6]:PORT" too; ValueError saying what is wrong."""
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {value!r}: expected ADDR:PORT, e.g. 127.0.0.1:9808")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--listen {value!r}: {host!r} is not an IP address (the host's private one)") from None
    return host, int(port)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight does not hold up the stop

    def server_bind(self):
        # As HTTPServer's, without its reverse DNS lookup of the address (seconds, on a host without DNS).
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name) one line a scrape is noise
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nurcrm_ops.metrics_server", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ADDR:PORT, the host's private or loopback address")
    parser.add_argument("--dir", required=True, help="the workers' PROMETHEUS_MULTIPROC_DIR")
    args = parser.parse_args(argv)
    try:
        host, port = listen_address(args.listen)
    except ValueError as exc:
        print(f"metrics_server: {exc}", file=sys.stderr)
        return 2
    server_class = _Server6 if ":" in host else _Server
    try:
        server = make_server(host, port, application(args.dir), server_class, _QuietHandler)
    except OSError as exc:
        print(f"metrics_server: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"metrics_server: serving {args.dir} on http://{args.listen}/metrics", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
