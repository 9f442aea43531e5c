"""What the benchmark runs against: where clients connect, how to run manage.py (the sender, tokens)
and a shell on the stack's host (worker memory), and which Redis the floor uses.

Three presets, each overridable option by option:
- `container`: the stack `make demo` deploys into the container nurcrm-local, through nginx:
  wss://localhost/ws/cafe/tables/ on 127.0.0.1:443, its certificate in .cache/local-ca.pem, commands by
  `docker exec nurcrm-local nurcrm-manage ...`, the floor on the container's Redis (127.0.0.1:6379,
  the password read from the local inventory's secrets file, never put on a command line).
- `local`: a stack of the benchmark's own for development, started and stopped with it: a redis-server
  on a free loopback port and app/tests/localstack.py's gunicorn with 3 uvicorn workers on a unix
  socket (SQLite, seed_demo), without nginx or TLS.
- `cluster`: molecule/cluster's hosts (issue 14), from its inventory: clients through the web host's nginx
  (the site as the doctor sees it: its name, pinned address and certificate), the sender and tokens on
  the first app host, the floor on the Redis master the Sentinels name, as the app's Redis user. It also
  reads where nginx put the sockets (which app host holds each) and the CPU time of every app host's
  gunicorn and every web host's nginx, for the capacity figure.
"""

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bench.clients import Endpoint
from doctor.probe import parse_env_file, sentinel_addresses

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "app"
CACHE = ROOT / ".cache" / "bench"
DEMO_COMPANY = "5eed0000-0000-4000-8000-000000000001"
CONTAINER = "nurcrm-local"
LOCAL_SECRETS = Path.home() / ".local/share/nurcrm/local-secrets"

# Prints "<pid> <VmRSS in KiB>" for each worker of the gunicorn master given as $1: a pid, or
# systemd:UNIT for the unit's main process.
WORKER_RSS = r"""
case "$1" in systemd:*) master=$(systemctl show -p MainPID --value "${1#systemd:}") ;; *) master=$1 ;; esac
for pid in $(cat /proc/"$master"/task/*/children); do
    echo "$pid $(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status)"
done
"""


# Prints the CPU time of a systemd unit ($1): "nsec N" when systemd accounts it, else "hz" and one /proc stat line
# per process (the main one and its children: gunicorn's workers, nginx's), whose utime, stime, cutime and
# cstime sum to it. A worker that dies in between moves its time into the main process's cutime.
UNIT_CPU = r"""
nsec=$(systemctl show -p CPUUsageNSec --value "$1")
case "$nsec" in ""|*[!0-9]*) ;; *) echo "nsec $nsec"; exit 0 ;; esac
main=$(systemctl show -p MainPID --value "$1")
[ "$main" -gt 0 ] || { echo "unit $1 has no main process" >&2; exit 1; }
echo "hz $(getconf CLK_TCK)"
for pid in "$main" $(cat /proc/"$main"/task/*/children); do echo "stat $(cat /proc/"$pid"/stat 2>/dev/null)"; done
"""


# The last line of a traceback: "redis.exceptions.MaxConnectionsError: Too many connections".
EXCEPTION_LINE = re.compile(r"^\s*[\w.]*(Error|Exception)\b")


class BenchError(Exception):
    """A step of the benchmark failed: the message says which and why."""


@dataclass
class Command:
    """A program prefix (e.g. `docker exec nurcrm-local nurcrm-manage`), with its environment and folder."""

    prefix: list
    env: dict | None = None
    cwd: Path | None = None

    def run(self, *args, timeout=900):
        argv = [*self.prefix, *map(str, args)]
        result = subprocess.run(argv, env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise BenchError(f"{shlex.join(argv[:6])} ... exited {result.returncode}: {result.stderr.strip()[-800:]}")
        return result.stdout

    def __str__(self):
        return shlex.join(map(str, self.prefix))


def stat_cpu_ticks(stat):
    """utime + stime + cutime + cstime of one /proc/<pid>/stat line, in clock ticks (the name may hold spaces)."""
    fields = stat.rpartition(")")[2].split()
    return sum(int(value) for value in fields[11:15])


def unit_cpu_seconds(output):
    """The CPU seconds UNIT_CPU printed: systemd's own figure, or its processes' ticks summed."""
    hz, ticks, seen = None, 0, 0
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "nsec":
            return int(rest) / 1e9
        if kind == "hz":
            hz = int(rest)
        elif kind == "stat" and rest.strip():  # empty when the process ended between listing and reading
            ticks, seen = ticks + stat_cpu_ticks(rest), seen + 1
    if not hz or not seen:
        raise BenchError(f"no CPU time in {output[:200]!r}")
    return ticks / hz


def process_cpu_seconds(pid):
    """CPU seconds of a process of this machine (the floor), its reaped children included."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat_cpu_ticks(stat.read()) / os.sysconf("SC_CLK_TCK")


def established_by_local(output, binds):
    """{bind: established connections whose local end is that address:port} from `ss -Htn state established`
    (columns Recv-Q, Send-Q, local, peer): how many sockets each app host holds."""
    counts = dict.fromkeys(binds, 0)
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in counts:
            counts[fields[2]] += 1
    return counts


@dataclass
class Host:
    """One host of a deployment: its inventory name and how to run a program there."""

    name: str
    command: Command

    def unit_cpu_seconds(self, unit):
        return unit_cpu_seconds(Command(self.command.prefix).run("sh", "-c", UNIT_CPU, "sh", unit, timeout=60))


@dataclass
class Target:
    name: str
    url: str  # without the token
    manage: Command
    host: Command  # runs a program on the stack's host: `docker exec nurcrm-local`, or nothing
    gunicorn: str  # the gunicorn master: systemd:UNIT or a pid
    unix_socket: str | None = None
    connect_host: str | None = None
    cafile: str | None = None
    origin: str | None = None
    company: str = DEMO_COMPANY
    user: str = "demo"
    floor_redis_url: str | None = None
    floor_redis_password: str | None = field(default=None, repr=False)
    restart_command: list | None = None  # restarts gunicorn on the stack's host (memory runs)
    stack: object = field(default=None, repr=False)  # the local stack, when this target owns one
    # A deployment of several hosts (the cluster): whose CPU time is read around a fan-out (gunicorn on the
    # app hosts, nginx on the web hosts), and the app hosts' address:port, which nginx's sockets reach.
    app_hosts: list = field(default_factory=list)
    web_hosts: list = field(default_factory=list)
    app_binds: list = field(default_factory=list)
    inventory: str | None = None

    def token(self):
        """A fresh access token for the user, valid a day (a token is checked at the handshake only)."""
        return self.manage.run("issue_token", "--user", self.user, "--ttl", 86400).strip()

    def endpoint(self, token, compression="deflate"):
        split = urlsplit(self.url)
        query = "&".join(part for part in (split.query, f"token={token}") if part)
        return Endpoint(
            url=split._replace(query=query).geturl(),
            unix_socket=self.unix_socket,
            connect_host=self.connect_host,
            cafile=self.cafile,
            origin=self.origin or f"https://{split.hostname}",
            compression=compression,
        )

    def worker_rss(self):
        """{worker pid: resident KiB} of the gunicorn workers."""
        output = Command(self.host.prefix).run("sh", "-c", WORKER_RSS, "sh", self.gunicorn, timeout=60)
        workers = {}
        for line in output.splitlines():
            pid, _, kib = line.partition(" ")
            if kib.strip():
                workers[int(pid)] = int(kib)
        if not workers:
            raise BenchError(f"no gunicorn worker found under {self.gunicorn}")
        return workers

    def log_mark(self):
        """Where gunicorn's log ends now: server_errors(mark) reads what was logged after it."""
        if self.stack is not None:
            return {str(path): path.stat().st_size if path.exists() else 0 for path in self.stack.local.logs}
        return time.time()

    def server_errors(self, mark):
        """{exception line: count} gunicorn logged since the mark, e.g. 'redis.exceptions.MaxConnectionsError:
        Too many connections'; None when this target's log cannot be read (gunicorn not under systemd)."""
        if self.stack is not None:
            text = ""
            for name, offset in mark.items():
                with open(name, errors="replace") as log:
                    log.seek(offset)
                    text += log.read()
        elif self.gunicorn.startswith("systemd:"):
            unit = self.gunicorn.removeprefix("systemd:")
            since = f"@{int(mark)}"
            text = ""
            for host in self.app_hosts or [Host("", self.host)]:
                text += Command(host.command.prefix).run(
                    "journalctl", "-u", unit, "--since", since, "-o", "cat", "--no-pager"
                )
        else:
            return None
        return dict(Counter(line.strip()[:200] for line in text.splitlines() if EXCEPTION_LINE.match(line)))

    def cpu_seconds(self):
        """{"app": {host: seconds}, "web": {host: seconds}}: the CPU time so far of gunicorn on each app host
        and nginx on each web host; None for a target of one host (no capacity figure)."""
        if not self.app_hosts:
            return None
        unit = self.gunicorn.removeprefix("systemd:")
        return {
            "app": {host.name: host.unit_cpu_seconds(unit) for host in self.app_hosts},
            "web": {host.name: host.unit_cpu_seconds("nginx") for host in self.web_hosts},
        }

    def spread(self):
        """{app host's address:port: established connections to it}, read from this machine (the cluster's
        containers share its network); None without app hosts to spread over."""
        if not self.app_binds:
            return None
        output = subprocess.run(
            ["ss", "-Htn", "state", "established"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        return established_by_local(output, self.app_binds)

    def restart(self):
        """Restart gunicorn and wait until every worker is back: memory is measured from a fresh start."""
        if self.stack is not None:
            self.stack.restart()
            _follow(self)
            return
        if not self.restart_command:
            raise BenchError("no way to restart gunicorn on this target: pass --restart-command or --no-restart")
        before = set(self.worker_rss())
        Command(self.host.prefix).run(*self.restart_command, timeout=120)
        deadline = time.monotonic() + 60
        while True:
            try:
                workers = set(self.worker_rss())
            except BenchError:
                workers = set()
            if workers and not workers & before and len(workers) == len(before):
                return
            if time.monotonic() > deadline:
                raise BenchError("gunicorn's workers did not come back within 60 s of the restart")
            time.sleep(0.5)

    def describe(self):
        """The target for a results file: no token, no password."""
        return {
            "name": self.name,
            "url": self.url,
            "unix_socket": self.unix_socket,
            "connect_host": self.connect_host,
            "cafile": self.cafile,
            "manage": str(self.manage),
            "host": str(self.host) or "(this machine)",
            "gunicorn": self.gunicorn,
            "company": self.company,
            "floor_redis": _without_password(self.floor_redis_url),
            "channel_layer": self.stack.layer if self.stack is not None else None,
            "inventory": self.inventory,
            "app_hosts": [host.name for host in self.app_hosts],
            "web_hosts": [host.name for host in self.web_hosts],
            "app_binds": self.app_binds,
        }

    def close(self):
        if self.stack is not None:
            self.stack.stop()


def _without_password(url):
    if not url:
        return None
    split = urlsplit(url)
    if split.password:
        split = split._replace(netloc=f"{split.username or ''}:***@{split.hostname}:{split.port}")
    return split.geturl()


# --- Presets --------------------------------------------------------------------------------------


def container_target(name=CONTAINER):
    password_file = LOCAL_SECRETS / "redis_password"
    # The stack's Redis has no default user: the floor is the app's user (the bundle's wiring, redis_app_user).
    from doctor.hosts import wired

    user = wired("redis_app_user")
    return Target(
        name="container",
        url="wss://localhost/ws/cafe/tables/",
        connect_host="127.0.0.1",
        cafile=str(ROOT / ".cache" / "local-ca.pem"),
        manage=Command(["docker", "exec", name, "nurcrm-manage"]),
        host=Command(["docker", "exec", name]),
        gunicorn="systemd:gunicorn",
        restart_command=["systemctl", "restart", "gunicorn"],
        floor_redis_url=f"redis://{user}@127.0.0.1:6379/0",
        floor_redis_password=password_file.read_text().strip() if password_file.exists() else None,
    )


def ensure_container(converge=True):
    """Bring the container stack up, or reuse it, as `make demo` does: `molecule converge` creates the
    container when it is missing and deploys the current code either way (about 45 s when nothing changed)."""
    if converge:
        env = tool_env()
        subprocess.run(["bash", "scripts/container-host.sh", "up"], cwd=ROOT, env=env, check=True)
        subprocess.run(["molecule", "converge"], cwd=ROOT, env=env, check=True)


def tool_env():
    """The environment with this virtualenv's tools (molecule, ansible-playbook) first on PATH."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def fetch_ca(name, path):
    """The stack's self-signed certificate, copied out of the container as `make demo` does."""
    ca = Command(["docker", "exec", name]).run("cat", "/etc/ssl/nurcrm/fullchain.pem", timeout=60)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(ca)


class RedisServer:
    """A redis-server of the benchmark's own on a free loopback port, persisting nothing."""

    def __init__(self, workdir):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


class OwnStack:
    """A redis-server and app/tests/localstack.py's gunicorn (3 uvicorn workers, unix socket)."""

    def __init__(self, workers=3, layer="redis-pubsub"):
        sys.path.insert(0, str(APP_DIR))
        from tests.localstack import LocalStack

        self.factory, self.workers, self.layer = LocalStack, workers, layer
        CACHE.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="local-", dir=CACHE))
        self.redis = RedisServer(self.tmp)
        self.start()

    def start(self):
        run = Path(tempfile.mkdtemp(prefix="run-", dir=self.tmp))
        self.local = self.factory(run, self.redis.url, workers=self.workers, layer=self.layer)

    def restart(self):
        self.local.stop()
        self.start()

    def stop(self):
        self.local.stop()
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def local_target(workers=3, layer="redis-pubsub"):
    stack = OwnStack(workers, layer)
    target = Target(
        name="local",
        url="ws://localhost/ws/cafe/tables/",
        unix_socket=None,
        manage=Command([sys.executable, "manage.py"], cwd=APP_DIR),
        host=Command([]),
        gunicorn="",
        floor_redis_url=stack.redis.url,
        stack=stack,
    )
    _follow(target)
    return target


def _follow(target):
    """Point a local target at its stack's current run (a restart makes a new socket, env and keys)."""
    local = target.stack.local
    target.unix_socket, target.gunicorn = str(local.sock), str(local.pid)
    target.manage.env = local.env


# --- The cluster (molecule/cluster) -----------------------------------------------------------------

CLUSTER_SCENARIO = "cluster"
APP_ENV = "/etc/nurcrm/app.env"
MOLECULE_TMP = Path.home() / ".ansible" / "tmp"


def molecule_inventory(scenario=CLUSTER_SCENARIO, tmp=MOLECULE_TMP):
    """The inventory molecule wrote for the scenario's hosts (with their docker connection); the newest."""
    found = sorted(tmp.glob(f"molecule.*.{scenario}/inventory"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise BenchError(
            f"no inventory of molecule's {scenario} scenario in {tmp}: run `molecule converge -s "
            f"{scenario}` (or `make bench-cluster`), or pass --inventory"
        )
    return found[-1]


def floor_redis(env, master=None):
    """(URL without password, password) of the Redis master for the floor, from the app's settings: the app's
    own user, whose ACL allows the asgi* channels the floor uses. `master` finds (host, port) from the
    Sentinels; by default it asks them."""
    url = urlsplit(env["REDIS_URL"])
    if env.get("REDIS_SENTINELS"):
        name = env.get("REDIS_MASTER_NAME") or url.hostname
        host, port = (master or sentinel_master)(env["REDIS_SENTINELS"], name, env.get("REDIS_SENTINEL_PASSWORD"))
    else:
        host, port = url.hostname, url.port or 6379
    user = f"{url.username}@" if url.username else ""
    return f"redis://{user}{host}:{port}{url.path or '/0'}", unquote(url.password) if url.password else None


def sentinel_master(sentinels, name, password=None):
    """(host, port) of the master the Sentinels name now (a failover may have moved it)."""
    import redis.sentinel

    addresses = sentinel_addresses(sentinels)
    kwargs = {"password": password} if password else {}
    return redis.sentinel.Sentinel(addresses, sentinel_kwargs=kwargs, socket_timeout=3).discover_master(name)


def docker_host(name, variables):
    """A host of the inventory, reached as molecule reaches it: `docker exec <container>`."""
    connection = variables.get("ansible_connection", "ssh")
    if not connection.endswith("docker"):
        raise BenchError(f"host {name}: the cluster target runs commands with docker exec, not {connection!r}")
    return Host(name, Command(["docker", "exec", variables.get("ansible_host") or name]))


def app_binds(variables):
    """The app host's TCP bind that nginx reaches: its nurcrm_address and asgi_tcp_port (the bundle's wiring,
    playbooks/group_vars/all/wiring.yml, which the inventory's listing carries); none on a host of its own."""
    from doctor.hosts import rendered

    address = variables.get("nurcrm_address")
    return [f"{address}:{rendered(variables, 'asgi_tcp_port')}"] if address else []


def cluster_target(inventory=None):
    from doctor.hosts import load_inventory
    from doctor.walk import gather

    inventory = Path(inventory) if inventory else molecule_inventory()
    listed, groups = load_inventory(inventory)
    hostvars = listed.get("_meta", {}).get("hostvars", {})
    apps = [docker_host(name, hostvars.get(name, {})) for name in groups["app"]]
    webs = [docker_host(name, hostvars.get(name, {})) for name in groups["web"]]
    binds = [bind for name in groups["app"] for bind in app_binds(hostvars.get(name, {}))]
    if len(apps) < 2 or not binds:
        raise BenchError(f"{inventory}: a cluster needs two app hosts with a nurcrm_address; it has {groups['app']}")
    site = gather(inventory).site  # the site as a client sees it: its name, pinned address and certificate
    cafile = CACHE / "cluster-ca.pem"
    CACHE.mkdir(parents=True, exist_ok=True)
    if site.cafile:
        shutil.copyfile(site.cafile, cafile)
    # The app's own settings, read into this process only: the password is never printed or put in an argument.
    env = parse_env_file(Command(apps[0].command.prefix).run("cat", APP_ENV, timeout=60))
    redis_url, redis_password = floor_redis(env)
    return Target(
        name="cluster",
        url=site.url(),
        connect_host=site.address or site.ipv4,
        cafile=str(cafile) if site.cafile else None,
        origin=site.origin,
        manage=Command([*apps[0].command.prefix, "nurcrm-manage"]),
        host=apps[0].command,
        gunicorn="systemd:gunicorn",
        floor_redis_url=redis_url,
        floor_redis_password=redis_password,
        app_hosts=apps,
        web_hosts=webs,
        app_binds=binds,
        inventory=str(inventory),
    )


def ensure_cluster(converge=True):
    """Bring molecule/cluster's hosts up, or reuse them (`molecule converge -s cluster`, about 2 minutes)."""
    if converge:
        env = tool_env()
        subprocess.run(["bash", "scripts/container-host.sh", "up"], cwd=ROOT, env=env, check=True)
        subprocess.run(["molecule", "converge", "-s", CLUSTER_SCENARIO], cwd=ROOT, env=env, check=True)


def target_from_options(options):
    """The preset `options.target` with each option given on the command line in place of its value."""
    if options.target == "local":
        target = local_target(options.workers, options.layer)
    elif options.target == "cluster":
        target = cluster_target(options.inventory)
    else:
        target = container_target(options.container)
    for name in ("url", "unix_socket", "connect_host", "cafile", "origin", "company", "user", "floor_redis_url"):
        value = getattr(options, name, None)
        if value is not None:
            setattr(target, name, value)
    if options.manage:
        target.manage = Command(shlex.split(options.manage))
    if options.host_exec is not None:
        target.host = Command(shlex.split(options.host_exec))
    if options.gunicorn:
        target.gunicorn = options.gunicorn
    if options.restart_command:
        target.restart_command = shlex.split(options.restart_command)
    if options.floor_redis_password_file:
        target.floor_redis_password = Path(options.floor_redis_password_file).read_text().strip()
    if options.target == "container" and options.cafile is None:
        fetch_ca(options.container, target.cafile)  # the current one: a recreated container has a new one
    return target
