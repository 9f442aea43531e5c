"""Steps database and django: PostgreSQL on every db host, and the Django settings each app host's workers
run with: as each worker reports them where the bundle deployed the host, else as the app's own settings
module gives them to its interpreter, in its directory, with its environment, as its user (doctor/probe.py)."""

from doctor.checks.gunicorn import managed
from doctor.checks.redis import MEMORY_LAYER
from doctor.registry import check, fail, ok

ASGI_APPLICATION = "core.asgi.application"  # the production note's


def stranger(h):
    """Only where the bundle did not deploy the host: there the probe reads the settings through the app."""
    return not managed(h)


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
    for pid, report in h.settings.items():
        if "*" in (report.get("allowed_hosts") or []):
            continue
        hosts = report.get("allowed_hosts") or []
        if not any(origin_host == a or (a.startswith(".") and origin_host.endswith(a)) for a in hosts):
            return f"clients send Origin {h.site.origin}; worker {pid} on {h.name} allows {hosts}"
    return None


@check("django", "django", on="app", needs=["gunicorn_active"], only=stranger)
def django_settings_load(h):
    """The app's settings load with its interpreter, directory, environment and user, as gunicorn runs it.

    On a host the bundle did not deploy, the probe finds them from gunicorn's unit and process."""
    django = h.gunicorn.get("django") or {}
    if not django.get("settings"):
        return fail(
            f"{django.get('settings_module') or 'the settings'} did not load with {django.get('python')} in "
            f"{django.get('directory')} as {django.get('user')}: {django.get('error') or 'no answer'}",
            "makes `python manage.py check` work as the app's user; the error names the setting",
        )
    return ok(f"{django['settings_module']} with {django['python']} in {django['directory']} as {django['user']}")


@check("django", "django", on="app", needs=["gunicorn_workers_report", "django_settings_load"])
def django_allowed_hosts(h):
    """ALLOWED_HOSTS admits the public name, so the Origin clients send is accepted."""
    wildcard = [pid for pid, r in h.settings.items() if "*" in r.get("allowed_hosts", [])]
    if wildcard and h.managed:
        return fail(f"workers {wildcard}: ALLOWED_HOSTS is ['*']", "writes back the real names (app_allowed_hosts)")
    if refused := origin_refused(h):
        return fail(
            refused,
            f"writes back ALLOWED_HOSTS from app_allowed_hosts (which must list {h.site.server_name}) and restarts",
        )
    anyone = "; ALLOWED_HOSTS is ['*'], which admits any Host and Origin: list the real names" if wildcard else ""
    return ok(f"Origin {h.site.origin} is allowed{anyone}")


@check("django", "django", on="app", needs=["gunicorn_workers_report", "django_settings_load"])
def django_asgi_application(h):
    """ASGI_APPLICATION names the application gunicorn serves ("core.asgi.application" in the note)."""
    served = (h.gunicorn.get("config") or {}).get("app") or ""
    expected = served.replace(":", ".") if ":" in served else ASGI_APPLICATION
    wrong = {pid: r["asgi_application"] for pid, r in h.settings.items() if r["asgi_application"] != expected}
    if wrong:
        return fail(
            f"ASGI_APPLICATION {wrong}; gunicorn serves {served or expected}",
            f'writes back the code, whose settings say "{expected}"',
        )
    return ok(expected)


@check("django", "django", on="app", needs=["gunicorn_workers_report", "django_settings_load"])
def django_channel_layer(h):
    """CHANNEL_LAYERS is a Redis layer in every worker (not the in-memory one)."""
    memory = [pid for pid, r in h.settings.items() if r["channel_layer"] in (MEMORY_LAYER, None)]
    if memory:
        layers = sorted({str(h.settings[pid]["channel_layer"]) for pid in memory})
        return fail(
            f"{'workers ' if h.managed else ''}{memory} use the in-memory channel layer ({' and '.join(layers)}): "
            "the workers share no layer, so events never cross between workers or from manage.py",
            "writes back CHANNEL_LAYER (app_channel_layer) in the env file and restarts gunicorn",
        )
    return ok(", ".join(sorted({r["channel_layer"] for r in h.settings.values()})))


@check("django", "django", on="app", needs=["gunicorn_workers_report", "django_settings_load"])
def django_debug_off(h):
    """DEBUG is off in every worker."""
    debug = [pid for pid, r in h.settings.items() if r.get("debug")]
    if debug:
        return fail(
            f"workers {debug} run with DEBUG on: tracebacks and settings reach clients",
            "writes back DEBUG=0 (app_debug: false) and restarts gunicorn",
        )
    return ok("DEBUG is off")
