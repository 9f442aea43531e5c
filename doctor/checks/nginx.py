"""Step nginx: the configuration every web host serves (nginx -t, the map, location /ws/, the upstream)."""

import re

from doctor.nginxconf import block, upstream_servers
from doctor.registry import check, fail, ok, skip, unheard

MIN_WS_READ_TIMEOUT = 600
WS_HEADERS = {
    "proxy_pass http://django_asgi": r"proxy_pass\s+http://django_asgi\s*;",
    "proxy_http_version 1.1": r"proxy_http_version\s+1\.1\s*;",
    "proxy_set_header Upgrade $http_upgrade": r"proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;",
    "proxy_set_header Connection $connection_upgrade": r"proxy_set_header\s+Connection\s+\$connection_upgrade\s*;",
    "proxy_set_header Host $host": r"proxy_set_header\s+Host\s+\$host\s*;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for": (
        r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for\s*;"
    ),
    "proxy_set_header X-Forwarded-Proto $scheme": r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme\s*;",
}
MAP = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }"


@check("nginx", "nginx", on="web")
def nginx_config_valid(h):
    """nginx -t accepts the configuration nginx would load."""
    nginx = h.nginx
    if nginx.get("test_rc") != 0:
        error = nginx.get("test_err", "").strip().splitlines()
        evidence = error[0] if error else "nginx -t failed"
        if "connection_upgrade" in evidence:
            return fail(f"nginx -t: {evidence}", f"writes back `{MAP}`; until then nginx serves its previous one")
        return fail(
            f"nginx -t: {evidence}", "writes back the bundle's configuration; until then nginx serves its previous one"
        )
    return ok("nginx -t: syntax is ok")


@check("nginx", "nginx", on="web")
def nginx_connection_upgrade_map(h):
    """A map defines $connection_upgrade: upgrade when the client asks, else close."""
    body = block(h.nginx_conf, r"map\s+\$http_upgrade\s+\$connection_upgrade")
    if body is None:
        return fail("no map defines $connection_upgrade", f"writes back `{MAP}` in the http context")
    if not (re.search(r"\bdefault\s+upgrade\s*;", body) and re.search(r"''\s+close\s*;", body)):
        return fail(f"the map reads: {' '.join(body.split())}", f"writes back `{MAP}`")
    return ok("map $http_upgrade $connection_upgrade")


def _ws_location(h):
    return block(h.nginx_conf, r"location\s+/ws/")


@check("nginx", "nginx", on="web")
def nginx_ws_headers(h):
    """location /ws/ proxies to upstream django_asgi with HTTP/1.1, Upgrade, Connection and X-Forwarded-*."""
    body = _ws_location(h)
    if body is None:
        return fail("no `location /ws/`", "writes back location /ws/ proxying to upstream django_asgi")
    missing = [name for name, pattern in WS_HEADERS.items() if not re.search(pattern, body)]
    if missing:
        connection = re.search(r"proxy_set_header\s+Connection\s+([^;]+);", body)
        seen = f" (it has `Connection {connection.group(1).strip()}`)" if connection else ""
        return fail(
            f"location /ws/ lacks: {'; '.join(missing)}{seen}",
            "writes back location /ws/ (roles/nginx/templates/nurcrm.conf.j2) and reloads nginx after nginx -t",
        )
    return ok("Upgrade, Connection $connection_upgrade, Host, X-Forwarded-*")


@check("nginx", "nginx", on="web")
def nginx_ws_timeout(h):
    """location /ws/ keeps an idle socket open for at least 10 minutes (proxy_read_timeout)."""
    match = re.search(r"proxy_read_timeout\s+(\d+)s?\s*;", _ws_location(h) or "")
    seconds = int(match.group(1)) if match else 60
    if seconds < MIN_WS_READ_TIMEOUT:
        return fail(
            f"proxy_read_timeout of /ws/ is {seconds}s: silent sockets are cut",
            "writes back proxy_read_timeout and proxy_send_timeout 3600s in location /ws/",
        )
    return ok(f"proxy_read_timeout {seconds}s")


def _reachable_binds(web, app):
    """The upstream addresses through which `web`'s nginx can reach `app`'s gunicorn."""
    binds = set()
    for bind in (app.gunicorn.get("config") or {}).get("binds") or []:
        if bind.startswith("unix:"):
            if app.machine == web.machine:  # a unix socket serves only its own machine
                binds.add(bind)
            continue
        host, _, port = bind.rpartition(":")
        if host in ("0.0.0.0", "[::]", ""):
            binds |= {f"{address}:{port}" for address in app.probe.get("addresses") or []}
        binds.add(bind)
    return binds


@check("nginx", "nginx", on="web")
def nginx_upstream_reaches_every_app_host(h):
    """upstream django_asgi reaches every app host's gunicorn bind, and nothing else."""
    body = block(h.nginx_conf, r"upstream\s+django_asgi")
    if body is None:
        return fail("no `upstream django_asgi`", "writes back upstream django_asgi with every app host's bind")
    servers = upstream_servers(body)
    apps = h.facts.answering("app")
    if not apps:
        return skip("needs an app host to answer")
    unreached = {a.name: sorted((a.gunicorn.get("config") or {}).get("binds") or []) for a in apps}
    reached = set()
    for app in apps:
        found = _reachable_binds(h, app) & set(servers)
        if found:
            del unreached[app.name]
            reached |= found
    if unreached:
        return fail(
            f"upstream django_asgi is {servers}; no server reaches app host(s) {unreached}",
            "writes upstream django_asgi from nginx_upstream_servers, which must list every app host's bind "
            "(asgi_socket, asgi_tcp_binds)",
        )
    stale = [server for server in servers if server not in reached]
    silent = unheard(h.facts, "app")
    if stale and not silent:
        return fail(
            f"upstream django_asgi lists {stale}, which no app host binds",
            "writes upstream django_asgi from nginx_upstream_servers: drop servers no app host binds",
        )
    # A server no answering app host binds may be the bind of one that did not answer.
    unknown = f"; not judged: {stale} (no app host that answers binds it)" if stale else ""
    return ok(f"upstream {servers} reaches {', '.join(a.name for a in apps)}{silent}{unknown}")


@check("nginx", "nginx", on="web", compares=True)
def web_hosts_agree_on_upstream(f):
    """Every web host has the same upstream list."""
    lists = {h.name: upstream_servers(block(h.nginx_conf, r"upstream\s+django_asgi") or "") for h in f.answering("web")}
    if not lists:
        return skip("needs a web host to answer")
    if len({tuple(sorted(servers)) for servers in lists.values()}) > 1:
        return fail(
            f"web hosts list different upstream servers: {lists}",
            "writes the same upstream django_asgi on every web host",
        )
    return ok(f"{len(lists)} web host(s), one upstream list {next(iter(lists.values()))}{unheard(f, 'web')}")
