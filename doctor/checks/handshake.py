"""Step handshake: a WebSocket upgrade through the public URL, and the layer behind any answer but 101."""

import re

from doctor.checks.django import origin_refused
from doctor.checks.gunicorn import speaks_asgi
from doctor.checks.redis import redis_hosts
from doctor.registry import check, fail, ok, unanswered

HANDSHAKE_CAUSES = {
    400: ("nginx", "a bad upgrade request reached the app: location /ws/'s headers, or the URL"),
    403: ("django", "the app refused the handshake: Origin not in ALLOWED_HOSTS, or no route for the path"),
    404: ("nginx", "the request reached Django as plain HTTP: nginx drops Upgrade/Connection, or the URL is not /ws/"),
    426: ("nginx", "upgrade required: nginx talks HTTP/1.0 upstream (proxy_http_version 1.1 missing)"),
    500: ("gunicorn", "the app failed during the handshake: see journalctl -u gunicorn"),
    502: ("gunicorn", "nginx cannot reach gunicorn: unit down, socket missing, or no permission on the socket"),
    504: ("gunicorn", "gunicorn accepted but did not answer in time: workers stuck or overloaded"),
}


def _blame_handshake(f, status):
    """(layer, hosts, cause, explanation) behind a failed handshake, from what the app hosts show."""
    for h in f.of("app"):
        g = h.gunicorn
        unit = (g.get("unit") or {}).get("ActiveState")
        sock = g.get("socket") or {}
        worker_class = (g.get("config") or {}).get("worker_class")
        if unit != "active":
            return "gunicorn", [h.name], f"unit gunicorn on {h.name} is {unit}", "starts gunicorn"
        if not sock.get("exists"):
            return "gunicorn", [h.name], f"socket {sock.get('path')} on {h.name} does not exist", "restarts gunicorn"
        if not sock.get("nginx_user_connects"):
            return (
                "gunicorn",
                [h.name],
                f"nginx's user cannot connect to {sock.get('path')} on {h.name}: {sock.get('connect_error')}",
                "runs gunicorn with nginx's group and umask 007",
            )
        if not speaks_asgi(worker_class):
            return "gunicorn", [h.name], f"worker_class on {h.name} is {worker_class}", "writes back the worker class"
        ping = h.redis.get("ping")
        if status != 403 and ping not in (None, "PONG"):
            return "redis", redis_hosts(h), f"Redis does not answer {h.name} (PING -> {ping!r})", "starts Redis"
        if status == 403 and (refused := origin_refused(h)):
            return "django", [h.name], refused, "writes back ALLOWED_HOSTS (app_allowed_hosts) and restarts gunicorn"
    layer, cause = HANDSHAKE_CAUSES.get(status, ("nginx", "an unexpected answer"))
    return layer, [], cause, "restores the layer; the logs below say more"


@check("handshake", "nginx", needs=["tls_certificate"])
def handshake_upgrades(f):
    """A WebSocket upgrade through the public URL answers 101; any other answer is traced to its layer."""
    hs = f.handshake
    if hs.get("status") == 101:
        return ok(f"{f.site.url()} answered 101 Switching Protocols")
    seen = hs.get("status_line") if hs.get("status") else f"no answer: {hs.get('error')}"
    # A web or app host that does not answer explains any answer but 101 (nginx waits on an app host that is off).
    if silent := unanswered(f, f.names("web", "app"), seen):
        return silent
    if hs.get("status") is None:
        return fail(seen, "starts nginx and checks that it serves HTTPS")
    layer, hosts, cause, explanation = _blame_handshake(f, hs["status"])
    return fail(f"{hs.get('status_line')}: {cause}{_logged(f)}", explanation, layer=layer, hosts=hosts)


def _logged(f):
    """The last exception gunicorn logged during the walk (its one-line summary), as evidence: "" if none."""
    lines = [line for logged in f.walk_logs.values() for line in (logged.get("gunicorn") or [])]
    summaries = [line for line in lines if re.search(r": [\w.]+(Error|Exception): ", line)]
    return f"; gunicorn logged: {summaries[-1].split(': ', 1)[-1][-200:]}" if summaries else ""
