"""The floor: the least any server can do for the same fan-out, measured in the same run as the stack.

One process with one asyncio loop (uvloop, as uvicorn's workers use) subscribes one Redis pub/sub
channel and relays every message, serialized once by the publisher, to every connected client with
`websockets.broadcast`. Its transport mirrors the stack under test, so the ratio compares servers and
not transports: a unix socket when the target is one, else TCP, with TLS when the target is wss://
(a self-signed certificate with the same kind of key as the target's, made once in .cache/bench/).
It agrees to permessage-deflate when clients ask for it only if the stack does (a handshake with the
stack tells), so that neither side compresses alone.

The publisher sends at R a second the frame the stack's consumer would send, with a table-shaped
payload stamped with sent_at, seq and run, like `manage.py bench_broadcast`.
"""

import asyncio
import datetime
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio
from websockets.asyncio.server import broadcast, serve, unix_serve

from bench.clients import HELLO, Endpoint, raise_fd_limit
from bench.target import ROOT, BenchError

try:
    import uvloop
except ImportError:
    uvloop = None

PASSWORD_ENV = "BENCH_REDIS_PASSWORD"  # the Redis password, kept out of every command line
# Under the channel layer's prefix: the floor signs in as the app's Redis user, whose channels start with it.
CHANNEL = "asgi:bench:floor"
BACKLOG = 4096
TABLE_ID = "f1004000-0000-4000-8000-000000000001"


def redis_client(url, module=redis):
    return module.Redis.from_url(url, password=os.environ.get(PASSWORD_ENV) or None)


# --- The server (`python -m bench floor`) --------------------------------------------------------


async def _serve(redis_url, channel, port, unix_socket, certfile, keyfile, deflate=True):
    clients = set()
    hello = json.dumps({"type": HELLO, "server": "floor"})

    async def handler(ws):
        clients.add(ws)
        try:
            await ws.send(hello)
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    compression = "deflate" if deflate else None
    tls = None
    if certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(certfile, keyfile)
    pubsub = redis_client(redis_url, redis.asyncio).pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    # A listen backlog as deep as the kernel allows (asyncio's default is 100): a burst is not refused here.
    if unix_socket:
        server = await unix_serve(handler, unix_socket, backlog=BACKLOG, compression=compression)
        where = unix_socket
    else:
        server = await serve(handler, "127.0.0.1", port, ssl=tls, backlog=BACKLOG, compression=compression)
        where = server.sockets[0].getsockname()[1]
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    print(json.dumps({"listening": where, "pid": os.getpid()}), flush=True)

    async def relay():
        async for message in pubsub.listen():
            broadcast(clients, message["data"], text=True)

    relaying = asyncio.create_task(relay())
    await stop
    relaying.cancel()
    server.close()
    await server.wait_closed()


def serve_forever(redis_url, channel=CHANNEL, port=0, unix_socket=None, certfile=None, keyfile=None, deflate=True):
    raise_fd_limit()
    runner = uvloop.run if uvloop else asyncio.run
    runner(_serve(redis_url, channel, port, unix_socket, certfile, keyfile, deflate))


# --- The publisher (`python -m bench publish`) -------------------------------------------------


def table_payload(company):
    """Shaped like apps.cafe.notifications.table_payload, so frames are as long as the stack's."""
    return {
        "id": TABLE_ID,
        "number": 1,
        "name": "Main hall #1",
        "status": "free",
        "company_id": company,
        "branch_id": "5eed0000-0000-4000-8000-0000000000b1",
        "updated_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }


def publish(redis_url, company, rate, duration, run, channel=CHANNEL):
    """Publish max(1, rate * duration) stamped events at `rate` a second; the summary bench_broadcast gives."""
    client = redis_client(redis_url)
    ((_, subscribers),) = client.pubsub_numsub(channel)
    base = table_payload(company)
    count = max(1, round(rate * duration))
    late_ms = []
    start = time.monotonic() + 0.05
    for seq in range(count):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        late_ms.append(max(0.0, -delay) * 1000)
        payload = dict(base, sent_at=time.time(), seq=seq, run=run)
        client.publish(channel, json.dumps({"type": "table_status_changed", "data": payload}))
    return {
        "run": run,
        "sent": count,
        "rate": rate,
        "duration": duration,
        "company_id": company,
        "table_id": TABLE_ID,
        "group": channel,
        "members_before": subscribers,
        "late_ms_max": round(max(late_ms), 3),
    }


# --- Its certificate ---------------------------------------------------------------------------


def certificate(directory, like=None):
    """A self-signed certificate for localhost and 127.0.0.1 with the same kind of key as the
    certificate in file `like` (ECDSA P-256 without one): (certfile, keyfile), made once."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    public = x509.load_pem_x509_certificate(Path(like).read_bytes()).public_key() if like else None
    if isinstance(public, rsa.RSAPublicKey):
        kind, make_key = f"rsa{public.key_size}", lambda: rsa.generate_private_key(65537, public.key_size)
    else:
        curve = public.curve if isinstance(public, ec.EllipticCurvePublicKey) else ec.SECP256R1()
        kind, make_key = f"ec-{curve.name}", lambda: ec.generate_private_key(curve)
    directory = Path(directory)
    certfile, keyfile = directory / f"floor-{kind}.pem", directory / f"floor-{kind}.key"
    if certfile.exists() and keyfile.exists():
        return certfile, keyfile
    directory.mkdir(parents=True, exist_ok=True)
    key = make_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    keyfile.chmod(0o600)
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return certfile, keyfile


# --- Driving it from the benchmark --------------------------------------------------------------


class FloorServer:
    """`python -m bench floor` in a process of its own, with the stack's transport; a context manager."""

    def __init__(self, redis_url, redis_password, stack_endpoint, workdir, channel=CHANNEL, deflate=True):
        Path(workdir).mkdir(parents=True, exist_ok=True)
        self.redis_url, self.channel = redis_url, channel
        self.env = dict(os.environ, **({PASSWORD_ENV: redis_password} if redis_password else {}))
        command = [sys.executable, "-m", "bench", "floor", "--redis-url", redis_url, "--channel", channel]
        if not deflate:
            command.append("--no-deflate")
        self.deflate = deflate
        cafile = None
        self.tmp = Path(tempfile.mkdtemp(prefix="floor-", dir=workdir))
        if stack_endpoint.unix_socket:
            command += ["--unix-socket", str(self.tmp / "floor.sock")]
        elif stack_endpoint.url.startswith("wss:"):
            certfile, keyfile = certificate(workdir, like=stack_endpoint.cafile)
            command += ["--certfile", str(certfile), "--keyfile", str(keyfile)]
            cafile = str(certfile)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, env=self.env, text=True, cwd=ROOT)
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"the floor server did not start (exit code {self.process.wait(10)})")
        where = json.loads(line)["listening"]
        self.pid = self.process.pid
        scheme = "wss" if cafile else "ws"
        if stack_endpoint.unix_socket:
            self.endpoint = Endpoint(
                url="ws://localhost/floor/", unix_socket=where, compression=stack_endpoint.compression
            )
        else:
            self.endpoint = Endpoint(
                url=f"{scheme}://localhost:{where}/floor/",
                connect_host="127.0.0.1",
                cafile=cafile,
                compression=stack_endpoint.compression,
            )

    def sender_argv(self):
        return [sys.executable, "-m", "bench", "publish", "--redis-url", self.redis_url, "--channel", self.channel]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)
