"""Steps database and django: PostgreSQL on every db host, and the Django settings each app host's workers
run with."""

from doctor.checks.redis import MEMORY_LAYER
from doctor.registry import check, fail, ok

ASGI_APPLICATION = "core.asgi.application"


@check("database", "postgresql", on="db")
def postgresql_ready(h):
    """PostgreSQL on each db host accepts connections."""
    db = h.probe.get("postgresql") or {}
    if db.get("service") != "active" or db.get("ready_rc") != 0:
        return fail(
            f"postgresql is {db.get('service')}; pg_isready: {db.get('ready') or 'no answer'}",
            "starts PostgreSQL with the bundle's configuration",
        )
    return ok(f"postgresql active; pg_isready: {db.get('ready')}")


def origin_refused(h):
    """Why a worker of this host refuses the Origin clients send, or None."""
    origin_host = h.site.server_name
    for pid, report in h.reports.items():
        hosts = report.get("allowed_hosts") or []
        if not any(origin_host == a or (a.startswith(".") and origin_host.endswith(a)) for a in hosts):
            return f"clients send Origin {h.site.origin}; worker {pid} on {h.name} allows {hosts}"
    return None


@check("django", "django", on="app", needs=["gunicorn_workers_report"])
def django_allowed_hosts(h):
    """ALLOWED_HOSTS admits the public name, so the Origin clients send is accepted."""
    wildcard = [pid for pid, r in h.reports.items() if "*" in r.get("allowed_hosts", [])]
    if wildcard:
        return fail(f"workers {wildcard}: ALLOWED_HOSTS is ['*']", "writes back the real names (app_allowed_hosts)")
    if refused := origin_refused(h):
        return fail(
            refused,
            f"writes back ALLOWED_HOSTS from app_allowed_hosts (which must list {h.site.server_name}) and restarts",
        )
    return ok(f"Origin {h.site.origin} is allowed")


@check("django", "django", on="app", needs=["gunicorn_workers_report"])
def django_asgi_application(h):
    """ASGI_APPLICATION is "core.asgi.application" in every worker."""
    wrong = {pid: r["asgi_application"] for pid, r in h.reports.items() if r["asgi_application"] != ASGI_APPLICATION}
    if wrong:
        return fail(f"ASGI_APPLICATION {wrong}", f'writes back the code, whose settings say "{ASGI_APPLICATION}"')
    return ok(ASGI_APPLICATION)


@check("django", "django", on="app", needs=["gunicorn_workers_report"])
def django_channel_layer(h):
    """CHANNEL_LAYERS is a Redis layer in every worker (not the in-memory one)."""
    memory = [pid for pid, r in h.reports.items() if r["channel_layer"] == MEMORY_LAYER]
    if memory:
        return fail(
            f"workers {memory} use the in-memory channel layer: events never cross between workers or from manage.py",
            "writes back CHANNEL_LAYER (app_channel_layer) in the env file and restarts gunicorn",
        )
    return ok(", ".join(sorted({r["channel_layer"] for r in h.reports.values()})))


@check("django", "django", on="app", needs=["gunicorn_workers_report"])
def django_debug_off(h):
    """DEBUG is off in every worker."""
    debug = [pid for pid, r in h.reports.items() if r.get("debug")]
    if debug:
        return fail(
            f"workers {debug} run with DEBUG on: tracebacks and settings reach clients",
            "writes back DEBUG=0 (app_debug: false) and restarts gunicorn",
        )
    return ok("DEBUG is off")
