"""The production checklist as checks over facts, each registered once (doctor/registry.py).

A check reads only facts: one host's view (`h`, for checks on a group's hosts) or the whole walk's
(`f`, for the client's side and for comparisons across hosts), gathered read-only by
doctor/probe.py on the hosts and doctor/site.py from the client. It returns ok(evidence) or
fail(evidence, explanation); the registry adds the rerun of the layer that restores it.

The registry judges a host that did not answer; a check that reads other hosts judges those that
answered, and blames those that did not where they explain what it sees (`unanswered`).
"""

import re
from collections import Counter

from doctor.nginxconf import block, upstream_servers
from doctor.registry import check, fail, ok, skip, unanswered

EXPECTED_WORKER_CLASS = "uvicorn_worker.UvicornWorker"
MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
ASGI_APPLICATION = "core.asgi.application"
MIN_CERTIFICATE_DAYS = 14
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


def _unheard(f, *groups):
    """What evidence judged without the hosts of these groups that did not answer adds ("; app2 does not answer")."""
    silent = f.silent(*groups)
    return f"; {', '.join(silent)} {'does' if len(silent) == 1 else 'do'} not answer" if silent else ""


# --- 1. Name resolution and TLS, as a client sees them ------------------------------------------------
@check("tls", "tls")
def tls_certificate(f):
    site, tls = f.site, f.tls
    if tls.get("error"):
        if "resolve" in tls["error"]:
            return fail(tls["error"], f"make {site.server_name} resolve to the web hosts (DNS A/AAAA)", manual=True)
        # A web host that does not answer explains a refused connection, and a rejected self-signed certificate
        # (the doctor trusts the one it reads on the web host).
        if silent := unanswered(f, f.names("web"), tls["error"]):
            return silent
        return fail(
            tls["error"],
            "install a certificate chain valid for the name (nginx_ssl_certificate), then systemctl reload nginx",
            manual=True,
        )
    pinned = " (doctor_connect_address)" if tls.get("pinned") else ""
    return ok(f"{site.server_name} -> {', '.join(tls['addresses'])}{pinned}; {tls.get('protocol')}, chain verified")


@check("tls", "tls", needs=["tls_certificate"])
def tls_certificate_lifetime(f):
    tls = f.tls
    if tls.get("days_left", 0) < MIN_CERTIFICATE_DAYS:
        return fail(
            f"the certificate expires {tls['not_after']} ({tls['days_left']} days left)",
            "renew it now (certbot renew), then systemctl reload nginx",
            manual=True,
        )
    return ok(f"valid {tls['days_left']} more days")


# --- 2. nginx's configuration, on every web host -------------------------------------------------------
@check("nginx", "nginx", on="web")
def nginx_config_valid(h):
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
    unheard = _unheard(h.facts, "app")
    if stale and not unheard:
        return fail(
            f"upstream django_asgi lists {stale}, which no app host binds",
            "writes upstream django_asgi from nginx_upstream_servers: drop servers no app host binds",
        )
    # A server no answering app host binds may be the bind of one that did not answer.
    unknown = f"; not judged: {stale} (no app host that answers binds it)" if stale else ""
    return ok(f"upstream {servers} reaches {', '.join(a.name for a in apps)}{unheard}{unknown}")


@check("nginx", "nginx", on="web", compares=True)
def web_hosts_agree_on_upstream(f):
    lists = {h.name: upstream_servers(block(h.nginx_conf, r"upstream\s+django_asgi") or "") for h in f.answering("web")}
    if not lists:
        return skip("needs a web host to answer")
    if len({tuple(sorted(servers)) for servers in lists.values()}) > 1:
        return fail(
            f"web hosts list different upstream servers: {lists}",
            "writes the same upstream django_asgi on every web host",
        )
    return ok(f"{len(lists)} web host(s), one upstream list {next(iter(lists.values()))}{_unheard(f, 'web')}")


# --- 3. The handshake through the public URL ---------------------------------------------------------
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
        if worker_class != EXPECTED_WORKER_CLASS:
            return "gunicorn", [h.name], f"worker_class on {h.name} is {worker_class}", "writes back the worker class"
        ping = h.redis.get("ping")
        if status != 403 and ping not in (None, "PONG"):
            return "redis", _redis_hosts(h), f"Redis does not answer {h.name} (PING -> {ping!r})", "starts Redis"
        if status == 403 and (refused := _origin_refused(h)):
            return "django", [h.name], refused, "writes back ALLOWED_HOSTS (app_allowed_hosts) and restarts gunicorn"
    layer, cause = HANDSHAKE_CAUSES.get(status, ("nginx", "an unexpected answer"))
    return layer, [], cause, "restores the layer; the logs below say more"


@check("handshake", "nginx", needs=["tls_certificate"])
def handshake_upgrades(f):
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
    return fail(f"{hs.get('status_line')}: {cause}", explanation, layer=layer, hosts=hosts)


# --- 4. gunicorn, on every app host -----------------------------------------------------------------
@check("gunicorn", "gunicorn", on="app")
def gunicorn_active(h):
    unit = h.gunicorn.get("unit") or {}
    if unit.get("ActiveState") != "active" or unit.get("UnitFileState") != "enabled":
        return fail(
            f"unit gunicorn is {unit.get('ActiveState')}/{unit.get('SubState')}, {unit.get('UnitFileState')}",
            "enables and starts gunicorn; journalctl -u gunicorn -n 50 says why it stopped",
        )
    return ok(f"active, enabled, main pid {h.gunicorn['main_pid']}")


@check("gunicorn", "gunicorn", on="app")
def gunicorn_worker_class(h):
    configured = (h.gunicorn.get("config") or {}).get("worker_class")
    running = sorted({r.get("worker_class", "") for r in h.reports.values()})
    wrong = configured != EXPECTED_WORKER_CLASS or any(
        not (cls.startswith("uvicorn_worker.") and cls.endswith("UvicornWorker")) for cls in running
    )
    if wrong:
        return fail(
            f"configured {configured}, running {running or 'unknown'}: only uvicorn workers speak ASGI/WebSocket",
            f"writes back worker_class = {EXPECTED_WORKER_CLASS!r} in {h.gunicorn.get('config_path')} and restarts",
        )
    return ok(f"{configured} in every worker")


@check("gunicorn", "gunicorn", on="app", needs=["gunicorn_active"])
def gunicorn_worker_count(h):
    configured = (h.gunicorn.get("config") or {}).get("workers") or ""
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
    sock = h.gunicorn.get("socket")
    if not sock:
        binds = (h.gunicorn.get("config") or {}).get("binds")
        return fail(f"gunicorn binds no unix socket: {binds}", "writes back bind = ['unix:/home/nur/asgi.sock', ...]")
    if not (sock.get("exists") and sock.get("is_socket")):
        return fail(f"{sock['path']} is missing or not a socket", "restarts gunicorn, which makes it")
    if not sock.get("nginx_user_connects"):
        return fail(
            f"nginx's user cannot connect to {sock['path']} ({sock.get('mode')}, group {sock.get('group')}): "
            f"{sock.get('connect_error')}",
            "runs gunicorn with nginx's group and umask 007; the socket's folder must be traversable (0711)",
        )
    return ok(f"{sock['path']} {sock['mode']} group {sock['group']}, nginx connects")


@check("gunicorn", "gunicorn", on="app", needs=["gunicorn_active"])
def gunicorn_workers_report(h):
    """Every worker writes the settings it runs with to /run/gunicorn (gunicorn.conf.py's post_worker_init):
    the redis and django steps read them."""
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
    binds = set(re.findall(r"^\s*proxy_bind\s+([^\s;]+)", web.nginx_conf, re.M))
    return binds or set(web.probe.get("addresses") or [])


@check("gunicorn", "gunicorn", on="app", needs=["gunicorn_workers_report"])
def gunicorn_trusts_only_web_hosts(h):
    """X-Forwarded-* (the client's address and scheme) are believed only from the web hosts' addresses; loopback
    only where nginx runs on the app host itself. "*" would let anyone who reaches the port claim any address."""
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
    before, after = h.gunicorn.get("workers"), h.gunicorn.get("workers_later")
    if before != after:
        return fail(
            f"workers changed within a second: {before} -> {after}",
            "writes back max_requests = 0 and restarts; if workers still crash, journalctl -u gunicorn says why",
        )
    return ok(f"same pids over the sample: {after}")


# --- 5. Redis: each Redis host, its Sentinel, and each app host's view of it ------------------------
def target(view):
    """host:port/db (or socket/db) of an environment's REDIS_URL, as the probe reduced it."""
    redis = (view or {}).get("REDIS") or {}
    where = redis.get("socket") or f"{redis.get('host')}:{redis.get('port')}"
    return f"{where}/{redis.get('db')}"


def described_sentinels(view):
    """The Sentinels an environment names, as a worker reports them (core.redisconn.describe), or None."""
    if not (view or {}).get("REDIS_SENTINELS"):
        return None
    # describe() writes an IPv6 host without its brackets
    sentinels = [s.strip().replace("[", "").replace("]", "") for s in view["REDIS_SENTINELS"].split(",") if s.strip()]
    return {"sentinels": sentinels, "master_name": view.get("REDIS_MASTER_NAME")}


def through(described):
    """ " via Sentinels a,b master nurcrm" for described Sentinels (as described_sentinels gives), or "" without."""
    if not described:
        return ""
    return f" via Sentinels {','.join(described['sentinels'])} master {described['master_name']}"


def under_sentinel(f):
    """Redis runs under Sentinel: a Redis host has the bundle's sentinel.conf, or an app host is given Sentinels."""
    return any(h.sentinel for h in f.of("redis")) or any(
        described_sentinels(h.gunicorn.get("env")) for h in f.of("app")
    )


def _serving(f, address):
    """The Redis hosts that listen on `address` ("host:port")."""
    host, _, port = (address or "").rpartition(":")
    return [
        r.name
        for r in f.of("redis")
        if str(r.redis_server.get("port")) == port and host in r.redis_server.get("binds", [])
    ]


def _named(f, address):
    """An address with the Redis host that serves it: "redis1 (10.0.0.1:6379)"."""
    return f"{', '.join(_serving(f, address)) or 'no Redis host of the inventory'} ({address})"


def _redis_hosts(h):
    """The Redis hosts an app host's Redis is on (under Sentinel, the master they name); all of them when the
    address names none."""
    redis = ((h.gunicorn.get("env") or {}).get("REDIS")) or {}
    address = h.redis.get("master") or f"{redis.get('host')}:{redis.get('port')}"
    return _serving(h.facts, address) or h.facts.names("redis")


def _where(h):
    """Where an app host's Redis is, for the evidence: REDIS_URL's host:port/db, or the master the Sentinels name."""
    env, redis = h.gunicorn.get("env") or {}, h.redis
    if redis.get("master"):
        return f"{redis['master']}/{(env.get('REDIS') or {}).get('db')} (master {redis.get('master_name')} by Sentinel)"
    return target(env)


def _monitor(f):
    """The master's name and the quorum, as the Redis hosts' sentinel.conf give them."""
    sentinel = next((h.sentinel for h in f.of("redis") if h.sentinel), {})
    return sentinel.get("master_name"), sentinel.get("quorum")


def _sentinels_master(f):
    """The master the most Redis hosts' Sentinels name, or None when no Sentinel answers."""
    named = Counter(h.sentinel["master"] for h in f.of("redis") if h.sentinel.get("master"))
    return named.most_common(1)[0][0] if named else None


@check("redis", "redis", on="redis")
def redis_server_active(h):
    server = h.redis_server
    reply = server.get("ping") or ""
    if server.get("service") != "active" or not (reply == "PONG" or reply.startswith("NOAUTH")):
        return fail(
            f"redis-server is {server.get('service')}; PING {server.get('address')} -> {reply!r}",
            "starts redis-server with the bundle's redis.conf",
        )
    return ok(f"redis-server active, answers on {server.get('address')}")


# The quorum first: when it is lost, one rerun starts every Sentinel that is down.
@check("redis", "redis", on="redis", compares=True, when=under_sentinel)
def sentinel_quorum(f):
    """Enough Sentinels answer to agree that the master is lost, and each of them sees enough (CKQUORUM)."""
    hosts = f.of("redis")
    answering = [h for h in hosts if h.sentinel.get("master")]
    down = [h.name for h in hosts if not h.sentinel.get("master")]
    quorum = max(h.sentinel.get("quorum") or 1 for h in hosts)
    counted = f"{len(answering)} of {len(hosts)} Sentinels answer, the quorum is {quorum}"
    silent = f"; no Sentinel answers on {', '.join(down)}" if down else ""
    start = f"starts redis-sentinel on {', '.join(down)}"
    if len(answering) < quorum:
        return fail(
            f"quorum lost: {counted}{silent}",
            f"{start}: until {quorum} Sentinels agree that the master is lost, no replica is promoted",
            hosts=down,
        )
    refused = {}
    for h in answering:
        if not h.sentinel.get("ckquorum", "").startswith("OK"):
            refused.setdefault(h.sentinel.get("ckquorum"), []).append(h.name)
    if refused:
        evidence = f"quorum lost: {counted}{silent}; " + "; ".join(
            f"CKQUORUM on {', '.join(names)}: {said}" for said, names in refused.items()
        )
        if down:
            return fail(evidence, f"{start}: a failover needs a majority of the Sentinels", hosts=down)
        return fail(
            evidence,
            "the Sentinels answer but do not count one another: each must reach the others' address and sign in "
            "with their sentinel-pass; sentinel.conf is written once, so set a changed one on each with "
            "`SENTINEL CONFIG SET sentinel-pass <vault_redis_sentinel_password>`",
            manual=True,
        )
    return ok(f"{counted}{silent}: {answering[0].sentinel['ckquorum']}")


@check("redis", "redis", on="redis", when=under_sentinel)
def sentinel_active(h):
    sentinel = h.sentinel
    if not sentinel:
        return fail(
            "no sentinel.conf of the bundle (no `sentinel monitor`) in /etc/redis",
            "writes sentinel.conf (redis_sentinel: true) and starts redis-sentinel",
        )
    if sentinel.get("service") != "active" or not sentinel.get("master"):
        return fail(
            f"redis-sentinel is {sentinel.get('service')}; SENTINEL get-master-addr-by-name "
            f"{sentinel.get('master_name')} on {sentinel.get('address')} -> {sentinel.get('answer')!r}",
            "starts redis-sentinel with the bundle's sentinel.conf",
        )
    replicas = sentinel.get("replicas") or {}
    return ok(
        f"redis-sentinel active, answers on {sentinel['address']}: master {sentinel['master_name']} is "
        f"{sentinel['master']}, {len(replicas)} replica(s) known"
    )


@check("redis", "redis", on="redis", needs=["redis_server_active"], when=under_sentinel)
def redis_replication(h):
    """This host's role is the one the Sentinels give it: the master with every other Redis host replicating it,
    or a replica of that master with its link up."""
    info, master, me = h.redis_server.get("replication"), _sentinels_master(h.facts), h.redis_server.get("address")
    if info is None:
        return skip("no sentinel.conf of the bundle on this host: sentinel_active says so")
    if not info.get("role"):
        return fail(
            f"INFO replication as the operations user: {info.get('error')}",
            "writes back users.acl and /etc/redis/nurcrm-ops.secret with the operations user's password "
            "(redis_ops_user, vault_redis_ops_password)",
        )
    if master is None:
        return skip("no Sentinel names the master: sentinel_quorum says why")
    host, _, port = master.rpartition(":")
    replicaof = f"`REPLICAOF {host} {port}` on {h.name} as the operations user"
    if info["role"] == "master":
        if me != master:
            return fail(
                f"{me} is a master, but the Sentinels name {_named(h.facts, master)}",
                "the Sentinels turn a master they knew into a replica when it returns; this one they do not: "
                + replicaof,
                manual=True,
            )
        others = [r for r in h.facts.answering("redis") if r.name != h.name]
        replicas = info.get("replicas") or {}
        missing = [r.name for r in others if replicas.get(r.redis_server.get("address")) != "online"]
        if missing:
            return fail(
                f"master {me} has {len(others) - len(missing)} of {len(others)} replicas online; "
                f"not replicating: {', '.join(missing)}",
                f"starts redis-server on {', '.join(missing)} and writes back the operations user's password it "
                f"replicates with (masterauth); it then syncs with {me}",
                hosts=missing,
            )
        online = sorted(address for address, state in replicas.items() if state == "online")
        return ok(f"master, {len(online)} replica(s) online: {', '.join(online)}{_unheard(h.facts, 'redis')}")
    follows = f"{info.get('master_host')}:{info.get('master_port')}"
    if follows != master:
        return fail(
            f"replica of {follows}, but the Sentinels name {_named(h.facts, master)}",
            f"the Sentinels reconfigure the replicas they know after a failover; this one they missed: {replicaof}",
            manual=True,
        )
    if info.get("master_link_status") != "up":
        evidence = f"replica of {_named(h.facts, master)}, link {info.get('master_link_status')}"
        if not _serving(h.facts, master) and (silent := unanswered(h.facts, h.facts.names("redis"), evidence)):
            return silent  # the master the Sentinels still name is a host that does not answer
        return fail(
            evidence,
            "writes back masteruser and masterauth (the operations user's, vault_redis_ops_password) and starts "
            "redis-server; the master must answer (redis_server_active)",
        )
    return ok(f"replica of {master}, link up")


@check("redis", "redis", on="redis", compares=True, when=under_sentinel)
def sentinels_agree_on_master(f):
    named = {h.name: h.sentinel["master"] for h in f.of("redis") if h.sentinel.get("master")}
    if not named:
        return skip("no Sentinel answers: sentinel_quorum says why")
    master = _sentinels_master(f)
    if len(set(named.values())) > 1:
        odd = [name for name, said in named.items() if said != master]
        (name, quorum), (host, _, port) = _monitor(f), master.rpartition(":")
        return fail(
            f"Sentinels name different masters: {named}",
            f"a Sentinel that names another master missed a failover: it learns the new one from the others once "
            f"it reaches them and signs in with their sentinel-pass; else on {', '.join(odd)}: SENTINEL REMOVE "
            f"{name}, SENTINEL MONITOR {name} {host} {port} {quorum}, then SENTINEL SET {name} auth-user and "
            "auth-pass (the operations user's)",
            manual=True,
        )
    resolved = {h.name: h.redis["master"] for h in f.of("app") if h.redis.get("master")}
    off = {name: said for name, said in resolved.items() if said != master}
    if off:
        return fail(
            f"the Sentinels of the Redis hosts name {_named(f, master)}; app host(s) resolve {off}",
            "writes back REDIS_SENTINELS (app_redis_sentinels: every Redis host's Sentinel) and restarts gunicorn",
            layer="django",
            hosts=list(off),
        )
    apps = f"app hosts {', '.join(resolved)} resolve it" if resolved else "no app host resolved it (redis_reachable)"
    return ok(f"{len(named)} Sentinel(s) name {_named(f, master)}; {apps}")


def _no_master(h):
    """Why no Sentinel an app host asks names its master, and what restores it."""
    redis = h.redis
    answers = {answer["address"]: answer["answer"] for answer in redis.get("sentinels") or []}
    evidence = f"no Sentinel of REDIS_SENTINELS names master {redis.get('master_name')!r}: {answers}"
    if "(nil)" in answers.values():
        return fail(
            f"{evidence}: they know no master of that name",
            "writes back REDIS_MASTER_NAME (app_redis_master_name, the redis role's redis_master_name) and restarts "
            "gunicorn",
            layer="django",
        )
    if any(word in answer for answer in answers.values() for word in ("NOAUTH", "WRONGPASS")):
        return fail(
            evidence,
            "writes back REDIS_SENTINEL_PASSWORD (app_redis_sentinel_password: the Sentinels' requirepass)",
            layer="django",
        )
    ours = [r.name for r in h.facts.of("redis") if r.sentinel.get("address") in answers]
    if not ours and (silent := unanswered(h.facts, h.facts.names("redis"), evidence)):
        return silent
    if not ours:
        return fail(
            f"{evidence}; no Redis host of the inventory runs them",
            "writes back REDIS_SENTINELS (app_redis_sentinels: every Redis host's Sentinel) and restarts gunicorn",
            layer="django",
        )
    return fail(evidence, "starts redis-sentinel on the Redis hosts", hosts=ours)


@check("redis", "redis", on="app")
def redis_reachable(h):
    redis = h.redis
    if not redis.get("configured"):
        return fail("REDIS_URL is not set", "writes back REDIS_URL (app_redis_url)", layer="django")
    if "redis-cli" in h.probe.get("missing", []):
        return fail(
            f"redis-cli is not installed on {h.name}: the doctor asks Redis (and the Sentinels) with it",
            "install redis-tools on the app hosts (apt-get install redis-tools)",
            manual=True,
        )
    if redis.get("sentinels") is not None and not redis.get("master"):
        return _no_master(h)
    ping = redis.get("ping", "")
    if ping == "PONG":
        return ok(f"PING {_where(h)} -> PONG")
    servers = _redis_hosts(h)
    states = {name: h.facts.on(name).redis_server.get("service") for name in servers}
    evidence = f"PING {_where(h)} -> {ping!r}; redis-server: {states}"
    if any(word in ping for word in ("NOAUTH", "WRONGPASS", "AUTH")):
        explanation = "writes back the app user's password (vault_redis_password, which REDIS_URL carries too)"
        return fail(evidence, explanation, hosts=servers)
    if silent := unanswered(h.facts, servers, evidence):
        return silent
    return fail(evidence, "starts redis-server and writes back its bind address and port", hosts=servers)


@check("redis", "redis", on="app", needs=["redis_reachable"])
def redis_authenticated(h):
    redis = h.redis
    if not (redis.get("target") or {}).get("password"):
        return ok("no password configured (loopback only)")
    if redis.get("anonymous_ping") == "PONG":
        return fail(
            "Redis answers PING without the password",
            "writes back redis.conf, whose only user is the app's, with its password, and restarts redis-server",
            hosts=_redis_hosts(h),
        )
    return ok("the app's password is required and accepted")


@check("redis", "redis", on="app", needs=["gunicorn_workers_report"])
def workers_share_redis(h):
    g = h.gunicorn
    env = g.get("env") or {}
    keys = ("REDIS_URL_FINGERPRINT", "CHANNEL_LAYER", "CHANNEL_LAYER_PREFIX", "REDIS_SENTINELS", "REDIS_MASTER_NAME")
    expected = tuple(env.get(k) for k in keys)
    drift = [pid for pid, view in (g.get("worker_env") or {}).items() if tuple(view.get(k) for k in keys) != expected]
    if drift:
        return fail(
            f"workers {drift} run with other REDIS_URL/CHANNEL_LAYER settings than {g.get('env_file')}",
            "restarts gunicorn (settings changed without a restart)",
            by="gunicorn",
        )
    expected_redis = {k: v for k, v in (env.get("REDIS") or {}).items() if k != "password"}
    sentinels = described_sentinels(env)
    # Workers on the in-memory layer use no Redis at all: the django step names them.
    off = {
        pid: target({"REDIS": r["redis"]}) + f" prefix {r['channel_layer_prefix']}" + through(r.get("redis_sentinel"))
        for pid, r in h.reports.items()
        if r["channel_layer"] != MEMORY_LAYER
        and (
            {k: v for k, v in r["redis"].items() if k != "password"} != expected_redis
            or r["channel_layer_prefix"] != env.get("CHANNEL_LAYER_PREFIX")
            or r.get("redis_sentinel") != sentinels
        )
    }
    layer = f"{target(env)} prefix {env.get('CHANNEL_LAYER_PREFIX')}{through(sentinels)}"
    if off:
        return fail(
            f"expected {layer}; but {off}",
            "writes back gunicorn.conf.py and restarts; every worker must use one Redis, database and prefix: "
            "if it persists, find what sets REDIS_URL per worker (hooks, raw_env)",
            by="gunicorn",
        )
    return ok(f"all {len(h.reports)} workers on {layer}")


@check("redis", "django", on="app", compares=True)
def app_hosts_agree_on_redis(f):
    def layer(h):
        env = h.gunicorn.get("env") or {}
        where = f"{target(env)}{through(described_sentinels(env))}"
        return f"{where} prefix {env.get('CHANNEL_LAYER_PREFIX')} layer {env.get('CHANNEL_LAYER')}"

    views = {h.name: layer(h) for h in f.answering("app")}
    if not views:
        return skip("needs an app host to answer")
    if len(set(views.values())) > 1:
        return fail(
            f"app hosts use different channel layers: {views}: events sent on one never reach the others' sockets",
            "writes every app host's env file from the same inventory variables (nurcrm_redis_host, app_redis_url, "
            "app_redis_sentinels in one order, app_redis_master_name, app_channel_layer_prefix)",
        )
    return ok(f"{len(views)} app host(s) on {next(iter(views.values()))}{_unheard(f, 'app')}")


# --- The database, on every db host --------------------------------------------------------------------
@check("database", "postgresql", on="db")
def postgresql_ready(h):
    db = h.probe.get("postgresql") or {}
    if db.get("service") != "active" or db.get("ready_rc") != 0:
        return fail(
            f"postgresql is {db.get('service')}; pg_isready: {db.get('ready') or 'no answer'}",
            "starts PostgreSQL with the bundle's configuration",
        )
    return ok(f"postgresql active; pg_isready: {db.get('ready')}")


# --- 6. Django settings as each app host's workers see them --------------------------------------------
def _origin_refused(h):
    """Why a worker of this host refuses the Origin clients send, or None."""
    origin_host = h.site.server_name
    for pid, report in h.reports.items():
        hosts = report.get("allowed_hosts") or []
        if not any(origin_host == a or (a.startswith(".") and origin_host.endswith(a)) for a in hosts):
            return f"clients send Origin {h.site.origin}; worker {pid} on {h.name} allows {hosts}"
    return None


@check("django", "django", on="app", needs=["gunicorn_workers_report"])
def django_allowed_hosts(h):
    wildcard = [pid for pid, r in h.reports.items() if "*" in r.get("allowed_hosts", [])]
    if wildcard:
        return fail(f"workers {wildcard}: ALLOWED_HOSTS is ['*']", "writes back the real names (app_allowed_hosts)")
    if refused := _origin_refused(h):
        return fail(
            refused,
            f"writes back ALLOWED_HOSTS from app_allowed_hosts (which must list {h.site.server_name}) and restarts",
        )
    return ok(f"Origin {h.site.origin} is allowed")


@check("django", "django", on="app", needs=["gunicorn_workers_report"])
def django_asgi_application(h):
    wrong = {pid: r["asgi_application"] for pid, r in h.reports.items() if r["asgi_application"] != ASGI_APPLICATION}
    if wrong:
        return fail(f"ASGI_APPLICATION {wrong}", f'writes back the code, whose settings say "{ASGI_APPLICATION}"')
    return ok(ASGI_APPLICATION)


@check("django", "django", on="app", needs=["gunicorn_workers_report"])
def django_channel_layer(h):
    memory = [pid for pid, r in h.reports.items() if r["channel_layer"] == MEMORY_LAYER]
    if memory:
        return fail(
            f"workers {memory} use the in-memory channel layer: events never cross between workers or from manage.py",
            "writes back CHANNEL_LAYER (app_channel_layer) in the env file and restarts gunicorn",
        )
    return ok(", ".join(sorted({r["channel_layer"] for r in h.reports.values()})))


@check("django", "django", on="app", needs=["gunicorn_workers_report"])
def django_debug_off(h):
    debug = [pid for pid, r in h.reports.items() if r.get("debug")]
    if debug:
        return fail(
            f"workers {debug} run with DEBUG on: tracebacks and settings reach clients",
            "writes back DEBUG=0 (app_debug: false) and restarts gunicorn",
        )
    return ok("DEBUG is off")


# --- 7. The consumer, through the public URL with a token minted on an app host ---------------------
@check("consumer", "consumer", needs=["handshake_upgrades"])
def consumer_accepts_token(f):
    s, minted = f.session, f.on(f.session_host).probe
    if f.on(f.session_host).unreachable:  # no app host answered (or it stopped during the walk)
        return skip(f"needs {f.session_host} to answer")
    if blind := f.on(f.session_host).blind:
        return skip(f"no token minted on {f.session_host}: {blind}")
    if not minted.get("token"):
        return fail(
            f"no token could be minted on {f.session_host}: {minted.get('token_error')}",
            "`nurcrm-manage issue_token --user <user>` must work on the app host: create the doctor's user "
            "(doctor_user) in a company, or pass --user",
            layer="auth",
            manual=True,
        )
    if (s.get("hello") or {}).get("type") == "connection_established":
        return ok(
            f"connection_established with {len(s['hello'].get('tables', []))} tables; "
            f"ping -> pong in {s.get('pong_ms')} ms"
        )
    if s.get("close_code") == 4401:
        return fail(
            f"closed 4401 ({s.get('close_reason')}) for a token minted on {f.session_host} just now",
            "writes back JWT_ACCESS_TTL and JWT_SIGNING_KEY, one for manage.py and gunicorn, and restarts; "
            "a wrong host clock (timedatectl) no playbook fixes",
            layer="auth",
            hosts=[f.session_host],
        )
    if s.get("close_code"):
        return fail(
            f"closed {s['close_code']} ({s.get('close_reason')})",
            "writes back the code; 4403 means the doctor's user needs a company (no playbook makes one)",
        )
    answered = f"the handshake with a token answered HTTP {s['http_status']}" if s.get("http_status") else ""
    return fail(
        f"no connection_established: {answered}{s.get('error') or s.get('hello') or ''}",
        "writes back the code and restarts gunicorn; the logs below say more",
    )


# --- 8. The socket's group in Redis ------------------------------------------------------------------------
@check("groups", "groups", needs=["consumer_accepts_token"])
def group_exists(f):
    send = f.session.get("send") or {}
    if send.get("rc") != 0:
        return fail(
            f"send_test_notification failed on {f.session_host}: {send.get('err', '').strip().splitlines()[-1:]}",
            "writes back the app's settings; Redis must be reachable from manage.py",
            layer="delivery",
        )
    company = f.session["hello"]["company_id"]
    group = f"cafe_tables_{company}"
    line = next((ln.strip() for ln in send["out"].splitlines() if ln.strip().startswith(group + ":")), "")
    count = re.match(rf"{group}: (\d+|\?)", line)
    how = re.search(r"\[(.*)\]", line)
    if count and count.group(1) not in ("?", "0"):
        return ok(f"{line.split('[')[0].strip()} [{how.group(1) if how else ''}]")
    return fail(
        f"a socket of company {company} is open, yet {group} has no member ({how.group(1) if how else line}); "
        f"group keys of this company in Redis: {send.get('group_keys') or []}",
        "writes back the code: sender and consumer build the group name in apps/cafe/groups.py alone",
    )


# --- 9. Delivery ---------------------------------------------------------------------------------------
@check("delivery", "delivery", needs=["group_exists"])
def delivery(f):
    s = f.session
    if s.get("event"):
        return ok(
            f"table_status_changed arrived {s['event_ms']} ms after send_test_notification started "
            f"(includes its start-up); socket ping round trip {s.get('pong_ms')} ms"
        )
    return fail(
        "send_test_notification ran but the socket received nothing in 10 s",
        "writes back the app; every worker and manage.py must share one Redis layer and group names (steps redis, "
        "django, groups)",
    )


# --- 10. Logs, on every web and app host ---------------------------------------------------------------
@check("logs", "logs", on=("web", "app"))
def recent_errors(h):
    logged = h.walk_logs.get(h.name) or {}
    lines = (logged.get("gunicorn") or []) + (logged.get("nginx") or [])
    if lines:
        return fail(
            f"{len(lines)} error line(s) logged during this walk; last: {lines[-1]}",
            f"they name the layer: journalctl -u gunicorn, /var/log/nginx/error.log and access.log's 5xx on {h.name}",
            manual=True,
        )
    return ok("no errors logged by gunicorn or nginx during this walk")
