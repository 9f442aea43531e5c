"""The production checklist as checks over facts: one function per check, each returning a Result.

The doctor (doctor/walk.py) runs them in the checklist's order; the molecule scenario's tests
(molecule/default/tests/) assert the same functions pass, so each check is written once.
Every check reads only `Facts`, gathered read-only by doctor/probe.py on the hosts and by
doctor/site.py from the client's side.
"""

import re
from dataclasses import dataclass, field

from doctor.nginxconf import block

EXPECTED_WORKER_CLASS = "uvicorn_worker.UvicornWorker"
MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
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


@dataclass
class Result:
    step: str
    check: str
    status: str  # pass | fail | skip
    layer: str
    evidence: str = ""
    fix: str = ""

    @property
    def ok(self):
        return self.status == "pass"


@dataclass
class Facts:
    web: dict = field(default_factory=dict)
    app: dict = field(default_factory=dict)
    redis_host: dict = field(default_factory=dict)
    site: object = None
    tls: dict = field(default_factory=dict)
    handshake: dict = field(default_factory=dict)
    session: dict = field(default_factory=dict)
    send: dict = field(default_factory=dict)
    nginx_conf: str = ""  # the web host's configuration without comments
    walk_logs: dict = field(default_factory=dict)  # host -> error lines logged during the walk

    @property
    def gunicorn(self):
        return self.app.get("gunicorn") or {}

    @property
    def reports(self):
        return self.gunicorn.get("reports") or {}


def passed(step, check, layer, evidence=""):
    return Result(step, check, "pass", layer, evidence)


def failed(step, check, layer, evidence, fix):
    return Result(step, check, "fail", layer, evidence, fix)


def skipped(step, check, layer, why):
    return Result(step, check, "skip", layer, why)


# --- 1. Name resolution and TLS ---------------------------------------------------------------
def tls_certificate(f):
    site, tls = f.site, f.tls
    if tls.get("error"):
        fix = (
            f"make {site.server_name} resolve to the web host (DNS A/AAAA record)"
            if "resolve" in tls["error"]
            else "install a valid certificate chain for the name (certbot renew; nginx_ssl_certificate)"
        )
        return failed("tls", "tls_certificate", "tls", tls["error"], fix)
    if tls.get("days_left", 0) < 14:
        return failed(
            "tls",
            "tls_certificate",
            "tls",
            f"the certificate expires {tls['not_after']} ({tls['days_left']} days left)",
            "renew it now (certbot renew, then systemctl reload nginx)",
        )
    return passed(
        "tls",
        "tls_certificate",
        "tls",
        f"{site.server_name} -> {', '.join(tls['addresses'])}; {tls.get('protocol')}, "
        f"valid {tls['days_left']} more days",
    )


# --- 2. nginx configuration ----------------------------------------------------------------------
def nginx_config_valid(f):
    web = f.web.get("nginx") or {}
    if web.get("test_rc") != 0:
        error = web.get("test_err", "").strip().splitlines()
        evidence = error[0] if error else "nginx -t failed"
        fix = "fix the configuration nginx -t names; until then nginx keeps serving the previous one"
        if "connection_upgrade" in evidence:
            fix = "define `map $http_upgrade $connection_upgrade { default upgrade; '' close; }` in the http context"
        return failed("nginx", "nginx_config_valid", "nginx", f"nginx -t: {evidence}", fix)
    return passed("nginx", "nginx_config_valid", "nginx", "nginx -t: syntax is ok")


def nginx_connection_upgrade_map(f):
    body = block(f.nginx_conf, r"map\s+\$http_upgrade\s+\$connection_upgrade")
    fix = "add `map $http_upgrade $connection_upgrade { default upgrade; '' close; }` to the http context"
    if body is None:
        return failed("nginx", "nginx_connection_upgrade_map", "nginx", "no map defines $connection_upgrade", fix)
    if not (re.search(r"\bdefault\s+upgrade\s*;", body) and re.search(r"''\s+close\s*;", body)):
        evidence = f"the map reads: {' '.join(body.split())}"
        return failed("nginx", "nginx_connection_upgrade_map", "nginx", evidence, fix)
    return passed("nginx", "nginx_connection_upgrade_map", "nginx", "map $http_upgrade $connection_upgrade")


def _ws_location(f):
    return block(f.nginx_conf, r"location\s+/ws/")


def nginx_ws_headers(f):
    body = _ws_location(f)
    if body is None:
        return failed(
            "nginx", "nginx_ws_headers", "nginx", "no `location /ws/`", "add location /ws/ proxying to django_asgi"
        )
    missing = [name for name, pattern in WS_HEADERS.items() if not re.search(pattern, body)]
    if missing:
        connection = re.search(r"proxy_set_header\s+Connection\s+([^;]+);", body)
        seen = f" (it has `Connection {connection.group(1).strip()}`)" if connection else ""
        return failed(
            "nginx",
            "nginx_ws_headers",
            "nginx",
            f"location /ws/ lacks: {'; '.join(missing)}{seen}",
            "set them in location /ws/ (roles/nginx/templates/nurcrm.conf.j2), then nginx -t && systemctl reload nginx",
        )
    return passed("nginx", "nginx_ws_headers", "nginx", "Upgrade, Connection $connection_upgrade, Host, X-Forwarded-*")


def nginx_ws_timeout(f):
    body = _ws_location(f) or ""
    match = re.search(r"proxy_read_timeout\s+(\d+)s?\s*;", body)
    seconds = int(match.group(1)) if match else 60
    if seconds < 600:
        return failed(
            "nginx",
            "nginx_ws_timeout",
            "nginx",
            f"proxy_read_timeout of /ws/ is {seconds}s: silent sockets are cut",
            "set proxy_read_timeout (and proxy_send_timeout) to 3600s in location /ws/",
        )
    return passed("nginx", "nginx_ws_timeout", "nginx", f"proxy_read_timeout {seconds}s")


def nginx_upstream_is_gunicorn_socket(f):
    body = block(f.nginx_conf, r"upstream\s+django_asgi")
    if body is None:
        return failed(
            "nginx",
            "nginx_upstream_is_gunicorn_socket",
            "nginx",
            "no `upstream django_asgi`",
            "define upstream django_asgi { server unix:/home/nur/asgi.sock; }",
        )
    servers = list(dict.fromkeys(re.findall(r"server\s+([^\s;]+)", body)))  # a backup repeats the server
    binds = (f.gunicorn.get("config") or {}).get("binds") or []
    if not f.gunicorn:
        return passed("nginx", "nginx_upstream_is_gunicorn_socket", "nginx", f"upstream servers {servers}")
    if not set(servers) & set(binds):
        return failed(
            "nginx",
            "nginx_upstream_is_gunicorn_socket",
            "nginx",
            f"nginx connects to {servers}, gunicorn binds {binds}",
            "make upstream django_asgi and gunicorn's bind name the same socket (asgi_socket, nginx_upstream_servers)",
        )
    return passed("nginx", "nginx_upstream_is_gunicorn_socket", "nginx", f"upstream {servers} = gunicorn bind")


# --- 3. The handshake through the public URL ---------------------------------------------------------
HANDSHAKE_CAUSES = {
    400: ("nginx", "a bad upgrade request reached the app: check location /ws/ headers and the URL"),
    403: ("django", "the app refused the handshake: Origin not in ALLOWED_HOSTS, or no route for the path"),
    404: (
        "nginx",
        "the request reached Django as plain HTTP: nginx drops Upgrade/Connection, or the URL is not /ws/cafe/tables/",
    ),
    426: ("nginx", "upgrade required: nginx talks HTTP/1.0 upstream (proxy_http_version 1.1 missing)"),
    500: ("gunicorn", "the app failed during the handshake: see journalctl -u gunicorn"),
    502: ("gunicorn", "nginx cannot reach gunicorn: unit down, socket missing, or no permission on the socket"),
    504: ("gunicorn", "gunicorn accepted but did not answer in time: workers stuck or overloaded"),
}


def _blame_handshake(f, status):
    """The layer and cause behind a failed handshake, from what the hosts show."""
    g = f.gunicorn
    unit = (g.get("unit") or {}).get("ActiveState")
    if g and unit != "active":
        return "gunicorn", f"unit gunicorn is {unit}", "systemctl start gunicorn; journalctl -u gunicorn -n 50"
    sock = g.get("socket") or {}
    if g and not sock.get("exists"):
        return "gunicorn", f"socket {sock.get('path')} does not exist", "systemctl restart gunicorn"
    if g and sock.get("exists") and not sock.get("nginx_user_connects"):
        return (
            "gunicorn",
            f"nginx's user cannot connect to {sock.get('path')}: {sock.get('connect_error')}",
            "run gunicorn with nginx's group and umask 007 (roles/asgi)",
        )
    worker_class = (g.get("config") or {}).get("worker_class")
    if g and worker_class != EXPECTED_WORKER_CLASS:
        return (
            "gunicorn",
            f"worker_class is {worker_class}",
            f"set worker_class = {EXPECTED_WORKER_CLASS!r} and restart gunicorn",
        )
    ping = (f.app.get("redis") or {}).get("ping")
    if status != 403 and ping not in (None, "PONG"):
        return "redis", f"Redis does not answer the app (PING -> {ping!r})", "systemctl start redis-server"
    if status == 403:
        origin_host = f.site.server_name
        for pid, report in f.reports.items():
            hosts = report.get("allowed_hosts") or []
            if "*" not in hosts and not any(origin_host == h or origin_host.endswith(h) for h in hosts if h):
                return (
                    "django",
                    f"Origin {f.site.origin} is not in worker {pid}'s ALLOWED_HOSTS {hosts}",
                    f"add {origin_host} to ALLOWED_HOSTS (app_allowed_hosts) and restart gunicorn",
                )
    layer, cause = HANDSHAKE_CAUSES.get(status, ("nginx", "unexpected answer"))
    return layer, cause, "see the logs below; then rerun the doctor"


def handshake_upgrades(f):
    hs = f.handshake
    if hs.get("status") == 101:
        return passed("handshake", "handshake_upgrades", "nginx", f"{f.site.url()} answered 101 Switching Protocols")
    if hs.get("status") is None:
        return failed(
            "handshake", "handshake_upgrades", "nginx", f"no answer: {hs.get('error')}", "is nginx running? (tls step)"
        )
    layer, cause, fix = _blame_handshake(f, hs["status"])
    return failed("handshake", "handshake_upgrades", layer, f"{hs.get('status_line')}: {cause}", fix)


# --- 4. gunicorn -------------------------------------------------------------------------------------
def _need_app(f, step, check):
    if not f.gunicorn:
        return skipped(step, check, "gunicorn", f"no facts from the app host: {f.app.get('probe_error', '')}")
    return None


def gunicorn_active(f):
    if skip := _need_app(f, "gunicorn", "gunicorn_active"):
        return skip
    unit = f.gunicorn["unit"]
    if unit.get("ActiveState") != "active" or unit.get("UnitFileState") != "enabled":
        return failed(
            "gunicorn",
            "gunicorn_active",
            "gunicorn",
            f"unit gunicorn is {unit.get('ActiveState')}/{unit.get('SubState')}, {unit.get('UnitFileState')}",
            "systemctl enable --now gunicorn; journalctl -u gunicorn -n 50 says why it stopped",
        )
    return passed("gunicorn", "gunicorn_active", "gunicorn", f"active, enabled, main pid {f.gunicorn['main_pid']}")


def gunicorn_worker_class(f):
    if skip := _need_app(f, "gunicorn", "gunicorn_worker_class"):
        return skip
    configured = f.gunicorn["config"]["worker_class"]
    running = sorted({r.get("worker_class", "") for r in f.reports.values()})
    wrong = configured != EXPECTED_WORKER_CLASS or any(
        not (cls.startswith("uvicorn_worker.") and cls.endswith("UvicornWorker")) for cls in running
    )
    if wrong:
        return failed(
            "gunicorn",
            "gunicorn_worker_class",
            "gunicorn",
            f"configured {configured}, running {running or 'unknown'}: only uvicorn workers speak ASGI/WebSocket",
            f"worker_class = {EXPECTED_WORKER_CLASS!r} in {f.gunicorn['config_path']}; systemctl restart gunicorn",
        )
    return passed("gunicorn", "gunicorn_worker_class", "gunicorn", f"{configured} in every worker")


def gunicorn_worker_count(f, expected=None):
    if skip := _need_app(f, "gunicorn", "gunicorn_worker_count"):
        return skip
    configured = f.gunicorn["config"].get("workers")
    expected = expected or (int(configured) if configured and configured.isdigit() else 3)
    workers = f.gunicorn["workers"]
    if len(workers) != expected:
        return failed(
            "gunicorn",
            "gunicorn_worker_count",
            "gunicorn",
            f"{len(workers)} workers running, {expected} configured",
            "journalctl -u gunicorn shows why workers die; systemctl restart gunicorn",
        )
    return passed("gunicorn", "gunicorn_worker_count", "gunicorn", f"{len(workers)} workers: {workers}")


def gunicorn_socket(f):
    if skip := _need_app(f, "gunicorn", "gunicorn_socket"):
        return skip
    sock = f.gunicorn.get("socket")
    if not sock:
        return failed(
            "gunicorn",
            "gunicorn_socket",
            "gunicorn",
            f"gunicorn binds no unix socket: {f.gunicorn['config'].get('binds')}",
            "bind = ['unix:/home/nur/asgi.sock']",
        )
    if not (sock.get("exists") and sock.get("is_socket")):
        return failed(
            "gunicorn",
            "gunicorn_socket",
            "gunicorn",
            f"{sock['path']} is missing or not a socket",
            "systemctl restart gunicorn",
        )
    if not sock.get("nginx_user_connects"):
        return failed(
            "gunicorn",
            "gunicorn_socket",
            "gunicorn",
            f"nginx's user cannot connect to {sock['path']} ({sock.get('mode')}, group {sock.get('group')}): "
            f"{sock.get('connect_error')}",
            "run gunicorn with nginx's group and umask 007 (roles/asgi); the home must be traversable (0711)",
        )
    return passed(
        "gunicorn",
        "gunicorn_socket",
        "gunicorn",
        f"{sock['path']} {sock['mode']} group {sock['group']}, nginx connects",
    )


def gunicorn_workers_stable(f):
    if skip := _need_app(f, "gunicorn", "gunicorn_workers_stable"):
        return skip
    before, after = f.gunicorn["workers"], f.gunicorn["workers_later"]
    if before != after:
        return failed(
            "gunicorn",
            "gunicorn_workers_stable",
            "gunicorn",
            f"workers changed within a second: {before} -> {after}",
            "workers crash or are recycled: max_requests must be 0; read journalctl -u gunicorn",
        )
    return passed("gunicorn", "gunicorn_workers_stable", "gunicorn", f"same pids over the sample: {after}")


# --- 5. Redis ------------------------------------------------------------------------------------------
def _target(view):
    redis = (view or {}).get("REDIS") or {}
    where = redis.get("socket") or f"{redis.get('host')}:{redis.get('port')}"
    return f"{where}/{redis.get('db')}"


def redis_reachable(f):
    if skip := _need_app(f, "redis", "redis_reachable"):
        return skip
    redis = f.app.get("redis") or {}
    if not redis.get("configured"):
        return failed("redis", "redis_reachable", "redis", "REDIS_URL is not set", "set REDIS_URL (app_redis_url)")
    ping = redis.get("ping", "")
    if ping == "PONG":
        return passed("redis", "redis_reachable", "redis", f"PING {_target(f.gunicorn['env'])} -> PONG")
    fix = "systemctl start redis-server (on the redis host); check its bind address and port"
    if "NOAUTH" in ping or "WRONGPASS" in ping or "AUTH" in ping:
        fix = "REDIS_URL's password must match Redis's requirepass (vault_redis_password)"
    service = f.redis_host.get("redis_service")
    state = f"; redis-server is {service}" if service else ""
    return failed("redis", "redis_reachable", "redis", f"PING {_target(f.gunicorn['env'])} -> {ping!r}{state}", fix)


def redis_authenticated(f):
    if skip := _need_app(f, "redis", "redis_authenticated"):
        return skip
    redis = f.app.get("redis") or {}
    if not (redis.get("target") or {}).get("password"):
        return passed("redis", "redis_authenticated", "redis", "no password configured (loopback only)")
    anonymous = redis.get("anonymous_ping") or ""
    if anonymous == "PONG":
        return failed(
            "redis",
            "redis_authenticated",
            "redis",
            "Redis answers PING without the password",
            "set requirepass (redis_password) and restart redis-server",
        )
    return passed("redis", "redis_authenticated", "redis", "the app's password is required and accepted")


def workers_share_redis(f):
    if skip := _need_app(f, "redis", "workers_share_redis"):
        return skip
    env = f.gunicorn["env"]
    keys = ("REDIS_URL_FINGERPRINT", "CHANNEL_LAYER", "CHANNEL_LAYER_PREFIX")
    expected = tuple(env.get(k) for k in keys)
    drift = [pid for pid, view in f.gunicorn["worker_env"].items() if tuple(view.get(k) for k in keys) != expected]
    if drift:
        return failed(
            "redis",
            "workers_share_redis",
            "redis",
            f"workers {drift} run with other REDIS_URL/CHANNEL_LAYER settings than {f.gunicorn['env_file']}",
            "systemctl restart gunicorn (settings changed without a restart)",
        )
    target = {k: env["REDIS"][k] for k in env["REDIS"] if k != "password"} if env.get("REDIS") else None
    missing = [pid for pid in map(str, f.gunicorn["workers"]) if pid not in f.reports]
    if missing:
        return failed(
            "redis",
            "workers_share_redis",
            "redis",
            f"workers {missing} have not reported their settings in /run/gunicorn",
            "restart gunicorn with the deployed gunicorn.conf.py (roles/asgi)",
        )
    # Workers on the in-memory layer use no Redis at all: the django step names them.
    off = {
        pid: _target({"REDIS": r["redis"]}) + f" prefix {r['channel_layer_prefix']}"
        for pid, r in f.reports.items()
        if r["channel_layer"] != MEMORY_LAYER
        and (
            {k: v for k, v in r["redis"].items() if k != "password"} != target
            or r["channel_layer_prefix"] != env.get("CHANNEL_LAYER_PREFIX")
        )
    }
    if off:
        return failed(
            "redis",
            "workers_share_redis",
            "redis",
            f"expected {_target(env)} prefix {env.get('CHANNEL_LAYER_PREFIX')}; but {off}",
            "every worker must use one Redis, database and prefix: find what sets REDIS_URL per worker "
            "(gunicorn.conf.py hooks, raw_env), fix it, systemctl restart gunicorn",
        )
    return passed(
        "redis",
        "workers_share_redis",
        "redis",
        f"all {len(f.reports)} workers on {_target(env)} prefix {env.get('CHANNEL_LAYER_PREFIX')}",
    )


# --- 6. Django settings as the workers see them --------------------------------------------------------
def _each_report(f, step, check):
    if skip := _need_app(f, step, check):
        return skip, None
    if not f.reports:
        return failed(step, check, "django", "no worker reported its settings", "systemctl restart gunicorn"), None
    return None, f.reports


def django_allowed_hosts(f):
    skip, reports = _each_report(f, "django", "django_allowed_hosts")
    if skip:
        return skip
    origin_host = f.site.server_name
    for pid, report in reports.items():
        hosts = report["allowed_hosts"]
        if "*" in hosts:
            return failed(
                "django",
                "django_allowed_hosts",
                "django",
                f"worker {pid}: ALLOWED_HOSTS is {hosts}",
                "list the real host names (app_allowed_hosts)",
            )
        if not any(origin_host == h or (h.startswith(".") and origin_host.endswith(h)) for h in hosts):
            return failed(
                "django",
                "django_allowed_hosts",
                "django",
                f"clients send Origin {f.site.origin}; worker {pid} allows {hosts}",
                f"add {origin_host} to ALLOWED_HOSTS (app_allowed_hosts) and restart gunicorn",
            )
    return passed("django", "django_allowed_hosts", "django", f"Origin {f.site.origin} is allowed")


def django_asgi_application(f):
    skip, reports = _each_report(f, "django", "django_asgi_application")
    if skip:
        return skip
    wrong = {
        pid: r["asgi_application"] for pid, r in reports.items() if r["asgi_application"] != "core.asgi.application"
    }
    if wrong:
        return failed(
            "django",
            "django_asgi_application",
            "django",
            f"ASGI_APPLICATION {wrong}",
            'ASGI_APPLICATION = "core.asgi.application"',
        )
    return passed("django", "django_asgi_application", "django", "core.asgi.application")


def django_channel_layer(f):
    skip, reports = _each_report(f, "django", "django_channel_layer")
    if skip:
        return skip
    memory = [pid for pid, r in reports.items() if r["channel_layer"] == MEMORY_LAYER]
    if memory:
        return failed(
            "django",
            "django_channel_layer",
            "django",
            f"workers {memory} use the in-memory channel layer: events never cross between workers or from manage.py",
            "CHANNEL_LAYER=redis in the env file (app_channel_layer), then systemctl restart gunicorn",
        )
    backends = sorted({r["channel_layer"] for r in reports.values()})
    return passed("django", "django_channel_layer", "django", ", ".join(backends))


def django_debug_off(f):
    skip, reports = _each_report(f, "django", "django_debug_off")
    if skip:
        return skip
    debug = [pid for pid, r in reports.items() if r.get("debug")]
    if debug:
        return failed(
            "django",
            "django_debug_off",
            "django",
            f"workers {debug} run with DEBUG on: tracebacks and settings reach clients",
            "DEBUG=0 in the env file (app_debug: false), then systemctl restart gunicorn",
        )
    return passed("django", "django_debug_off", "django", "DEBUG is off")


# --- 7. Consumer ---------------------------------------------------------------------------------------
def consumer_accepts_token(f):
    s = f.session
    if not f.app.get("token"):
        return failed(
            "consumer",
            "consumer_accepts_token",
            "auth",
            f"no token could be minted on the host: {f.app.get('token_error') or f.app.get('probe_error')}",
            "nurcrm-manage issue_token --user <user> must work on the app host (doctor --user)",
        )
    if (s.get("hello") or {}).get("type") == "connection_established":
        return passed(
            "consumer",
            "consumer_accepts_token",
            "consumer",
            f"connection_established with {len(s['hello'].get('tables', []))} tables; "
            f"ping -> pong in {s.get('pong_ms')} ms",
        )
    if s.get("close_code") == 4401:
        return failed(
            "consumer",
            "consumer_accepts_token",
            "auth",
            f"closed 4401 ({s.get('close_reason')}) for a token minted on the host just now",
            "tokens are born invalid: check JWT_ACCESS_TTL (app_jwt_access_ttl), JWT_SIGNING_KEY equal for "
            "manage.py and gunicorn, and the host clock (timedatectl)",
        )
    if s.get("close_code"):
        return failed(
            "consumer",
            "consumer_accepts_token",
            "consumer",
            f"closed {s['close_code']} ({s.get('close_reason')})",
            "4403: the user needs a company and the branch must be the company's",
        )
    return failed(
        "consumer",
        "consumer_accepts_token",
        "consumer",
        "no connection_established: "
        + (f"the handshake with a token answered HTTP {s['http_status']}" if s.get("http_status") else "")
        + str(s.get("error") or s.get("hello") or ""),
        "see the logs below",
    )


# --- 8. Channel layer groups -----------------------------------------------------------------------------
def group_exists(f):
    send = f.session.get("send") or {}
    if not send:
        return skipped("groups", "group_exists", "groups", "no socket was connected (consumer step)")
    if send.get("rc") != 0:
        return failed(
            "groups",
            "group_exists",
            "groups",
            f"send_test_notification failed: {send.get('err', '').strip().splitlines()[-1:]}",
            "read the error; Redis must be reachable from manage.py",
        )
    company = f.session["hello"]["company_id"]
    group = f"cafe_tables_{company}"
    line = next((ln.strip() for ln in send["out"].splitlines() if ln.strip().startswith(group + ":")), "")
    count = re.match(rf"{group}: (\d+|\?)", line)
    how = re.search(r"\[(.*)\]", line)
    if count and count.group(1) not in ("?", "0"):
        return passed(
            "groups", "group_exists", "groups", f"{line.split('[')[0].strip()} [{how.group(1) if how else ''}]"
        )
    others = send.get("group_keys") or []
    return failed(
        "groups",
        "group_exists",
        "groups",
        f"a socket of company {company} is open, yet {group} has no member ({how.group(1) if how else line}); "
        f"group keys of this company in Redis: {others}",
        "sender and consumer must build the same group name (apps/cafe/groups.py); restart gunicorn after fixing",
    )


# --- 9. Delivery -------------------------------------------------------------------------------------------
def delivery(f):
    s = f.session
    if not s.get("send"):
        return skipped("delivery", "delivery", "delivery", "no socket was connected (consumer step)")
    if s.get("event"):
        return passed(
            "delivery",
            "delivery",
            "delivery",
            f"table_status_changed arrived {s['event_ms']} ms after send_test_notification started "
            f"(includes its start-up); socket ping round trip {s.get('pong_ms')} ms",
        )
    return failed(
        "delivery",
        "delivery",
        "delivery",
        "send_test_notification ran but the socket received nothing in 10 s",
        "all workers and manage.py must share one Redis layer and group names (steps 5, 6, 8)",
    )


# --- 10. Logs ------------------------------------------------------------------------------------------------
def recent_errors(f):
    lines = (f.gunicorn.get("errors") or []) + ((f.web.get("nginx") or {}).get("errors") or [])
    if lines:
        return failed(
            "logs",
            "recent_errors",
            "logs",
            f"{len(lines)} recent error line(s); last: {lines[-1]}",
            "read journalctl -u gunicorn and /var/log/nginx/error.log",
        )
    return passed("logs", "recent_errors", "logs", "no errors in journalctl -u gunicorn or nginx's error.log")


STEPS = [
    ("1 tls", [tls_certificate]),
    (
        "2 nginx",
        [
            nginx_config_valid,
            nginx_connection_upgrade_map,
            nginx_ws_headers,
            nginx_ws_timeout,
            nginx_upstream_is_gunicorn_socket,
        ],
    ),
    ("3 handshake", [handshake_upgrades]),
    (
        "4 gunicorn",
        [gunicorn_active, gunicorn_worker_class, gunicorn_worker_count, gunicorn_socket, gunicorn_workers_stable],
    ),
    ("5 redis", [redis_reachable, redis_authenticated, workers_share_redis]),
    ("6 django", [django_allowed_hosts, django_asgi_application, django_channel_layer, django_debug_off]),
    ("7 consumer", [consumer_accepts_token]),
    ("8 channel layer", [group_exists]),
    ("9 delivery", [delivery]),
    ("10 logs", [recent_errors]),
]
ALL_CHECKS = [check for _, checks in STEPS for check in checks]
