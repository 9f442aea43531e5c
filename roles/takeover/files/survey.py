#!/usr/bin/python3
"""What on this host was made by hand, and what a run of the bundle would do to it (roles/takeover).

Run as root by the takeover role on a host without the bundle's marker, before any change: everything it
finds is the operator's. It reads and never writes. It prints one JSON object, {"findings": [...]}, each
finding with its layer, the thing, what was found, what the run would do to it, and `paths`: what the
takeover's backup must hold to put the thing back. Standard library only: it runs on a bare Debian host
with its own python3. The bundle's settings come as arguments (no secret among them).
"""

import argparse
import glob
import json
import os
import pwd
import re
import shutil
import subprocess

# What Debian's packages put there, which a run may replace or remove without losing anything of the operator's.
SKELETON = {".bashrc", ".profile", ".bash_logout", ".cache", ".ssh", ".bash_history", ".lesshst", ".wget-hsts"}
APP_SERVERS = re.compile(r"\b(gunicorn|uvicorn|daphne|hypercorn|uwsgi|manage\.py\s+runserver)\b")
NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")
SYSTEM_DATABASES = {"postgres", "template0", "template1"}


def run(argv, timeout=15, env=None):
    """(exit code, stdout) of a program; (127, "") when it is not installed, (124, "") when it hangs."""
    if not shutil.which(argv[0]) and not os.path.exists(argv[0]):
        return 127, ""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return 124, ""
    return done.returncode, done.stdout


def read(path):
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def finding(layer, thing, found, action, paths=(), blocks=True, **backup):
    """One thing found. It `blocks` the run when it is the operator's and the run would change or remove it (or
    fail on it); the others are shown, for the operator to know. `backup` names what the backup takes beside its
    paths (a database, Redis's data)."""
    line = f"{layer}: {thing}: {found} -> {action}" + ("" if blocks else " (nothing of the operator's is lost)")
    return {"layer": layer, "thing": thing, "found": found, "action": action, "paths": sorted(set(paths)),
            "blocks": blocks, "line": line, **backup}  # fmt: skip


# --- The app user's home and its shell -------------------------------------------------------------------
def home_findings(user, home, removed, kept):
    """Code, virtualenvs, env files and anything else of the operator's in the app user's home."""
    found = []
    try:
        entries = sorted(os.listdir(home))
    except OSError:
        entries = []
    for name in entries:
        path = os.path.join(home, name)
        if name in kept or (name in SKELETON and name not in removed):
            continue
        if name in SKELETON and not os.path.islink(path) and read(path) == read(os.path.join("/etc/skel", name)):
            continue  # Debian's own copy: nothing of the operator's in it
        what = describe_home_entry(path)
        removed_as = "removed after the roll, once the bundle's release serves"
        action = removed_as if name in removed else "kept (the bundle's release does not use it)"
        found.append(finding("app", path, what, action, [path], blocks=name in removed))
    try:
        shell = pwd.getpwnam(user).pw_shell
    except KeyError:
        shell = None
    if shell and shell not in NOLOGIN:
        found.append(finding("app", f"user {user}", f"logs in with {shell}", "its shell set to /usr/sbin/nologin"))
    return found


def describe_home_entry(path):
    if os.path.islink(path):
        return f"a link to {os.readlink(path)}"
    if not os.path.isdir(path):
        return "a .env file (the running app's secrets)" if path.endswith(".env") else "a file"
    parts = []
    if os.path.exists(os.path.join(path, "pyvenv.cfg")):
        parts.append("a virtualenv")
    if glob.glob(os.path.join(path, "manage.py")) or glob.glob(os.path.join(path, "*", "manage.py")):
        parts.append("a Django project")
    if glob.glob(os.path.join(path, ".env")) or glob.glob(os.path.join(path, "*", ".env")):
        parts.append("with a .env (the running app's secrets)")
    if glob.glob(os.path.join(path, "media")) or glob.glob(os.path.join(path, "*", "media")):
        parts.append("with uploads (media/)")
    return " ".join(parts) if parts else "a folder"


# --- Units and supervisor programs ----------------------------------------------------------------------
def unit_findings(service, units="/etc/systemd/system", supervisor="/etc/supervisor/conf.d"):
    found = []
    for path in sorted(glob.glob(f"{units}/*.service")):
        text = read(path)
        name = os.path.basename(path)
        if name == f"{service}.service":
            found.append(
                finding(
                    "asgi",
                    path,
                    f"a unit of its own ({first_exec(text)})",
                    "replaced by the bundle's unit; the process it runs is restarted as the bundle's gunicorn",
                    [path, *dropins(path)],
                )
            )
        elif APP_SERVERS.search(first_exec(text)):
            found.append(
                finding(
                    "asgi",
                    path,
                    f"an app server ({first_exec(text)})",
                    "left running beside the bundle's gunicorn: stop it, or name it asgi_service_name",
                    [path, *dropins(path)],
                    blocks=False,
                )
            )
    for path in sorted(glob.glob(f"{supervisor}/*.conf")):
        text = read(path)
        for program in re.findall(r"^\[program:([^\]]+)\]", text, re.M):
            found.append(
                finding(
                    "asgi",
                    path,
                    f"supervisor program {program}",
                    "left running beside the bundle's gunicorn: stop it before the takeover",
                    [path],
                    blocks=False,
                )
            )
    return found


def first_exec(text):
    match = re.search(r"^ExecStart=(.*)$", text.replace("\\\n", " "), re.M)
    return " ".join(match[1].split())[:160] if match else "no ExecStart"


def dropins(path):
    return sorted(glob.glob(path + ".d/*.conf"))


# --- nginx -----------------------------------------------------------------------------------------------
# The bundle's own locations in its server (roles/nginx/templates/nurcrm.conf.j2), and what each answers.
BUNDLE_LOCATIONS = {
    "/ws/": "the bundle's WebSocket proxy",
    "= /api/auth/token/": "the app, behind the bundle's sign-in rate limit",
    "/static/": "the release's collected static files",
}


def nginx_tokens(text):
    """nginx's configuration as tokens: words (quotes kept), ';', '{' and '}'; comments dropped."""
    return re.findall(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[{};]|[^\s{};#\"']+|#[^\n]*", text)


def nginx_blocks(tokens):
    """The tree of a configuration: [(words, children or None)], children of a block likewise."""
    stack, words = [[]], []
    for token in tokens:
        if token.startswith("#"):
            continue
        if token == ";":
            if words:
                stack[-1].append((words, None))
            words = []
        elif token == "{":
            block = (words or [""], [])
            stack[-1].append(block)
            stack.append(block[1])
            words = []
        elif token == "}":
            if len(stack) > 1:
                stack.pop()
            words = []
        else:
            words.append(token)
    return stack[0]


def nginx_render(words, children):
    """A directive as one line: `words` or `words { child; ... }` (nested blocks kept whole)."""
    if children is None:
        return " ".join(words)
    return " ".join(words) + " { " + " ".join(nginx_render(*child) + ("" if child[1] is not None else ";")
                                              for child in children) + " }"  # fmt: skip


def nginx_servers(tree):
    """Every server block of a file, in http blocks or at its top (sites-enabled files are read in http)."""
    for words, children in tree:
        if children is None:
            continue
        if words[:1] == ["server"]:
            yield children
        elif words[:1] == ["http"]:
            yield from nginx_servers(children)


PROXY_DIRECTIVES = ("proxy_pass ", "proxy_set_header ", "proxy_http_version ")


def to_the_app(directives, upstreams):
    """Whether a location proxies to the app: to one of the file's upstreams or to a unix socket."""
    targets = [d.split()[1] for d in directives if d.startswith("proxy_pass ") and len(d.split()) > 1]
    return any(t.removeprefix("http://").rstrip("/") in upstreams or "unix:" in t for t in targets)


def location_fate(spec, directives, to_app, bundle):
    """What the bundle's server makes of one of the site's locations: (fate, carried, lost). `carried` is the
    nginx_extra_locations entry that keeps it answering as today (the app's own proxy settings are the bundle's:
    proxy: true), or None when the bundle answers it alike. `bundle` says what the inventory gives the bundle's
    server: `carried`, the locations in nginx_extra_locations; `media_root`; `root_replaced`, whether the site's
    / is not the app (so the bundle's / must give way to it, and the app answers only what is carried)."""
    if spec in BUNDLE_LOCATIONS:
        return f"answered by {BUNDLE_LOCATIONS[spec]}", None, False
    if spec == "/media/":
        if bundle["media_root"]:
            moved = "the takeover copies its files there" if media_folder(spec, directives) else "move its files there"
            return f"answered from {bundle['media_root']} (nurcrm_media_root): {moved}", None, False
        return "LOST: set nurcrm_media_root (docs/project.md) and move its files there", None, True
    if to_app and not bundle["root_replaced"] and not spec.startswith(("~", "=")):
        return "answered as today by the bundle's location / (proxied to the app)", None, False
    kept = [d for d in directives if not (to_app and d.startswith(PROXY_DIRECTIVES))]
    if any(d.endswith("}") for d in kept):
        return "LOST: it holds a nested block, which nginx_extra_locations cannot carry: carry it by hand", None, True
    carried = {"location": spec, "directives": kept, "proxy": to_app}
    if spec in bundle["carried"]:
        return "carried over by nginx_extra_locations", carried, False
    instead = " (the bundle's / proxies everything to the app)" if spec == "/" else ""
    return f"LOST{instead} unless carried over: add it to nginx_extra_locations (suggested below)", carried, True


def media_folder(spec, directives):
    """The folder a location serves its files from (`alias`, or `root` plus the location), or ""."""
    for directive in directives:
        words = directive.split()
        if len(words) == 2 and words[0] == "alias":
            return words[1].strip("\"'").rstrip("/")
        if len(words) == 2 and words[0] == "root":
            return words[1].strip("\"'").rstrip("/") + "/" + spec.strip("/")
    return ""


def domain_servers(tree, domain):
    """The site's servers for the domain: its TLS ones when it has any (the plain-HTTP server mostly redirects)."""
    servers = [s for s in nginx_servers(tree) if any(w[0] == "server_name" and domain in w[1:] for w, _ in s)]
    return [s for s in servers if any(w[0] == "listen" and "ssl" in w for w, _ in s)] or servers


# Server-level directives every location inherits unless it sets its own: a carried location takes them along.
INHERITED = ("root", "index")
# Server-level directives the bundle's server sets itself, by its own variables (TLS, names, listening).
SERVER_OWN = ("listen", "server_name", "ssl_certificate", "ssl_certificate_key", "location", *INHERITED)


def site_locations(text, domain, bundle):
    """Each location of the site's servers for the domain, in order, with its fate; a location carried over takes
    the server's root and index along where it has none of its own."""
    tree = nginx_blocks(nginx_tokens(text))
    upstreams = {words[1] for words, children in tree if children is not None and words[0] == "upstream"}
    found = {}
    for server in domain_servers(tree, domain):
        inherited = [" ".join(words) for words, children in server if children is None and words[0] in INHERITED]
        for words, children in server:
            if words[0] == "location" and children is not None:
                own = [nginx_render(*child) for child in children]
                kinds = {o.split()[0] for o in own} | ({"root"} if any(o.startswith("alias ") for o in own) else set())
                directives = [d for d in inherited if d.split()[0] not in kinds] + own
                found[" ".join(words[1:])] = (directives, to_the_app(own, upstreams))
    bundle = {**bundle, "root_replaced": "/" in found and not found["/"][1]}
    located = []
    for spec, (directives, to_app) in found.items():
        fate, carried, lost = location_fate(spec, directives, to_app, bundle)
        located.append({"location": spec, "fate": fate, "carried": carried, "lost": lost})
        folder = media_folder(spec, directives) if spec == "/media/" and bundle["media_root"] else ""
        if folder:
            located[-1]["media_from"] = folder
    return located


def nginx_size(value):
    """An nginx size (`20M`, `512k`, `1g`, bytes) in bytes; 0 (no limit) stays 0."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", value.strip())
    return int(match[1]) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match[2].lower()] if match else 0


def site_settings(text, domain, bundle):
    """The site's server-level directives for the domain, each with its fate in the bundle's server: a larger
    client_max_body_size is LOST (larger requests get 413) unless `bundle["client_max_body_size"]` (the
    inventory's nginx_client_max_body_size) allows it; the others are named, not carried."""
    settings, others = [], []
    for server in domain_servers(nginx_blocks(nginx_tokens(text)), domain):
        for words, children in server:
            if children is not None or words[0] in SERVER_OWN:
                continue
            if words[0] == "client_max_body_size" and len(words) == 2:
                ours, theirs = bundle["client_max_body_size"], words[1]
                if nginx_size(ours) and (not nginx_size(theirs) or nginx_size(theirs) > nginx_size(ours)):
                    fate = f"LOST (the bundle's is {ours}: larger requests get 413) unless nginx_client_max_body_size"
                    setting = {"nginx_client_max_body_size": theirs}
                    settings.append({"setting": " ".join(words), "fate": fate, "lost": True, "carried": setting})
                else:
                    fate = f"kept: the bundle's nginx_client_max_body_size ({ours}) allows it"
                    settings.append({"setting": " ".join(words), "fate": fate, "lost": False, "carried": None})
            elif " ".join(words) not in others:
                others.append(" ".join(words))
    if others:
        fate = "not carried: the bundle's server sets its own TLS, logs and headers (docs/takeover.md)"
        settings.append({"setting": "; ".join(others), "fate": fate, "lost": False, "carried": None})
    return settings


def nginx_findings(domain, site_file, nginx="/etc/nginx", carried=(), media_root="", client_max_body_size="1m"):
    """Sites that serve the domain or claim default_server. For the domain's site, each location's fate in the
    bundle's server (site_locations), given the locations the inventory carries over and its media root."""
    found = []
    for path in sorted(glob.glob(f"{nginx}/sites-enabled/*") + glob.glob(f"{nginx}/conf.d/*.conf")):
        target = os.path.realpath(path)
        text = read(target)
        names = {name for names in re.findall(r"server_name\s+([^;]+);", text) for name in names.split()}
        locations = [" ".join(spec.split()) for spec in re.findall(r"location\s+([^{]+)\{", text)]
        defaults = sorted(set(re.findall(r"listen\s+([^;]*?)\s+default_server", text)))
        paths = sorted({path, target})
        if os.path.basename(path) == "default" and target == f"{nginx}/sites-available/default" and pristine(target):
            found.append(finding("nginx", path, "Debian's default site", "taken out of sites-enabled", [path], False))
            continue
        if os.path.abspath(path) == site_file:
            found.append(
                finding("nginx", path, "a site in the bundle's file", "overwritten by the bundle's site", paths)
            )
            continue
        serves = domain in names
        if serves or defaults:
            what = f"a site for {', '.join(sorted(names)) or 'any name'}"
            if locations:
                what += f" with locations {', '.join(locations)}"
            extra = {}
            if serves:
                action = f"taken out of {os.path.basename(os.path.dirname(path))} (its map and upstream would clash); "
                action += f"the bundle's server for {domain} answers in its place, where"
                extra["site_off"] = path
                extra["locations"] = site_locations(text, domain, {"carried": set(carried), "media_root": media_root})
                action += "".join(f"\n    location {each['location']}: {each['fate']}" for each in extra["locations"])
                extra["settings"] = site_settings(text, domain, {"client_max_body_size": client_max_body_size})
                action += "".join(f"\n    server {each['setting']}: {each['fate']}" for each in extra["settings"])
            else:
                action = f"kept, but its default_server ({', '.join(defaults)}) clashes with the bundle's"
            found.append(finding("nginx", path, what, action, paths, **extra))
    return found


def pristine(path):
    """Whether a package's configuration file is as the package left it (dpkg's checksum of the conffile)."""
    code, owner = run(["dpkg-query", "-S", path])
    if code != 0:
        return False
    code, out = run(["dpkg-query", "-W", "-f=${Conffiles}", owner.split(":")[0]])
    if code != 0:
        return False
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == path:
            code, digest = run(["md5sum", path])
            return code == 0 and digest.split()[0] == parts[1]
    return False


# --- Redis -----------------------------------------------------------------------------------------------
def redis_password(text):
    """The password redis.conf's `requirepass` gives the default user, or None."""
    match = re.search(r"^[ \t]*requirepass[ \t]+(.+?)[ \t]*$", text, re.M)
    return match[1].strip("\"'") if match else None


def redis_findings(port, layer_prefix, conf="/etc/redis/redis.conf"):
    text = read(conf)
    if not text:
        return []
    # With a requirepass, the survey signs in as the hand-made clients do: through the environment, never argv.
    password = redis_password(text)
    auth = {**os.environ, "REDISCLI_AUTH": password} if password else None
    paths = [conf, *glob.glob("/etc/redis/*.acl"), *glob.glob("/etc/redis/users.acl")]
    debians = pristine(conf)
    found = [
        finding(
            "redis",
            conf,
            "Debian's redis.conf" if debians else "Redis configured by hand" + (" with a password" if password else ""),
            "rewritten: the bundle's ACL users, and the default user as the hand-made clients use it until the "
            "bundle's release serves; then any other client gets NOAUTH",
            paths,
            blocks=not debians,
        )
    ]
    code, info = run(["redis-cli", "-p", str(port), "--no-auth-warning", "INFO", "keyspace"], timeout=5, env=auth)
    if code != 0 or "NOAUTH" in info or "ERR" in info[:10]:
        found.append(
            finding(
                "redis", "Redis data", "not readable without its password", "kept (its dump is backed up)", blocks=False
            )
        )
        return found
    # The default user as it is (the hand-made clients connect as it): kept until the apps run the bundle's
    # release, so that they keep Redis until then (roles/redis: users.acl.j2, tasks/default_off.yml).
    code, rules = run(["redis-cli", "-p", str(port), "--no-auth-warning", "ACL", "LIST"], timeout=5, env=auth)
    default = [rule for rule in rules.splitlines() if rule.startswith("user default on ")] if code == 0 else []
    if default:
        found[0]["redis_default"] = default[0]
    keys = sum(int(n) for n in re.findall(r"keys=(\d+)", info))
    # A sample of the keys (one SCAN step; its first line is the next cursor): whose they are, by prefix.
    code, sample = run(["redis-cli", "-p", str(port), "--no-auth-warning", "SCAN", "0", "COUNT", "1000"], env=auth)
    sample = sample.splitlines()[1:] if code == 0 else []
    prefixes = sorted({key.split(":")[0] for key in sample if not key.startswith(layer_prefix)})
    clients = redis_clients(port, auth)
    others = sorted({c["program"] for c in clients if not c["app"]})
    if keys or clients:
        what = f"{keys} keys" + (f" ({', '.join(prefixes[:5])}… beyond the channel layer's)" if prefixes else "")
        what += f", {len(clients)} clients connected"
        if others:
            what += f", of which not the app's: {'; '.join(others)}"
        found.append(
            finding(
                "redis",
                "Redis data and clients",
                what,
                "the app's clients are replaced by the bundle's app; any other client is refused (NOAUTH) once the "
                "bundle's release serves, unless redis_extra_users gives it a user",
                redis_port=port,
                redis_clients=others,
            )
        )
    return found


def redis_clients(port, auth=None):
    """Redis's clients but this survey, each named by the program at the other end of its connection (ss)."""
    code, listing = run(["redis-cli", "-p", str(port), "--no-auth-warning", "CLIENT", "LIST"], timeout=5, env=auth)
    if code != 0:
        return []
    code, sockets = run(["ss", "-Htnp", "state", "established"], timeout=5)
    pids = {}
    for line in sockets.splitlines():
        fields = line.split()
        match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', line)
        if match and len(fields) >= 3:
            pids[fields[2]] = (match[1], int(match[2]))  # the client's own address: its process
    clients = []
    for line in listing.splitlines():
        client = dict(field.split("=", 1) for field in line.split() if "=" in field)
        if client.get("cmd") == "client|list":
            continue  # this survey
        name, pid = pids.get(client.get("addr", ""), ("", 0))
        command = " ".join(read(f"/proc/{pid}/cmdline").split("\0")).strip()[:100] if pid else ""
        program = f"{name} (pid {pid}: {command})" if pid else f"a client at {client.get('addr', '?')}"
        clients.append({"program": program, "app": bool(APP_SERVERS.search(command)), "db": client.get("db")})
    return clients


# --- PostgreSQL ------------------------------------------------------------------------------------------
def psql(sql):
    code, out = run(["runuser", "-u", "postgres", "--", "psql", "-AtXc", sql], timeout=10)
    return out.splitlines() if code == 0 else None


def postgresql_findings(database, db_user):
    databases = psql("SELECT datname FROM pg_database")
    if databases is None:
        return []
    found = []
    for name in sorted(set(databases) - SYSTEM_DATABASES):
        if name == database:
            action = "kept: the release's migrations run on it"
        else:
            action = (
                f"left as is, but the app is pointed at database {database} instead "
                f"(set nurcrm_database: {name} to keep using it)"
            )
        found.append(
            finding("postgresql", f"database {name}", "a database with the operator's rows", action, database=name)
        )
    roles = psql("SELECT rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%' AND rolname <> 'postgres'") or []
    for name in sorted(roles):
        action = "its password reset to the vault's" if name == db_user else "kept"
        found.append(
            finding("postgresql", f"role {name}", "a database role made by hand", action, blocks=name == db_user)
        )
    conf = sorted(glob.glob("/etc/postgresql/*/main/postgresql.conf"))
    if found and conf:
        found.append(
            finding(
                "postgresql",
                conf[0],
                "the server's configuration",
                "listen_addresses set by the bundle and the server restarted",
                [*conf, *glob.glob("/etc/postgresql/*/main/pg_hba.conf")],
            )
        )
    return found


# --- SSH -------------------------------------------------------------------------------------------------
def ssh_findings():
    code, out = run(["sshd", "-T"], timeout=5)
    if code != 0:
        code, out = run(["/usr/sbin/sshd", "-T"], timeout=5)
    if code != 0:
        return []
    settings = dict(line.split(None, 1) for line in out.splitlines() if " " in line)
    used = []
    if settings.get("permitrootlogin", "no") != "no":
        used.append(f"root (PermitRootLogin {settings['permitrootlogin']})")
    if settings.get("passwordauthentication") == "yes":
        used.append("passwords")
    if not used:
        return []
    return [
        finding(
            "ssh",
            "sshd",
            "logins allowed: " + ", ".join(used),
            "unchanged by site.yml; playbooks/bootstrap.yml turns them off",
            ["/etc/ssh/sshd_config", *glob.glob("/etc/ssh/sshd_config.d/*.conf")],
            blocks=False,
        )
    ]


def survey(args):
    groups = set(args.groups.split(","))
    found = []
    if "app" in groups:
        found += home_findings(args.app_user, args.app_home, set(args.removed.split(",")), set(args.kept.split(",")))
        found += unit_findings(args.service)
    if "web" in groups:
        found += nginx_findings(
            args.domain, args.site_file, carried=json.loads(args.carried), media_root=args.media_root,
            client_max_body_size=args.client_max_body_size,
        )  # fmt: skip
    if "redis" in groups:
        found += redis_findings(args.redis_port, args.layer_prefix)
    if "db" in groups:
        found += postgresql_findings(args.database, args.db_user)
    found += ssh_findings()
    return {"findings": found}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="")
    parser.add_argument("--app-user", default="nur")
    parser.add_argument("--app-home", default="/home/nur")
    parser.add_argument("--removed", default="", help="names in the home the app role removes, comma-separated")
    parser.add_argument("--kept", default="", help="names in the home the bundle makes itself")
    parser.add_argument("--service", default="gunicorn")
    parser.add_argument("--domain", default="")
    parser.add_argument("--site-file", default="/etc/nginx/conf.d/nurcrm.conf")
    parser.add_argument("--carried", default="[]", help="the locations of nginx_extra_locations, a JSON list")
    parser.add_argument("--media-root", default="", help="where the bundle's /media/ serves from, if anywhere")
    parser.add_argument("--client-max-body-size", default="1m", help="the bundle's nginx_client_max_body_size")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--layer-prefix", default="asgi")
    parser.add_argument("--database", default="nurcrm")
    parser.add_argument("--db-user", default="nur")
    print(json.dumps(survey(parser.parse_args())))


if __name__ == "__main__":
    main()
