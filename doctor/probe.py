"""The doctor's eyes on a host: one read-only pass that returns facts as JSON.

This file runs ON the host (Debian's python3, standard library only, as root), sent by
doctor/hosts.py. It changes nothing: it reads files and /proc, asks systemctl, nginx -T,
journalctl and redis-cli, and mints a token (which writes nothing). It never returns a
secret: Redis URLs are reduced to host, port, database and whether a password is set.

    python3 probe.py <base64 JSON args>     args: {"mode": "facts" | "send" | "logs" | "redis", ...}

"facts" starts by taking the logs' position (the journal's cursor, the end of nginx's error.log);
"logs", given that position, returns only the error lines written after it.
"""

import base64
import glob
import grp
import hashlib
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN_RE = re.compile(r"((?:token|access|refresh)=)[^&\s\"']+|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_.-]+", re.I)
LAYER_KEYS = ("ALLOWED_HOSTS", "CHANNEL_LAYER", "CHANNEL_LAYER_PREFIX", "DEBUG")


def redact(text):
    return TOKEN_RE.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


def run(argv, timeout=10, env=None, input_text=None):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, input=input_text)
        return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}
    except FileNotFoundError as exc:
        return {"rc": 127, "out": "", "err": str(exc)}
    except subprocess.TimeoutExpired:
        return {"rc": 124, "out": "", "err": f"timed out after {timeout}s"}


UNREADABLE = []  # what this run could not read for want of permission (the probe not run as root)


def read(path, limit=200_000):
    try:
        with open(path, errors="replace") as f:
            return f.read(limit)
    except PermissionError:
        UNREADABLE.append(path)
        return None
    except OSError:
        return None


def redis_target(url):
    """The same reduction as app/core/workerinfo.py's: this file runs on hosts with the standard library alone."""
    if not url:
        return None
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        return {"socket": parts.path, "db": int((query.get("db") or ["0"])[0]), "password": bool(parts.password)}
    db = parts.path.lstrip("/") or (query.get("db") or ["0"])[0]
    return {"host": parts.hostname, "port": parts.port or 6379, "db": int(db), "password": bool(parts.password)}


def fingerprint(value):
    return hashlib.sha256((value or "").encode()).hexdigest()[:12]


def layer_view(env):
    """The channel-layer settings of an environment, safe to show: no password, a fingerprint of the URL."""
    view = {key: env.get(key) for key in LAYER_KEYS}
    view["REDIS"] = redis_target(env.get("REDIS_URL"))
    view["REDIS_URL_FINGERPRINT"] = fingerprint(env.get("REDIS_URL"))
    return view


def parse_env_file(text):
    env = {}
    for line in (text or "").splitlines():
        match = re.match(r"^\s*(?:export\s+)?(\w+)=(.*)$", line)
        if match and not line.lstrip().startswith("#"):
            value = match.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[match.group(1)] = value
    return env


def unit_show(unit):
    props = "ActiveState,SubState,UnitFileState,MainPID,ExecStart,EnvironmentFiles,User,Group,NRestarts"
    out = run(["systemctl", "show", unit, "-p", props])["out"]
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def children(pid):
    found = []
    for stat_path in glob.glob("/proc/[0-9]*/stat"):
        text = read(stat_path) or ""
        fields = text.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[1] == str(pid):
            found.append(int(stat_path.split("/")[2]))
    return sorted(found)


def environ(pid):
    raw = read(f"/proc/{pid}/environ") or ""
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def recent_lines(lines, pattern, parse_time, since):
    hits = []
    for line in lines:
        if not re.search(pattern, line):
            continue
        stamp = parse_time(line)
        if stamp is None or stamp >= since:
            hits.append(redact(line.strip())[:400])
    return hits[-20:]


def nginx_time(line):
    match = re.match(r"(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)", line)
    return datetime.strptime(match.group(1), "%Y/%m/%d %H:%M:%S") if match else None


def nginx_facts(args):
    test = run(["nginx", "-T"])
    if "Permission denied" in test["err"]:
        UNREADABLE.append("nginx -T")
    dump = test["out"]
    if test["rc"] != 0:  # nginx -T dumps nothing when the test fails: read what it would load
        paths = ["/etc/nginx/nginx.conf", *sorted(glob.glob("/etc/nginx/conf.d/*.conf"))]
        paths += sorted(glob.glob("/etc/nginx/sites-enabled/*"))
        dump = "\n".join(f"# configuration file {p}:\n{read(p) or ''}" for p in paths)
    user = re.search(r"^\s*user\s+([^\s;]+)", dump, re.M)
    certificates = set(re.findall(r"^\s*ssl_certificate\s+([^;]+);", dump, re.M))
    return {
        "test_rc": test["rc"],
        "test_err": redact(test["err"])[-2000:],
        "dump": dump,
        "active": run(["systemctl", "is-active", "nginx"])["out"].strip(),
        "user": user.group(1) if user else "www-data",
        # Certificates are public; the doctor trusts a self-signed one only where the inventory says so.
        "certificates": {path.strip(): read(path.strip()) for path in certificates},
        "errors": nginx_errors(args),
    }


NGINX_ERROR_LOG = "/var/log/nginx/error.log"
NGINX_ERROR = r"\[(error|crit|alert|emerg)\]"
# Error records and the one-line summary of each exception (not the traceback's frames).
GUNICORN_ERROR = (
    r"\[(ERROR|CRITICAL)\]| (ERROR|CRITICAL) |: [\w.]+(Error|Exception): |Worker failed to boot|status=\d+/"
)


def log_position():
    """Where the logs end now: the journal's cursor and error.log's size (and inode, to notice a rotation)."""
    shown = run(["journalctl", "-n", "0", "--show-cursor", "--no-pager"])["out"]
    cursor = re.search(r"^-- cursor: (\S+)", shown, re.M)
    try:
        info = os.stat(NGINX_ERROR_LOG)
        nginx = {"inode": info.st_ino, "offset": info.st_size}
    except OSError:
        nginx = {"inode": None, "offset": 0}
    return {"journal_cursor": cursor.group(1) if cursor else None, "nginx_error_log": nginx, "time": time.time()}


def read_after(path, position, limit=2_000_000):
    """What was appended to a file after `position` ({"inode", "offset"}); all of it if it was rotated."""
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if info.st_ino == position.get("inode") and info.st_size >= position.get("offset", 0):
                f.seek(position.get("offset", 0))
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""


def nginx_errors(args):
    since = datetime.now() - timedelta(seconds=args["since_seconds"])
    log = (read(NGINX_ERROR_LOG, 2_000_000) or "").splitlines()[-500:]
    return recent_lines(log, NGINX_ERROR, nginx_time, since)


def gunicorn_errors(args):
    since = f"-{int(args['since_seconds'])}s"
    journal = run(["journalctl", "-u", args["service"], "--since", since, "--no-pager", "-o", "short-iso"])["out"]
    return error_lines(journal, GUNICORN_ERROR)


def error_lines(text, pattern):
    return [redact(line.strip())[:400] for line in text.splitlines() if re.search(pattern, line)][-20:]


def journal_after(service, position):
    where = ["--after-cursor", position["journal_cursor"]] if position.get("journal_cursor") else []
    where = where or ["--since", f"@{int(position.get('time', 0))}"]
    return run(["journalctl", "-u", service, *where, "--no-pager", "-o", "short-iso"])["out"]


def gunicorn_config(text):
    def value(name):
        match = re.search(rf"^{name}\s*=\s*(.+)$", text or "", re.M)
        return match.group(1).strip() if match else None

    bind = value("bind") or ""
    return {
        "worker_class": (value("worker_class") or "sync").strip("\"'"),
        "workers": value("workers"),
        "binds": re.findall(r"[\"']([^\"']+)[\"']", bind),
    }


def socket_facts(path, nginx_user):
    facts = {"path": path, "exists": os.path.lexists(path)}
    if facts["exists"]:
        info = os.lstat(path)
        facts.update(is_socket=stat.S_ISSOCK(info.st_mode), mode=oct(info.st_mode & 0o777))
        facts["group"] = grp.getgrgid(info.st_gid).gr_name
        probe = f"import socket; socket.socket(socket.AF_UNIX).connect({path!r})"
        connect = run(["runuser", "-u", nginx_user, "--", "python3", "-c", probe])
        facts["nginx_user_connects"] = connect["rc"] == 0
        facts["connect_error"] = connect["err"].strip().splitlines()[-1:] if connect["rc"] else []
    return facts


def gunicorn_facts(args, nginx_user):
    service = args["service"]
    unit = unit_show(service)
    exec_start = unit.get("ExecStart", "")
    config_path = re.search(r"--config[ =](\S+)", exec_start)
    config_path = config_path.group(1) if config_path else None
    config_text = read(config_path) if config_path else None
    env_files = re.findall(r"(/\S+)", unit.get("EnvironmentFiles", ""))
    env = {}
    for path in env_files:
        env.update(parse_env_file(read(path)))
    main_pid = int(unit.get("MainPID") or 0)
    workers = children(main_pid) if main_pid else []
    reports = {}
    for path in glob.glob(f"/run/{service}/worker-*.json"):
        try:
            report = json.loads(read(path) or "{}")
        except ValueError:
            continue
        if report.get("pid") in workers:
            reports[str(report["pid"])] = report
    config = gunicorn_config(config_text)
    unix = [b[len("unix:") :] for b in config["binds"] if b.startswith("unix:")]
    errors = gunicorn_errors(args)
    time.sleep(args.get("sample_seconds", 1.0))
    return {
        "unit": {k: unit.get(k) for k in ("ActiveState", "SubState", "UnitFileState", "User", "Group", "NRestarts")},
        "main_pid": main_pid,
        "config_path": config_path,
        "config": config,
        "env_file": env_files[0] if env_files else None,
        "env": layer_view(env),
        "workers": workers,
        "workers_later": children(main_pid) if main_pid else [],
        "worker_env": {str(pid): layer_view(environ(pid)) for pid in workers},
        "reports": reports,
        "socket": socket_facts(unix[0], nginx_user) if unix else None,
        "errors": errors,
    }, env


def redis_cli(url, *command, anonymous=False, timeout=5):
    """redis-cli against a REDIS_URL. Its user and database go in the arguments; its password only in
    the environment (REDISCLI_AUTH), never on a command line every process list shows."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    db = (parts.path.lstrip("/") if parts.scheme != "unix" else "") or (query.get("db") or ["0"])[0]
    if parts.scheme == "unix":
        argv = ["redis-cli", "-s", parts.path]
    else:
        argv = ["redis-cli", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
        argv += ["--tls"] if parts.scheme == "rediss" else []
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    if not anonymous:
        argv += ["--user", unquote(parts.username)] if parts.username else []
        if parts.password:
            env["REDISCLI_AUTH"] = unquote(parts.password)
    return run([*argv, "-n", db, "--no-auth-warning", *command], timeout=timeout, env=env)


def redis_facts(env):
    """PING with the app's own REDIS_URL, and without its credentials (they must then be required)."""
    url = env.get("REDIS_URL")
    if not url:
        return {"configured": False}
    target = redis_target(url)
    ping = redis_cli(url, "PING")
    anonymous = None
    if target.get("password"):
        anonymous = redis_cli(url, "PING", anonymous=True)["out"].strip()
    return {
        "configured": True,
        "target": target,
        "ping": " ".join((ping["out"] + ping["err"]).split())[-300:],
        "anonymous_ping": anonymous,
    }


def app_env(service):
    """The settings the unit's env files give the app."""
    env = {}
    for path in re.findall(r"(/\S+)", unit_show(service).get("EnvironmentFiles", "")):
        env.update(parse_env_file(read(path)))
    return env


def manage(args, *command, timeout=30):
    return run(["nurcrm-manage", *command], timeout=timeout)


def addresses():
    """The host's own addresses, to match an upstream server against a wildcard bind."""
    shown = run(["ip", "-o", "addr", "show"])["out"]
    return sorted({match.split("/")[0] for match in re.findall(r"\binet6?\s+(\S+)", shown)})


def redis_server_facts():
    """Redis as its own host sees it: the unit, and whether it answers PING on its address (NOAUTH counts:
    answering is what matters here; the app host's view checks the password)."""
    conf = read("/etc/redis/redis.conf") or ""
    binds = re.search(r"^bind\s+(.+)$", conf, re.M)
    binds = [b.lstrip("-") for b in binds.group(1).split()] if binds else ["127.0.0.1"]
    port = re.search(r"^port\s+(\d+)", conf, re.M)
    port = int(port.group(1)) if port else 6379
    address = binds[0]
    ping = run(["redis-cli", "-h", address, "-p", str(port), "PING"], timeout=5)
    return {
        "service": run(["systemctl", "is-active", "redis-server"])["out"].strip(),
        "binds": binds,
        "port": port,
        "address": f"{address}:{port}",
        "ping": " ".join((ping["out"] + ping["err"]).split())[-300:],
    }


def postgresql_facts():
    ready = run(["pg_isready"], timeout=5)
    return {
        "service": run(["systemctl", "is-active", "postgresql"])["out"].strip(),
        "ready_rc": ready["rc"],
        "ready": (ready["out"] + ready["err"]).strip()[-300:],
    }


def facts(args):
    position = log_position()  # first: the walk's log lines are the ones after this
    result = {
        "user": pwd.getpwuid(os.geteuid()).pw_name,
        "root": os.geteuid() == 0,
        "hostname": os.uname().nodename,
        "machine_id": (read("/etc/machine-id") or "").strip(),
        "addresses": addresses(),
        "roles": args["roles"],
        "log_position": position,
    }
    nginx_user = "www-data"
    if "web" in args["roles"]:
        result["nginx"] = nginx_facts(args)
        nginx_user = result["nginx"]["user"]
    if "app" in args["roles"]:
        result["gunicorn"], env = gunicorn_facts(args, nginx_user)
        result["redis"] = redis_facts(env)
        if args.get("token_user"):
            minted = manage(args, "issue_token", "--user", args["token_user"], *args.get("token_args", []))
            result["token"] = minted["out"].strip() if minted["rc"] == 0 else None
            result["token_error"] = redact(minted["err"]).strip()[-300:]
    if "redis" in args["roles"]:
        result["redis_server"] = redis_server_facts()
    if "db" in args["roles"]:
        result["postgresql"] = postgresql_facts()
    if not result["root"]:  # most of what follows needs root: say what was out of reach
        result["unreadable"] = sorted(set(UNREADABLE)) or ["/proc/<worker>/environ", "the journal"]
    return result


def send(args):
    """Send table_status_changed through the real sender; report its output, timing and the group keys."""
    started = time.time()
    sent = manage(args, "send_test_notification", "--company", args["company"])
    result = {"rc": sent["rc"], "out": sent["out"][-2000:], "err": redact(sent["err"])[-1000:], "started": started}
    env = app_env(args["service"])
    prefix = env.get("CHANNEL_LAYER_PREFIX", "asgi")
    # The company's groups Redis knows of, under any name: a misnamed group shows up here.
    ask = {
        "redis": ["--scan", "--pattern", f"{prefix}:group:cafe_tables_{args['company']}*"],
        "redis-pubsub": ["PUBSUB", "CHANNELS", f"{prefix}__group__cafe_tables_{args['company']}*"],
    }.get(env.get("CHANNEL_LAYER", "redis-pubsub"))
    if env.get("REDIS_URL") and ask:
        result["group_keys"] = sorted(redis_cli(env["REDIS_URL"], *ask)["out"].split())[:20]
    return result


def redis(args):
    """One redis-cli command with the app's own REDIS_URL (the checklist's diagnostics, as an operator types them)."""
    done = redis_cli(app_env(args["service"]).get("REDIS_URL", ""), *args["command"])
    return {"rc": done["rc"], "out": done["out"], "err": done["err"]}


def logs(args):
    """Error lines gunicorn and nginx logged after args["position"] (what "facts" took at the walk's start)."""
    position, result = args["position"], {}
    if "app" in args["roles"]:
        result["gunicorn"] = error_lines(journal_after(args["service"], position), GUNICORN_ERROR)
    if "web" in args["roles"]:
        written = read_after(NGINX_ERROR_LOG, position.get("nginx_error_log") or {})
        result["nginx"] = error_lines(written, NGINX_ERROR)
    return result


def main():
    args = json.loads(base64.b64decode(sys.argv[1]))
    handler = {"facts": facts, "send": send, "logs": logs, "redis": redis}[args["mode"]]
    print(json.dumps(handler(args)))


if __name__ == "__main__":
    main()
