"""The doctor's eyes on a host: one read-only pass that returns facts as JSON.

This file runs ON the host (Debian's python3, standard library only, as root), sent by
doctor/hosts.py. It changes nothing: it reads files and /proc, asks systemctl, nginx -T,
journalctl and redis-cli, and mints a token (which writes nothing). It never returns a
secret: Redis URLs are reduced to host, port, database and whether a password is set, and every
password redis-cli needs (the app's, the Sentinels', the operations user's) travels in its
environment, never on a command line.

    python3 probe.py <base64 JSON args>     args: {"mode": "facts" | "token" | "send" | "logs" | "redis", ...}

"facts" starts by taking the logs' position (the journal's cursor, the ends of nginx's error and access
logs); "logs", given that position, returns only the error lines (and 5xx answers) written after it.
"""

import base64
import glob
import grp
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

TOKEN_RE = re.compile(r"((?:token|access|refresh)=)[^&\s\"']+|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_.-]+", re.I)
LAYER_KEYS = (
    "ALLOWED_HOSTS",
    "CHANNEL_LAYER",
    "CHANNEL_LAYER_PREFIX",
    "DEBUG",
    "REDIS_SENTINELS",
    "REDIS_MASTER_NAME",
)
REDIS_CONF = "/etc/redis/redis.conf"
SENTINEL_CONF = "/etc/redis/sentinel.conf"  # the bundle's when it has `sentinel monitor`
OPS_SECRET = "/etc/redis/nurcrm-ops.secret"  # roles/redis keeps the operations user's password here for the probe
SENTINEL_TIMEOUT = 2  # seconds: a Sentinel that does not answer in that time is down for the app too


def redact(text):
    return TOKEN_RE.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


MISSING = []  # the programs this run needed and did not find (redis-cli on an app host without redis-tools)


def run(argv, timeout=10, env=None, input_text=None, cwd=None):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, input=input_text, cwd=cwd)
        return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}
    except FileNotFoundError as exc:
        MISSING.append(argv[0])
        return {"rc": 127, "out": "", "err": str(exc)}
    except subprocess.TimeoutExpired:
        return {"rc": 124, "out": "", "err": f"timed out after {timeout}s"}


def said(done):
    """A command's output and errors on one line, short enough to show."""
    return " ".join((done["out"] + done["err"]).split())[-300:]


def is_active(unit):
    return run(["systemctl", "is-active", unit])["out"].strip()


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
    """The same reduction as nurcrm_ops/workerinfo.py's (roles/app/files): this file runs with the standard library."""
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
    """KEY=value lines of an environment file (systemd's EnvironmentFile, or a project's .env), as the app
    reads them: comments, blank lines and `export` skipped, one level of quotes removed as a shell does. The
    one parser of the doctor and the benchmark."""
    env = {}
    for line in (text or "").splitlines():
        match = re.match(r"^\s*(?:export\s+)?([A-Za-z_]\w*)\s*=\s*(.*?)\s*$", line)
        if not match:
            continue
        value = match.group(2)
        if value[:1] in ("'", '"'):
            try:
                value = (shlex.split(value) or [""])[0]
            except ValueError:  # an unclosed quote: the text as written
                value = value.strip("'\"")
        env[match.group(1)] = value
    return env


def sentinel_addresses(text):
    """REDIS_SENTINELS ("10.0.0.1:26379,[::1]:26379") -> [("10.0.0.1", 26379), ("::1", 26379)]; a ValueError
    names an item that is not host:port. The one parser of the doctor and the benchmark; the app, which cannot
    import the doctor, has its own (nurcrm_realtime.redisconn.sentinel_addresses), kept equal by
    doctor/tests/test_probe.py."""
    found = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        address, _, port = item.rpartition(":")
        if not address or not port.isdigit():
            raise ValueError(f"{item!r} is not host:port")
        found.append((address.strip("[]"), int(port)))
    return found


def unit_show(unit):
    props = "LoadState,ActiveState,SubState,UnitFileState,MainPID,ExecStart,EnvironmentFiles,User,Group,NRestarts"
    props += ",WorkingDirectory"
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


def tail(path, limit=2_000_000):
    """A file's last `limit` bytes, whole lines only (the first, cut, is dropped); None if unreadable."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            text = f.read().decode(errors="replace")
    except PermissionError:
        UNREADABLE.append(path)
        return None
    except OSError:
        return None
    return text.split("\n", 1)[-1] if size > limit else text


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


def access_time(line):
    """$time_local of an access-log line, as the naive local time nginx_time gives."""
    match = re.search(r"\[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\]", line)
    stamp = datetime.strptime(match.group(1), "%d/%b/%Y:%H:%M:%S %z") if match else None
    return stamp.astimezone().replace(tzinfo=None) if stamp else None


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
        "active": is_active("nginx"),
        "user": user.group(1) if user else "www-data",
        # Certificates are public; the doctor trusts a self-signed one only where the inventory says so.
        "certificates": {path.strip(): read(path.strip()) for path in certificates},
        "errors": nginx_errors(args),
    }


NGINX_ERROR_LOG = "/var/log/nginx/error.log"
NGINX_ERROR = r"\[(error|crit|alert|emerg)\]"
# /ws/ writes no error lines (they would quote its token): its failures are the access log's 5xx, in the
# `nurcrm` format of roles/nginx ('"GET /ws/cafe/tables/?[query] HTTP/1.1" 502 157 ...').
NGINX_ACCESS_LOG = "/var/log/nginx/access.log"
NGINX_FAILED_REQUEST = r'" 5\d\d \d+ '
# Error records and the one-line summary of each exception (not the traceback's frames).
GUNICORN_ERROR = (
    r"\[(ERROR|CRITICAL)\]| (ERROR|CRITICAL) |: [\w.]+(Error|Exception): |Worker failed to boot|status=\d+/"
)


def file_position(path):
    """A file's size, and its inode to notice a rotation."""
    try:
        info = os.stat(path)
        return {"inode": info.st_ino, "offset": info.st_size}
    except OSError:
        return {"inode": None, "offset": 0}


def log_position():
    """Where the logs end now: the journal's cursor and the ends of nginx's error and access logs."""
    shown = run(["journalctl", "-n", "0", "--show-cursor", "--no-pager"])["out"]
    cursor = re.search(r"^-- cursor: (\S+)", shown, re.M)
    return {
        "journal_cursor": cursor.group(1) if cursor else None,
        "nginx_error_log": file_position(NGINX_ERROR_LOG),
        "nginx_access_log": file_position(NGINX_ACCESS_LOG),
        "time": time.time(),
    }


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
    """The error lines, and the 5xx answers, of the last args["since_seconds"]."""
    since = datetime.now() - timedelta(seconds=args["since_seconds"])
    errors = (tail(NGINX_ERROR_LOG) or "").splitlines()[-500:]
    answers = (tail(NGINX_ACCESS_LOG) or "").splitlines()[-2000:]
    found = recent_lines(errors, NGINX_ERROR, nginx_time, since)
    return (found + recent_lines(answers, NGINX_FAILED_REQUEST, access_time, since))[-20:]


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
    """The settings a gunicorn config file (Python) assigns at its top level, as written there."""

    def value(name):
        match = re.search(rf"^{name}\s*=\s*(.+)$", text or "", re.M)
        return match.group(1).strip() if match else None

    bind = value("bind") or ""
    return {
        "worker_class": (value("worker_class") or "sync").strip("\"'"),
        "workers": value("workers"),
        "binds": re.findall(r"[\"']([^\"']+)[\"']", bind),
    }


MARKER = "/etc/nurcrm"  # the bundle's roles make it (app.env, gunicorn.conf.py): a host without it was set up otherwise


def managed():
    """Whether the bundle deployed this host's app (its marker is here)."""
    return os.path.isdir(MARKER)


# gunicorn's options that take a value (each may also be written --option=value), by the setting they give; the
# flags that take none; anything else that starts with "-" is taken to take a value, as most of gunicorn's do.
GUNICORN_OPTIONS = {
    "-c": "config", "--config": "config", "-k": "worker_class", "--worker-class": "worker_class",
    "-w": "workers", "--workers": "workers", "-b": "binds", "--bind": "binds", "--chdir": "chdir",
    "-e": "env", "--env": "env", "--pythonpath": "pythonpath",
}  # fmt: skip
GUNICORN_FLAGS = {
    "-D", "--daemon", "--preload", "--reload", "--spew", "--check-config", "--print-config", "-R",
    "--enable-stdio-inheritance", "--capture-output", "--reuse-port", "--no-sendfile", "--log-syslog",
    "--disable-redirect-access-to-syslog", "--initgroups", "--strip-header-spaces", "--suppress-ragged-eofs",
    "--do-handshake-on-connect", "--no-control-socket",
}  # fmt: skip


def gunicorn_cli(argv):
    """gunicorn's command line (its arguments after the program) -> the settings it gives, and the app."""
    found, args = {"binds": [], "env": []}, list(argv)
    while args:
        word = args.pop(0)
        if not word.startswith("-") or word == "-":
            found["app"] = word
            continue
        option, has_value, value = word.partition("=")
        if option in GUNICORN_FLAGS and not has_value:
            continue
        if not has_value:
            if option.startswith("-") and not option.startswith("--") and len(option) > 2:  # -w3
                option, value = option[:2], option[2:]
            else:
                value = args.pop(0) if args else ""
        setting = GUNICORN_OPTIONS.get(option)
        if setting in ("binds", "env"):
            found[setting].append(value)
        elif setting:
            found[setting] = value
    return found


def exec_argv(unit):
    """The command line of a unit's ExecStart, as systemctl show prints it ("{ path=... ; argv[]=... ; ...}")."""
    match = re.search(r"argv\[\]=(.*?) ;", unit.get("ExecStart", ""))
    try:
        return shlex.split(match.group(1)) if match else []
    except ValueError:
        return match.group(1).split()


def cmdline(pid):
    return [word for word in (read(f"/proc/{pid}/cmdline") or "").split("\0") if word]


def parent_of(pid):
    fields = (read(f"/proc/{pid}/stat") or "").rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else 0


def gunicorn_args(argv):
    """The arguments after gunicorn in a command line ("python -m gunicorn ...", ".../bin/gunicorn ..."), or
    None when it does not run gunicorn."""
    for index, word in enumerate(argv):
        if os.path.basename(word).startswith("gunicorn") and not word.startswith("-"):
            return argv[index + 1 :]
        if word == "-m" and index + 1 < len(argv) and argv[index + 1] == "gunicorn":
            return argv[index + 2 :]
    return None


def gunicorn_master():
    """A gunicorn master that no unit of the given name runs (supervisor's, say): the process whose command
    line runs gunicorn and whose parent's does not."""
    for path in sorted(glob.glob("/proc/[0-9]*/cmdline")):
        pid = int(path.split("/")[2])
        if gunicorn_args(cmdline(pid)) is not None and gunicorn_args(cmdline(parent_of(pid))) is None:
            return pid
    return 0


def interpreter(argv):
    """The Python that runs a command line: its first word if that is a python, else the script's #! line."""
    first = argv[0] if argv else ""
    if re.match(r"python[\d.]*$", os.path.basename(first)):
        return first
    shebang = (read(first, limit=200) or "").splitlines()[:1]
    words = shebang[0][2:].split() if shebang and shebang[0].startswith("#!") else []
    return words[-1] if words and "python" in os.path.basename(words[-1]) else (words[0] if words else None)


def user_of(pid):
    match = re.search(r"^Uid:\s+(\d+)", read(f"/proc/{pid}/status") or "", re.M)
    try:
        return pwd.getpwuid(int(match.group(1))).pw_name if match else None
    except KeyError:
        return None


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


def cwd_of(pid):
    """The folder a process is in, or None (no such process, or not ours to see without root)."""
    try:
        return os.readlink(f"/proc/{pid}/cwd") if pid else None
    except OSError:
        return None


def discover(service):
    """gunicorn as it runs: its unit (or, with none of that name, the master some supervisor runs), the command
    line that starts it, its arguments, its directory, its user and the environment it has."""
    unit = unit_show(service)
    main_pid = int(unit.get("MainPID") or 0) or (gunicorn_master() if unit.get("LoadState") == "not-found" else 0)
    argv = exec_argv(unit) if unit.get("LoadState") != "not-found" else cmdline(main_pid)
    cli = gunicorn_cli(gunicorn_args(argv) or [])
    # Where it runs: its --chdir, else the folder it really is in (a config file's chdir, as the bundle's
    # gunicorn.conf.py has it, moves it there from the unit's WorkingDirectory), else the unit's.
    directory = cli.get("chdir") or cwd_of(main_pid) or unit.get("WorkingDirectory")
    env_files = re.findall(r"(/\S+)", unit.get("EnvironmentFiles", ""))
    env = environ(main_pid) if main_pid and not managed() else {}
    for path in env_files:
        env.update(parse_env_file(read(path)))
    env.update(item.split("=", 1) for item in cli["env"] if "=" in item)
    user = unit.get("User") or (user_of(main_pid) if main_pid else None)
    return unit, main_pid, argv, cli, directory, user, env, env_files


def gunicorn_facts(args, nginx_user):
    """gunicorn as it runs (discover): its settings from its command line over its config file, its workers,
    socket and logs; where the bundle did not deploy the host, the Django settings its app runs with
    (django_facts). Also the environment the app's Redis is found in."""
    service = args["service"]
    unit, main_pid, argv, cli, directory, user, env, env_files = discover(service)
    config_path = cli.get("config")
    if not config_path and directory and os.path.exists(os.path.join(directory, "gunicorn.conf.py")):
        config_path = "gunicorn.conf.py"  # gunicorn's default, read from where it starts
    if config_path and not config_path.startswith("/") and directory:
        config_path = os.path.join(directory, config_path)
    config_text = read(config_path) if config_path else None
    config = gunicorn_config(config_text)
    config["from"] = config_path or "gunicorn's defaults"
    for setting in ("worker_class", "workers"):
        if cli.get(setting):
            config[setting], config["from"] = cli[setting], "its command line"
    config["binds"] = cli["binds"] or config["binds"] or ["127.0.0.1:8000"]
    config["app"] = cli.get("app")
    workers = children(main_pid) if main_pid else []
    reports = {}
    for path in glob.glob(f"/run/{service}/worker-*.json"):
        try:
            report = json.loads(read(path) or "{}")
        except ValueError:
            continue
        if report.get("pid") in workers:
            reports[str(report["pid"])] = report
    unix = [b[len("unix:") :] for b in config["binds"] if b.startswith("unix:")]
    errors = gunicorn_errors(args)
    found = {}
    if not managed():  # the app's settings through the app itself; they give its channel layer's Redis
        found["django"], env = django_facts(argv, directory, user, env, cli)
    time.sleep(args.get("sample_seconds", 1.0))
    keys = ("LoadState", "ActiveState", "SubState", "UnitFileState", "User", "Group", "NRestarts")
    return {
        **found,
        "service": service,
        "unit": {k: unit.get(k) for k in keys},
        "main_pid": main_pid,
        "parent": " ".join(cmdline(parent_of(main_pid))[:2]) if main_pid else None,
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


# Django set up inside the app, as manage.py does: the settings module the app names, from its directory.
DJANGO_SETUP = """
import json, os, sys
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.conf import settings
layer_settings = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default") or {}
layer_config = layer_settings.get("CONFIG") or {}

def layer_url(host):
    if isinstance(host, dict):
        return host.get("address") or ""
    if isinstance(host, (list, tuple)) and len(host) == 2:
        return "redis://%s:%s" % tuple(host)
    return host if isinstance(host, str) else ""

LAYER = {
    "channel_layer": layer_settings.get("BACKEND"),
    "channel_layer_prefix": layer_config.get("prefix", "asgi"),
    "urls": [layer_url(host) for host in layer_config.get("hosts") or []],
}
"""
# What the settings give: printed as the last line, read by the probe (the URLs' passwords never leave the host).
SETTINGS_SCRIPT = (
    DJANGO_SETUP
    + """
print(json.dumps({
    "allowed_hosts": list(settings.ALLOWED_HOSTS),
    "asgi_application": getattr(settings, "ASGI_APPLICATION", None),
    "debug": bool(settings.DEBUG),
    **LAYER,
}))
"""
)
# The production note's test send (its diagnostics, item 2): the app's own sender for a table of the company, the
# layer's group_send recorded on the way, so the evidence can name the groups the sender used.
SENDER = "apps.cafe.views.send_table_status_changed_notification"
TABLE_MODEL = "apps.cafe.models.Table"
SEND_SCRIPT = (
    DJANGO_SETUP
    + """
import importlib
from channels.layers import get_channel_layer
doctor = json.loads(os.environ.pop("NURCRM_DOCTOR_SEND"))
sent = []
layer = get_channel_layer()  # the instance every caller gets: its group_send is recorded
if layer is not None:
    group_send = layer.group_send

    async def recorded(group, message):
        sent.append({"group": group, "type": message.get("type")})
        return await group_send(group, message)

    layer.group_send = recorded
module, _, name = doctor["table_model"].rpartition(".")
tables = getattr(importlib.import_module(module), name).objects.all()
if doctor.get("company"):
    tables = tables.filter(company_id=doctor["company"])
table = tables.order_by("pk").first()
if table is None:
    sys.exit("no table%s to send about" % (" of company " + doctor["company"] if doctor.get("company") else ""))
module, _, name = doctor["sender"].rpartition(".")
getattr(importlib.import_module(module), name)(table)
print(json.dumps({"sent": sent, "table": str(table.pk), **LAYER}))
"""
)


def settings_module(directory, env, app):
    """DJANGO_SETTINGS_MODULE: the environment's, else the default manage.py (or the ASGI module) sets."""
    if env.get("DJANGO_SETTINGS_MODULE"):
        return env["DJANGO_SETTINGS_MODULE"]
    paths = [os.path.join(directory or ".", "manage.py")]
    if app:
        paths.append(os.path.join(directory or ".", app.split(":")[0].replace(".", "/") + ".py"))
    for path in paths:
        match = re.search(r"DJANGO_SETTINGS_MODULE[\"']\s*,\s*[\"']([\w.]+)", read(path) or "")
        if match:
            return match.group(1)
    return None


def as_app(app, argv, timeout=30, extra=None):
    """A command run as the app runs: its user, its directory, its environment, its interpreter's folder first on
    PATH; writing no bytecode beside the app's code."""
    env = dict(app["env"], **(extra or {}), PYTHONDONTWRITEBYTECODE="1")  # no __pycache__ left in the app
    if app.get("settings_module"):
        env["DJANGO_SETTINGS_MODULE"] = app["settings_module"]
    if app.get("pythonpath"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [app["pythonpath"], env.get("PYTHONPATH")]))
    folder = os.path.dirname(app.get("python") or "")
    env["PATH"] = os.pathsep.join(filter(None, [folder, env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"]))
    if app.get("user") and app["user"] != pwd.getpwuid(os.geteuid()).pw_name:
        # Found where util-linux puts it (/usr/sbin), not on the app's PATH, which may lack it.
        argv = [
            shutil.which("runuser", path="/usr/sbin:/usr/bin:/sbin:/bin") or "runuser",
            "-u",
            app["user"],
            "--",
            *argv,
        ]
    return run(argv, timeout=timeout, env=env, cwd=app.get("directory"))


def last_json(done):
    """The JSON object a script printed last, or None."""
    for line in reversed(done["out"].strip().splitlines()):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        return found if isinstance(found, dict) else None
    return None


def failure(done):
    """Why a command failed, on one line: its error's last line (an exception's message), tokens redacted."""
    lines = [line.strip() for line in (done["err"] or done["out"]).strip().splitlines() if line.strip()]
    return redact(lines[-1] if lines else f"exit status {done['rc']}")[-400:]


def app_of(argv, directory, user, env, cli):
    """How to run code as the app: interpreter, directory, user, environment, settings module."""
    return {
        "python": interpreter(argv),
        "directory": directory,
        "user": user,
        "env": env,
        "pythonpath": cli.get("pythonpath"),
        "settings_module": settings_module(directory, env, cli.get("app")),
    }


def django_facts(argv, directory, user, env, cli):
    """The Django settings the app runs with, read by its own interpreter (SETTINGS_SCRIPT); and the environment
    its channel layer's Redis is found in (REDIS_URL: the layer's first host)."""
    app = app_of(argv, directory, user, env, cli)
    facts = {key: app[key] for key in ("python", "directory", "user", "settings_module")}
    if not app["python"]:
        return {**facts, "error": f"no Python interpreter found in gunicorn's command line {argv[:2]}"}, {}
    done = as_app(app, [app["python"], "-c", SETTINGS_SCRIPT])
    settings = last_json(done) if done["rc"] == 0 else None
    if settings is None:
        return {**facts, "error": failure(done)}, {}
    urls = settings.pop("urls")
    facts["settings"] = settings
    layer_env = {
        "REDIS_URL": urls[0] if urls else None,
        "CHANNEL_LAYER": settings["channel_layer"],
        "CHANNEL_LAYER_PREFIX": settings["channel_layer_prefix"],
        "ALLOWED_HOSTS": ",".join(settings["allowed_hosts"]),
        "DEBUG": str(int(settings["debug"])),
    }
    if urls:
        facts["groups"] = layer_groups(urls[0], settings["channel_layer"], settings["channel_layer_prefix"])
    return facts, {key: value for key, value in layer_env.items() if value is not None}


def layer_groups(url, backend, prefix, limit=200):
    """The channel layer's groups in Redis and how many subscribers or members each has: RedisChannelLayer keeps
    a group as the sorted set <prefix>:group:<name>, RedisPubSubChannelLayer publishes on <prefix>__group__<name>."""
    if "pubsub" in (backend or "").lower():
        channels = redis_cli(url, "PUBSUB", "CHANNELS", f"{prefix}__group__*")["out"].split()[:limit]
        counts = redis_cli(url, "PUBSUB", "NUMSUB", *channels)["out"].split() if channels else []
        pairs = dict(zip(counts[::2], counts[1::2], strict=False))
        return {ch[len(f"{prefix}__group__") :]: int(pairs.get(ch, 0) or 0) for ch in channels}
    keys = redis_cli(url, "--scan", "--pattern", f"{prefix}:group:*")["out"].split()[:limit]
    if not keys:
        return {}
    script = "local n = {} for i, k in ipairs(KEYS) do n[i] = redis.call('ZCARD', k) end return n"
    counts = redis_cli(url, "EVAL", script, str(len(keys)), *keys)["out"].split()
    return {key[len(f"{prefix}:group:") :]: int(n) for key, n in zip(keys, counts, strict=False) if n.isdigit()}


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


def host_port(host, port):
    """host:port, an IPv6 host in brackets (as in a URL)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_of(host, port, password="", user=""):
    """A redis:// URL for redis_cli, which passes its password in the environment."""
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host_port(host, port)}"


def pointed_at(url, master):
    """REDIS_URL pointed at the master's host:port ("10.0.0.1:6379"): its user, password and database kept."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    host, _, port = master.rpartition(":")
    where = host_port(host, port)
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{where}" if userinfo else where))


def sentinel_cli(sentinel, password, *command):
    """SENTINEL <command> on one Sentinel ("host:port"), with its password."""
    host, _, port = sentinel.rpartition(":")
    return redis_cli(url_of(host.strip("[]"), port, password), "SENTINEL", *command, timeout=SENTINEL_TIMEOUT)


def master_by_name(sentinel, password, name):
    """One Sentinel's answer to get-master-addr-by-name: the master's "host:port", or None and why."""
    done = sentinel_cli(sentinel, password, "get-master-addr-by-name", name)
    words = done["out"].split()
    if done["rc"] == 0 and len(words) == 2 and words[1].isdigit():
        return {"address": sentinel, "master": ":".join(words), "answer": ":".join(words)}
    # redis-cli prints a nil reply (no master of that name) as an empty line
    return {"address": sentinel, "master": None, "answer": said(done) or "(nil)"}


def sentinels_view(env):
    """Under Sentinel (REDIS_SENTINELS), each Sentinel's answer for REDIS_MASTER_NAME and the master: the
    first one named, as roles/app/files/nurcrm_realtime/redisconn.py's clients take it. None without Sentinels."""
    if not env.get("REDIS_SENTINELS"):
        return None
    name, password = env.get("REDIS_MASTER_NAME", ""), env.get("REDIS_SENTINEL_PASSWORD", "")
    try:
        sentinels = [host_port(host, port) for host, port in sentinel_addresses(env["REDIS_SENTINELS"])]
    except ValueError:  # the app refuses to start with it; no Sentinel to ask
        sentinels = []
    answers = [master_by_name(sentinel, password, name) for sentinel in sentinels]
    master = next((answer["master"] for answer in answers if answer["master"]), None)
    return {"master_name": name, "sentinels": answers, "master": master}


def app_redis_url(env):
    """The URL every redis-cli of the probe uses for the app's Redis, and what the Sentinels said (or None):
    REDIS_URL, whose host under Sentinel is the master's name, pointed at the master they name (the URL is
    None when none names one)."""
    url, view = env.get("REDIS_URL"), sentinels_view(env)
    if url and view is not None:
        url = pointed_at(url, view["master"]) if view["master"] else None
    return url, view


def redis_facts(env):
    """PING with the app's own REDIS_URL, and without its credentials (they must then be required); under
    Sentinel, on the master the Sentinels name, and what each of them answered."""
    if not env.get("REDIS_URL"):
        return {"configured": False}
    url, view = app_redis_url(env)
    found = {"configured": True, **(view or {})}
    if url is None:
        return {**found, "target": redis_target(env["REDIS_URL"]), "ping": "no Sentinel names the master"}
    target = redis_target(url)
    anonymous = None
    if target.get("password"):
        anonymous = redis_cli(url, "PING", anonymous=True)["out"].strip()
    return {**found, "target": target, "ping": said(redis_cli(url, "PING")), "anonymous_ping": anonymous}


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


CONFIG_WORD = re.compile(r'"((?:\\.|[^"\\])*)"|\'((?:\\\'|[^\'])*)\'|(\S+)')
NAMED_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def unescape(text):
    """A double-quoted value's escapes, as Redis writes them (\\n, \\xHH, \\", ...)."""

    def one(match):
        code = match.group(1)
        return bytes([int(code[1:], 16)]) if len(code) == 3 else NAMED_ESCAPES.get(code, code)

    return re.sub(rb"\\(x[0-9a-fA-F]{2}|.)", one, text.encode()).decode(errors="replace")


def directives(text):
    """A redis.conf or sentinel.conf, each directive as its words. Redis and Sentinel quote values when they
    rewrite the file (`requirepass "..."`): the words are unquoted as Redis reads them."""
    found = []
    for line in (text or "").splitlines():
        words = []
        for double, single, bare in (match.groups() for match in CONFIG_WORD.finditer(line)):
            if double is not None:
                words.append(unescape(double))
            elif single is not None:
                words.append(single.replace("\\'", "'"))
            else:
                words.append(bare)
        if words and not words[0].startswith("#"):
            found.append(words)
    return found


def directive(found, *keys):
    """The words after the last directive that starts with `keys` (the one Redis keeps), or []."""
    matching = [words[len(keys) :] for words in found if [w.lower() for w in words[: len(keys)]] == list(keys)]
    return matching[-1] if matching else []


def listens(found, port):
    """The address a configuration makes Redis or Sentinel listen on first, and its port."""
    binds = [b.lstrip("-") for b in directive(found, "bind")] or ["127.0.0.1"]
    return binds, int((directive(found, "port") or [port])[0])


def redis_server_facts(sentinel):
    """Redis as its own host sees it: the unit, and whether it answers PING on its address (NOAUTH counts:
    answering is what matters here; the app host's view checks the password). Under Sentinel, its
    replication too."""
    conf = directives(read(REDIS_CONF))
    binds, port = listens(conf, 6379)
    ping = run(["redis-cli", "-h", binds[0], "-p", str(port), "PING"], timeout=5)
    found = {
        "service": is_active("redis-server"),
        "binds": binds,
        "port": port,
        "address": f"{binds[0]}:{port}",
        "ping": said(ping),
    }
    if sentinel:
        found["replication"] = replication_facts(binds[0], port, (directive(conf, "masteruser") or [""])[0])
    return found


def replication_facts(host, port, user):
    """INFO replication of the local Redis as the operations user (redis.conf's masteruser), whose password
    roles/redis keeps in OPS_SECRET: the role, and the replicas or the master and the link to it."""
    secret = read(OPS_SECRET)
    if secret is None:
        return {"error": f"{OPS_SECRET} cannot be read"}
    done = redis_cli(url_of(host, port, secret.rstrip("\n"), user), "INFO", "replication")
    info = dict(line.strip().split(":", 1) for line in done["out"].splitlines() if ":" in line)
    if "role" not in info:
        return {"error": said(done)}
    replicas = [
        dict(pair.split("=", 1) for pair in v.split(",")) for k, v in info.items() if re.fullmatch(r"slave\d+", k)
    ]
    return {
        "role": info["role"],
        "connected_slaves": int(info.get("connected_slaves") or 0),
        "replicas": {f"{r.get('ip')}:{r.get('port')}": r.get("state") for r in replicas},
        "master_host": info.get("master_host"),
        "master_port": int(info["master_port"]) if info.get("master_port", "").isdigit() else None,
        "master_link_status": info.get("master_link_status"),
    }


def records(text):
    """A SENTINEL replicas answer as redis-cli prints it (field, value, field, value, ... each record from name)."""
    found, lines = [], text.splitlines()
    for field, value in zip(lines[::2], lines[1::2], strict=False):
        if field == "name":
            found.append({})
        if found:
            found[-1][field] = value
    return found


def sentinel_facts(conf):
    """The local Sentinel, with requirepass from its sentinel.conf: the master it names, whether the Sentinels
    it sees make the quorum and may authorize a failover (CKQUORUM), and the replicas it knows of."""
    name, _, _, quorum = (directive(conf, "sentinel", "monitor") + ["", "", "", "0"])[:4]
    binds, port = listens(conf, 26379)
    here, password = f"{binds[0]}:{port}", (directive(conf, "requirepass") or [""])[0]
    asked = master_by_name(here, password, name)
    replicas = sentinel_cli(here, password, "replicas", name)
    return {
        "service": is_active("redis-sentinel"),
        "address": here,
        "master_name": name,
        "quorum": int(quorum) if quorum.isdigit() else 0,
        "master": asked["master"],
        "answer": asked["answer"],
        "ckquorum": said(sentinel_cli(here, password, "ckquorum", name)),
        "replicas": {r.get("name"): r.get("flags") for r in records(replicas["out"]) if replicas["rc"] == 0},
    }


def postgresql_facts():
    ready = run(["pg_isready"], timeout=5)
    return {
        "service": is_active("postgresql"),
        "ready_rc": ready["rc"],
        "ready": (ready["out"] + ready["err"]).strip()[-300:],
    }


def facts(args):
    position = log_position()  # first: the walk's log lines are the ones after this
    result = {
        "managed": managed(),
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
        if args.get("token_user") or args.get("token_command"):
            result.update(token(args))
    if "redis" in args["roles"]:
        sentinel = directives(read(SENTINEL_CONF))
        # Standalone, redis-sentinel is not installed: there is no sentinel.conf at all.
        under_sentinel = bool(directive(sentinel, "sentinel", "monitor"))
        result["redis_server"] = redis_server_facts(under_sentinel)
        if under_sentinel:
            result["sentinel"] = sentinel_facts(sentinel)
    if "db" in args["roles"]:
        result["postgresql"] = postgresql_facts()
    if not result["root"]:  # most of what follows needs root: say what was out of reach
        result["unreadable"] = sorted(set(UNREADABLE)) or ["/proc/<worker>/environ", "the journal"]
    if MISSING:
        result["missing"] = sorted(set(MISSING))
    return result


def token(args):
    """A token: printed by the operator's command (args["token_command"], run as the app runs), else minted for
    args["token_user"] by `nurcrm-manage issue_token` (writing nothing) where the bundle deployed the host; or
    why none."""
    if args.get("token_command"):
        _, _, argv, cli, directory, user, env, _ = discover(args["service"])
        done = as_app(app_of(argv, directory, user, env, cli), ["sh", "-c", args["token_command"]])
        lines = done["out"].strip().splitlines()
        if done["rc"] == 0 and lines:
            return {"token": lines[-1].strip(), "token_error": ""}
        return {"token": None, "token_error": f"the token command failed: {failure(done)}"}
    if not managed():
        return {"token": None, "token_error": "no token source (--token-command, or NURCRM_DOCTOR_TOKEN)"}
    minted = manage(args, "issue_token", "--user", args["token_user"], *args.get("token_args", []))
    return {
        "token": minted["out"].strip() if minted["rc"] == 0 else None,
        "token_error": redact(minted["err"]).strip()[-300:],
    }


def send_as_app(args):
    """The production note's test send (SEND_SCRIPT) in the app of a host the bundle did not deploy: the groups the
    sender used, and the layer's groups in Redis now that the doctor's socket is open."""
    started = time.time()
    _, _, argv, cli, directory, user, env, _ = discover(args["service"])
    app = app_of(argv, directory, user, env, cli)
    doctor = {"company": args.get("company"), "sender": SENDER, "table_model": TABLE_MODEL}
    argv = [app["python"] or "python3", "-c", SEND_SCRIPT]
    done = as_app(app, argv, extra={"NURCRM_DOCTOR_SEND": json.dumps(doctor)})
    result = {"rc": done["rc"], "started": started, "sender": SENDER, "out": "", "err": ""}
    answer = last_json(done) if done["rc"] == 0 else None
    if answer is None:
        return {**result, "rc": done["rc"] or 1, "err": failure(done)}
    urls = answer.pop("urls")
    result.update(answer)
    if urls:
        result["groups"] = layer_groups(urls[0], answer["channel_layer"], answer["channel_layer_prefix"])
    return result


def send(args):
    """Send table_status_changed through the real sender; report its output, timing and the group keys."""
    if not managed():
        return send_as_app(args)
    started = time.time()
    sent = manage(args, "send_test_notification", "--company", args["company"])
    if sent["rc"] != 0 and "Unknown command: 'send_test_notification'" in sent["err"]:
        # A project other than app/, deployed by the bundle: the note's own sender, as on a stranger's host.
        return send_as_app(args)
    result = {"rc": sent["rc"], "out": sent["out"][-2000:], "err": redact(sent["err"])[-1000:], "started": started}
    env = app_env(args["service"])
    prefix = env.get("CHANNEL_LAYER_PREFIX", "asgi")
    # The company's groups Redis knows of, under any name: a misnamed group shows up here.
    ask = {
        "redis": ["--scan", "--pattern", f"{prefix}:group:cafe_tables_{args['company']}*"],
        "redis-pubsub": ["PUBSUB", "CHANNELS", f"{prefix}__group__cafe_tables_{args['company']}*"],
    }.get(env.get("CHANNEL_LAYER", "redis-pubsub"))
    url = app_redis_url(env)[0]
    if url and ask:
        result["group_keys"] = sorted(redis_cli(url, *ask)["out"].split())[:20]
    return result


def redis(args):
    """One redis-cli command with the app's own REDIS_URL (the checklist's diagnostics, as an operator types them);
    under Sentinel, on the master they name."""
    url, view = app_redis_url(app_env(args["service"]))
    if url is None and view is not None:
        answers = {answer["address"]: answer["answer"] for answer in view["sentinels"]}
        return {"rc": 1, "out": "", "err": f"no Sentinel names master {view['master_name']}: {answers}"}
    done = redis_cli(url or "", *args["command"])
    return {"rc": done["rc"], "out": done["out"], "err": done["err"]}


def logs(args):
    """Error lines gunicorn and nginx logged, and nginx's 5xx answers, after args["position"] (what "facts"
    took at the walk's start)."""
    position, result = args["position"], {}
    if "app" in args["roles"]:
        result["gunicorn"] = error_lines(journal_after(args["service"], position), GUNICORN_ERROR)
    if "web" in args["roles"]:
        errors = read_after(NGINX_ERROR_LOG, position.get("nginx_error_log") or {})
        answers = read_after(NGINX_ACCESS_LOG, position.get("nginx_access_log") or {})
        result["nginx"] = (error_lines(errors, NGINX_ERROR) + error_lines(answers, NGINX_FAILED_REQUEST))[-20:]
    return result


# Installed on a host by roles/monitoring for the monitoring host's doctor, which logs in over SSH and may run
# only this file as root (sudo): there it walks as one user (token-user, a root-owned file beside it), and
# runs only the walk's modes.
INSTALLED_MODES = ("facts", "token", "send", "logs")


def installed_token_user():
    """The one user an installed probe mints tokens for; None when the operator's doctor sent the code inline."""
    here = os.path.abspath(sys.argv[0])
    beside = os.path.join(os.path.dirname(here), "token-user")
    if os.path.basename(here) != "probe.py" or not os.path.exists(beside):
        return None
    return read(beside).strip()


def refused(args, allowed):
    """Why an installed probe refuses these arguments, or None."""
    if args.get("mode") not in INSTALLED_MODES:
        return f"the installed probe runs only {', '.join(INSTALLED_MODES)}, not {args.get('mode')!r}"
    if args.get("token_user") not in (None, allowed):
        return f"the installed probe mints tokens for {allowed} only, not {args['token_user']!r}"
    return None


def main():
    args = json.loads(base64.b64decode(sys.argv[1]))
    allowed = installed_token_user()
    if allowed is not None and (why := refused(args, allowed)):
        sys.exit(f"probe: {why}")
    handler = {"facts": facts, "token": token, "send": send, "logs": logs, "redis": redis}[args["mode"]]
    print(json.dumps(handler(args)))


if __name__ == "__main__":
    main()
