"""Step redis: each Redis host, its Sentinel, and each app host's view of Redis."""

from collections import Counter

from doctor.checks.gunicorn import managed
from doctor.probe import sentinel_addresses
from doctor.registry import check, fail, ok, skip, unanswered, unheard

MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


def target(view):
    """host:port/db (or socket/db) of an environment's REDIS_URL, as the probe reduced it."""
    redis = (view or {}).get("REDIS") or {}
    where = redis.get("socket") or f"{redis.get('host')}:{redis.get('port')}"
    return f"{where}/{redis.get('db')}"


def described_sentinels(view):
    """The Sentinels an environment names, as a worker reports them (nurcrm_ops.workerinfo.sentinel_of), or None."""
    if not (view or {}).get("REDIS_SENTINELS"):
        return None
    # describe() writes an IPv6 host without its brackets
    sentinels = [f"{host}:{port}" for host, port in sentinel_addresses(view["REDIS_SENTINELS"])]
    return {"sentinels": sentinels, "master_name": view.get("REDIS_MASTER_NAME")}


def through(described):
    """ " via Sentinels a,b master nurcrm" for described Sentinels (as described_sentinels gives), or "" without."""
    if not described:
        return ""
    return f" via Sentinels {','.join(described['sentinels'])} master {described['master_name']}"


def under_sentinel(f):
    """Only under Sentinel: a Redis host has the bundle's sentinel.conf, or an app host is given Sentinels."""
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


def redis_hosts(h):
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
    """The Redis server on each redis host answers."""
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
    """The Sentinel on each redis host is active and monitors the master."""
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
    """Each Redis host has the role the Sentinels give it: the master, or a replica of it with its link up.

    The master has every other Redis host as a replica in sync."""
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
        return ok(f"master, {len(online)} replica(s) online: {', '.join(online)}{unheard(h.facts, 'redis')}")
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
    """Every Sentinel and every app host names the same Redis master."""
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
    """Each app host's Redis (through its Sentinels, if any) answers PING with the app's own URL."""
    redis = h.redis
    if not redis.get("configured") and not h.managed:
        django = h.gunicorn.get("django") or {}
        if not django.get("settings"):
            return skip("the app's settings did not load: django_settings_load says why")
        return fail(
            f"CHANNEL_LAYERS names no Redis: its backend is {django['settings'].get('channel_layer')}, so the "
            "workers and manage.py share no layer",
            "a Redis channel layer (channels_redis) in CHANNEL_LAYERS, then restart gunicorn",
            layer="django",
        )
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
    servers = redis_hosts(h)
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
    """Redis refuses a client without the password."""
    redis = h.redis
    if not (redis.get("target") or {}).get("password"):
        return ok("no password configured (loopback only)")
    if redis.get("anonymous_ping") == "PONG":
        return fail(
            "Redis answers PING without the password",
            "writes back redis.conf, whose only user is the app's, with its password, and restarts redis-server",
            hosts=redis_hosts(h),
        )
    return ok("the app's password is required and accepted")


@check("redis", "redis", on="app", needs=["gunicorn_workers_report"], only=managed)
def workers_share_redis(h):
    """Every worker of a host uses the same Redis, database and prefix (no message lost between them)."""
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
    # A project other than app/ names no CHANNEL_LAYER_PREFIX (or REDIS_URL) in its env file: its workers
    # must then agree with each other (the first report).
    first = next(iter(h.reports.values()), {})
    expected_redis = {k: v for k, v in (env.get("REDIS") or first.get("redis") or {}).items() if k != "password"}
    prefix = env.get("CHANNEL_LAYER_PREFIX") or first.get("channel_layer_prefix")
    sentinels = described_sentinels(env)
    # Workers on the in-memory layer use no Redis at all: the django step names them.
    off = {
        pid: target({"REDIS": r["redis"]}) + f" prefix {r['channel_layer_prefix']}" + through(r.get("redis_sentinel"))
        for pid, r in h.reports.items()
        if r["channel_layer"] != MEMORY_LAYER
        and (
            {k: v for k, v in r["redis"].items() if k != "password"} != expected_redis
            or r["channel_layer_prefix"] != prefix
            or r.get("redis_sentinel") != sentinels
        )
    }
    layer = f"{target({'REDIS': expected_redis})} prefix {prefix}{through(sentinels)}"
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
    """Every app host uses the same Redis, Sentinels, master name and prefix."""

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
    return ok(f"{len(views)} app host(s) on {next(iter(views.values()))}{unheard(f, 'app')}")
