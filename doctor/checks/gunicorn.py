"""Step gunicorn: the unit, its uvicorn workers, the socket and the settings every worker reports, on every
app host. gunicorn's settings are read wherever they are (its command line, its config file, the unit), so a
gunicorn set up by hand is judged like the bundle's."""

from doctor.hosts import role_default, wired
from doctor.registry import check, fail, ok, skip

EXPECTED_WORKER_CLASS = role_default("asgi", "asgi_worker_class")
SOCKET = wired("asgi_socket")
# The worker classes that speak ASGI and WebSocket: uvicorn-worker's, and the older one uvicorn still ships.
UVICORN_WORKERS = {
    f"{module}.{name}"
    for module in ("uvicorn_worker", "uvicorn_worker._workers", "uvicorn.workers")
    for name in ("UvicornWorker", "UvicornH11Worker")
}


def speaks_asgi(worker_class):
    return worker_class in UVICORN_WORKERS


def managed(h):
    """Only where the bundle deployed the host: its gunicorn.conf.py makes the workers report their settings."""
    return h.managed


@check("gunicorn", "gunicorn", on="app")
def gunicorn_active(h):
    """The gunicorn unit is active and enabled (or, where no unit runs it, a gunicorn master runs: supervisor's)."""
    g = h.gunicorn
    unit, name = g.get("unit") or {}, g.get("service") or "gunicorn"
    if unit.get("LoadState") == "not-found" and g.get("main_pid"):
        return ok(f"no unit {name}; gunicorn's master {g['main_pid']} runs under {g.get('parent') or 'another'}")
    if unit.get("ActiveState") != "active" or unit.get("UnitFileState") != "enabled":
        return fail(
            f"unit {name} is {unit.get('ActiveState')}/{unit.get('SubState')}, {unit.get('UnitFileState')}",
            f"enables and starts {name}; journalctl -u {name} -n 50 says why it stopped",
        )
    return ok(f"active, enabled, main pid {g['main_pid']}")


@check("gunicorn", "gunicorn", on="app")
def gunicorn_worker_class(h):
    """gunicorn runs uvicorn workers, the only kind that speaks ASGI and WebSocket."""
    config = h.gunicorn.get("config") or {}
    configured = config.get("worker_class")
    running = sorted({r.get("worker_class", "") for r in h.reports.values()})
    if not speaks_asgi(configured) or not all(map(speaks_asgi, running)):
        seen = f", running {running}" if running else ""
        return fail(
            f"configured {configured} ({config.get('from') or 'gunicorn'}){seen}: only uvicorn workers speak "
            "ASGI/WebSocket",
            f"writes back worker_class = {EXPECTED_WORKER_CLASS!r} in {h.gunicorn.get('config_path')} and restarts",
        )
    return ok(f"{configured} ({config.get('from') or 'gunicorn'}){' in every worker' if running else ''}")


@check("gunicorn", "gunicorn", on="app", needs=["gunicorn_active"])
def gunicorn_worker_count(h):
    """As many workers run as are configured (the checklist's three)."""
    configured = str((h.gunicorn.get("config") or {}).get("workers") or "")
    expected = int(configured) if configured.isdigit() else 3
    workers = h.gunicorn.get("workers") or []
    if len(workers) != expected:
        return fail(
            f"{len(workers)} workers running, {expected} configured",
            "restarts gunicorn; journalctl -u gunicorn says why workers die",
        )
    return ok(f"{len(workers)} workers: {workers}")


@check("gunicorn", "gunicorn", on="app", needs=["gunicorn_active"])
def gunicorn_socket(h):
    """gunicorn binds the unix socket, and nginx's user can connect to it."""
    sock = h.gunicorn.get("socket")
    if not sock:
        binds = (h.gunicorn.get("config") or {}).get("binds")
        if binds and not h.managed:  # nginx_upstream_reaches_every_app_host judges whether nginx reaches them
            return ok(f"no unix socket (the production note's is {SOCKET}): gunicorn binds {binds}")
        return fail(f"gunicorn binds no unix socket: {binds}", f"writes back bind = ['unix:{SOCKET}', ...]")
    if not (sock.get("exists") and sock.get("is_socket")):
        return fail(f"{sock['path']} is missing or not a socket", "restarts gunicorn, which makes it")
    if not sock.get("nginx_user_connects"):
        return fail(
            f"nginx's user cannot connect to {sock['path']} ({sock.get('mode')}, group {sock.get('group')}): "
            f"{sock.get('connect_error')}",
            "runs gunicorn with nginx's group and umask 007; the socket's folder must be traversable (0711)",
        )
    return ok(f"{sock['path']} {sock['mode']} group {sock['group']}, nginx connects")


@check("gunicorn", "gunicorn", on="app", needs=["gunicorn_active"], only=managed)
def gunicorn_workers_report(h):
    """Every worker reports the settings it runs with in /run/gunicorn (the redis and django steps read them).

    gunicorn.conf.py's post_worker_init writes the reports."""
    missing = [pid for pid in map(str, h.gunicorn.get("workers") or []) if pid not in h.reports]
    if missing or not h.reports:
        return fail(
            f"workers {missing} have not reported their settings in /run/gunicorn",
            "writes back gunicorn.conf.py, whose post_worker_init reports them, and restarts",
        )
    return ok(f"{len(h.reports)} workers report their settings in /run/gunicorn")


LOOPBACK = {"127.0.0.1", "::1"}


def _proxy_sources(web):
    """The addresses a web host's nginx connects to the app hosts from: its proxy_bind, else any of its own."""
    return web.nginx_config.proxy_bind() or set(web.probe.get("addresses") or [])


@check("gunicorn", "gunicorn", on="app", needs=["gunicorn_workers_report"], only=managed)
def gunicorn_trusts_only_web_hosts(h):
    """X-Forwarded-* (the client's address and scheme) are believed only from the web hosts' addresses.

    Loopback only where nginx runs on the app host itself. "*" would let anyone who reaches the port claim any
    address."""
    trusted = {r["pid"]: (r.get("uvicorn") or {}).get("forwarded_allow_ips") for r in h.reports.values()}
    if all(value is None for value in trusted.values()):
        return skip("the workers do not report whom they trust (a release before this check)")
    webs = h.facts.answering("web")
    allowed = set().union(*(_proxy_sources(web) for web in webs)) - LOOPBACK
    if any(web.machine == h.machine for web in webs):
        allowed |= LOOPBACK
    wrong = {pid: value for pid, value in trusted.items() if not value or not set(value) <= allowed}
    if wrong:
        return fail(
            f"workers believe X-Forwarded-* from {sorted({a for v in wrong.values() for a in v or []}) or 'no one'}; "
            f"the web hosts are {sorted(allowed)}",
            "writes back forwarded_allow_ips from asgi_forwarded_allow_ips (the web hosts' addresses) and restarts",
        )
    return ok(f"X-Forwarded-* believed only from {sorted(set().union(*trusted.values()))}")


@check("gunicorn", "gunicorn", on="app", needs=["gunicorn_active"])
def gunicorn_workers_stable(h):
    """No worker was replaced during the walk (workers do not restart per request)."""
    before, after = h.gunicorn.get("workers"), h.gunicorn.get("workers_later")
    if before != after:
        return fail(
            f"workers changed within a second: {before} -> {after}",
            "writes back max_requests = 0 and restarts; if workers still crash, journalctl -u gunicorn says why",
        )
    return ok(f"same pids over the sample: {after}")
