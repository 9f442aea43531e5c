"""Step nginx: the configuration every web host serves (nginx -t; the location that serves the WebSocket path,
its headers and timeout; where it proxies to), judged by what nginx does with it, not by how it is spelled:
`Connection $connection_upgrade` from a map or a literal `Connection "upgrade"`, proxy_pass to any upstream or
straight to `unix:`. The production note's names (the map, upstream django_asgi, /ws/) are the bundle's own."""

from doctor.nginxconf import proxy_target
from doctor.registry import check, fail, ok, skip, unheard

MIN_WS_READ_TIMEOUT = 600
MAP = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }"
# What a WebSocket needs from the location that proxies it, as nginx's documentation has it
# (https://nginx.org/en/docs/http/websocket.html): HTTP/1.1 upstream, and Upgrade and Connection passed on.
WS_NEEDS = "proxy_http_version 1.1, proxy_set_header Upgrade $http_upgrade and Connection upgrade"
# What the bundle's location also sets, for the app to see the client's name, address and scheme.
FORWARDED = {"host": "$host", "x-forwarded-for": "$proxy_add_x_forwarded_for", "x-forwarded-proto": "$scheme"}
TIMEOUT_SUFFIX = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _tls_server(h):
    return h.nginx_config.tls_server(h.site.server_name if h.site else None)


def _ws_location(h):
    """The location nginx picks for the WebSocket path on the TLS server, or None."""
    server = _tls_server(h)
    return server.location(h.site.ws_path) if server and h.site else None


def _connection(h, location):
    """How the location's Connection header reads for an upgrade request: (ok, what it is, a remark)."""
    value = location.headers().get("connection")
    if value is None:
        return False, "no Connection header", ""
    if value.lower() == "upgrade":
        return True, 'Connection "upgrade"', f" (a map is the better practice: `{MAP}` closes plain requests)"
    if value.startswith("$"):
        source, pairs = h.nginx_config.maps().get(value, (None, {}))
        if source != "$http_upgrade":
            return False, f"Connection {value}, which no map of $http_upgrade defines", ""
        if pairs.get("default") != "upgrade" or pairs.get("", "close") != "close":
            return False, f"Connection {value}, whose map reads {pairs}", ""
        return True, f"Connection {value} (map $http_upgrade: default upgrade, '' close)", ""
    return False, f'Connection "{value}"', ""


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
    if h.nginx_config.error:
        return fail(f"nginx -T could not be read: {h.nginx_config.error}", "writes back the bundle's configuration")
    return ok("nginx -t: syntax is ok")


@check("nginx", "nginx", on="web")
def nginx_ws_headers(h):
    """The location of the WebSocket path proxies it with HTTP/1.1, Upgrade and Connection.

    Where the bundle deployed the host, also with Host and X-Forwarded-* (the app sees the client)."""
    path = h.site.ws_path
    location = _ws_location(h)
    if location is None:
        server = _tls_server(h)
        where = f"server {' '.join(server.names)}" if server else "no server that serves TLS"
        return fail(f"no location of {where} serves {path}", f"writes back location {path} proxying to the app")
    headers, target = location.headers(), proxy_target(location, h.nginx_config)[0]
    missing = [] if target else ["proxy_pass"]
    if (location.inherited("proxy_http_version") or [""])[0] != "1.1":
        missing.append("proxy_http_version 1.1")
    if headers.get("upgrade") != "$http_upgrade":
        missing.append("proxy_set_header Upgrade $http_upgrade")
    fine, seen, _ = _connection(h, location)
    if not fine:
        missing.append(f"proxy_set_header Connection upgrade (it has `{seen}`)")
    forwarded = [f"proxy_set_header {name} {value}" for name, value in FORWARDED.items() if headers.get(name) != value]
    if missing or (forwarded and h.managed):
        return fail(
            f"location {location.path} ({path}) lacks: {'; '.join(missing + (forwarded if h.managed else []))}",
            "writes back location /ws/ (roles/nginx/templates/nurcrm.conf.j2) and reloads nginx after nginx -t",
        )
    unsent = f"; it does not send {', '.join(forwarded)} (the app sees nginx, not the client)" if forwarded else ""
    return ok(f"location {location.path} -> {target}: {WS_NEEDS}{unsent}")


@check("nginx", "nginx", on="web")
def nginx_connection_upgrade_map(h):
    """The WebSocket location passes on Connection: upgrade (a map of $http_upgrade, or a literal "upgrade").

    The map is the better practice: it sends close to a request that does not upgrade."""
    location = _ws_location(h)
    if location is None:
        return skip(f"no location serves {h.site.ws_path}: nginx_ws_headers says so")
    fine, seen, remark = _connection(h, location)
    if not fine:
        return fail(
            f"location {location.path}: {seen}",
            f"writes back `{MAP}` in the http context and `proxy_set_header Connection $connection_upgrade;` in "
            f"location {location.path}",
        )
    return ok(f"{seen}{remark}")


def _seconds(text):
    number = "".join(c for c in text if c.isdigit()) or "60"
    return int(number) * TIMEOUT_SUFFIX.get(text[len(number) :] or "s", 1)


@check("nginx", "nginx", on="web")
def nginx_ws_timeout(h):
    """The WebSocket location keeps an idle socket open for at least 10 minutes (proxy_read_timeout)."""
    location = _ws_location(h)
    setting = (location.inherited("proxy_read_timeout") if location else None) or ["60s"]
    seconds = _seconds(setting[0])
    if seconds < MIN_WS_READ_TIMEOUT:
        return fail(
            f"proxy_read_timeout of {h.site.ws_path} is {setting[0]}: silent sockets are cut",
            "writes back proxy_read_timeout and proxy_send_timeout 3600s in location /ws/",
        )
    return ok(f"proxy_read_timeout {setting[0]}")


def _reachable_binds(web, app):
    """The proxy targets through which `web`'s nginx can reach `app`'s gunicorn."""
    binds = set()
    for bind in (app.gunicorn.get("config") or {}).get("binds") or []:
        if bind.startswith("unix:"):
            if app.machine == web.machine:  # a unix socket serves only its own machine
                binds.add(bind)
            continue
        host, _, port = bind.rpartition(":")
        if host in ("0.0.0.0", "[::]", ""):
            binds |= {f"{address}:{port}" for address in app.probe.get("addresses") or []}
            binds |= {f"localhost:{port}"} if app.machine == web.machine else set()
        binds.add(bind)
    return binds


def _target(h):
    """What the WebSocket location proxies to, and the servers behind it."""
    return proxy_target(_ws_location(h), h.nginx_config)


@check("nginx", "nginx", on="web")
def nginx_upstream_reaches_every_app_host(h):
    """The WebSocket location's upstream (django_asgi, or any) reaches every app host's gunicorn, and nothing else.

    proxy_pass may name any upstream, a unix: socket or an address."""
    target, servers = _target(h)
    if target is None:
        return fail(f"nothing proxies {h.site.ws_path}", "writes back upstream django_asgi with every app host's bind")
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
            f"{h.site.ws_path} goes to {target} {servers}; no server reaches app host(s) {unreached}",
            "writes upstream django_asgi from nginx_upstream_servers, which must list every app host's bind "
            "(asgi_socket, asgi_tcp_binds)",
        )
    stale = [server for server in servers if server not in reached]
    silent = unheard(h.facts, "app")
    if stale and not silent:
        return fail(
            f"{target} lists {stale}, which no app host binds",
            "writes upstream django_asgi from nginx_upstream_servers: drop servers no app host binds",
        )
    # A server no answering app host binds may be the bind of one that did not answer.
    unknown = f"; not judged: {stale} (no app host that answers binds it)" if stale else ""
    return ok(f"{target} {servers} reaches {', '.join(a.name for a in apps)}{silent}{unknown}")


@check("nginx", "nginx", on="web", compares=True)
def web_hosts_agree_on_upstream(f):
    """Every web host proxies the WebSocket path to the same servers."""
    lists = {h.name: _target(h)[1] for h in f.answering("web")}
    if not lists:
        return skip("needs a web host to answer")
    if len({tuple(sorted(servers)) for servers in lists.values()}) > 1:
        return fail(
            f"web hosts list different upstream servers: {lists}",
            "writes the same upstream django_asgi on every web host",
        )
    return ok(f"{len(lists)} web host(s), one upstream list {next(iter(lists.values()))}{unheard(f, 'web')}")
