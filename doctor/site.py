"""The deployment as a client sees it: name resolution, TLS, the WebSocket handshake, a session."""

import asyncio
import http.client
import io
import json
import socket
import ssl
import tempfile
import time
import urllib.error
from dataclasses import dataclass
from datetime import UTC, datetime

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

WS_PATH = "/ws/cafe/tables/"  # the production note's; a server of other paths: --ws-path, or doctor_ws_path


@dataclass
class Site:
    server_name: str
    port: int
    origin: str
    cafile: str | None = None  # a CA the inventory vouches for (doctor_cafile), or its self-signed certificate
    address: str | None = None  # where the public name points for this client (doctor_connect_address), else DNS
    ws_path: str = WS_PATH

    @classmethod
    def trusting(cls, server_name, port, origin, certificate_pem=None, cafile=None, address=None, ws_path=WS_PATH):
        """A site whose certificate is checked against `certificate_pem` (a self-signed one the inventory made on
        purpose), else `cafile` (a CA the operator names), else the system's CA store."""
        if certificate_pem:
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as pem:
                pem.write(certificate_pem)
            cafile = pem.name
        return cls(server_name, port, origin, cafile, address, ws_path)

    @property
    def netloc(self):
        return self.server_name if self.port == 443 else f"{self.server_name}:{self.port}"

    @property
    def host(self):
        """What a client connects to: the pinned address, or the name (resolved by DNS)."""
        return self.address or self.server_name

    @property
    def ipv4(self):
        """The site's IPv4 address, for a client that binds an IPv4 source of its own."""
        return self.address or socket.getaddrinfo(self.server_name, self.port, socket.AF_INET)[0][4][0]

    def url(self, path=None, scheme="wss"):
        return f"{scheme}://{self.netloc}{path or self.ws_path}"

    def tls_context(self):
        return ssl.create_default_context(cafile=self.cafile)

    def connect(self, timeout=5, source=None):
        """A TLS connection to the site, the name in SNI and in the certificate check."""
        raw = socket.create_connection((self.host, self.port), timeout=timeout, source_address=source)
        return self.tls_context().wrap_socket(raw, server_hostname=self.server_name)


def tls_facts(site, timeout=5):
    """Where the name resolves, and the certificate a verifying client gets (or why it gets none)."""
    facts = {"addresses": [], "error": None, "pinned": bool(site.address)}
    try:
        infos = socket.getaddrinfo(site.host, site.port, type=socket.SOCK_STREAM)
        facts["addresses"] = sorted({info[4][0] for info in infos})
    except OSError as exc:
        facts["error"] = f"{site.server_name} does not resolve: {exc}"
        return facts
    try:
        with site.connect(timeout) as tls:
            cert = tls.getpeercert()
            facts["protocol"] = tls.version()
        not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
        facts["not_after"] = not_after.isoformat()
        facts["days_left"] = (not_after - datetime.now(UTC)).days
        facts["issuer"] = dict(item[0] for item in cert.get("issuer", ()))
    except ssl.SSLCertVerificationError as exc:
        facts["error"] = f"certificate rejected: {exc.verify_message}"
    except (OSError, ssl.SSLError) as exc:
        facts["error"] = f"TLS connection to {site.netloc} failed: {exc}"
    return facts


def handshake(site, timeout=5):
    """Send a WebSocket upgrade without a token; the status line nginx answers with."""
    request = (
        f"GET {site.ws_path} HTTP/1.1\r\nHost: {site.server_name}\r\nOrigin: {site.origin}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: bnVyY3JtLWRvY3Rvci0xMg==\r\n\r\n"
    )
    try:
        with site.connect(timeout) as tls:
            tls.sendall(request.encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                head += chunk
            status_line = head.split(b"\r\n", 1)[0].decode("latin1")
            parts = status_line.split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            if status == 101:
                _close(tls)
    except (OSError, ssl.SSLError) as exc:
        return {"status": None, "error": str(exc)}
    return {"status": status, "status_line": status_line, "error": None if status else f"no HTTP answer: {head[:80]!r}"}


# A client's close frame (RFC 6455 5.5.1): FIN + close, masked (as a client's must be), status 1000.
CLOSE_MASK = b"\x6e\x75\x72\x21"
CLOSE_FRAME = (
    b"\x88\x82" + CLOSE_MASK + bytes(a ^ b for a, b in zip((1000).to_bytes(2, "big"), CLOSE_MASK, strict=False))
)


def _close(tls, wait=2):
    """Close an upgraded connection as a client does: a close frame, then what the server sends until it closes
    (at most `wait` seconds). Dropped without it, a consumer that writes (its close code, a hello) meets a closed
    transport, and its ASGI server logs the error the walk then reads as the app's."""
    tls.settimeout(wait)
    try:
        tls.sendall(CLOSE_FRAME)
        while tls.recv(4096):
            pass
    except (OSError, ssl.SSLError):
        pass


async def _session(site, token, send, timeout):
    facts = {"hello": None, "close_code": None, "close_reason": None, "pong_ms": None, "event": None}
    facts["token"] = bool(token)
    try:
        async with connect(
            site.url() + (f"?token={token}" if token else ""),
            origin=site.origin,
            ssl=site.tls_context(),
            open_timeout=timeout,
            host=site.host,
            server_hostname=site.server_name,
        ) as ws:
            facts["hello"] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if not token:  # a consumer that answers a socket without a token: what it sends first is enough
                return facts
            started = time.monotonic()
            await ws.send(json.dumps({"action": "ping"}))
            pong = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            facts["pong_ms"] = round((time.monotonic() - started) * 1000, 1) if pong.get("type") == "pong" else None
            if facts["hello"].get("type") == "connection_established":
                sending = asyncio.create_task(asyncio.to_thread(send, facts["hello"]))
                started = time.monotonic()
                try:
                    while True:
                        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                        if message.get("type") == "table_status_changed":
                            facts["event"] = message
                            facts["event_ms"] = round((time.monotonic() - started) * 1000, 1)
                            break
                except TimeoutError:
                    pass
                facts["send"] = await sending
    except ConnectionClosed as closed:
        if closed.rcvd:
            facts["close_code"], facts["close_reason"] = closed.rcvd.code, closed.rcvd.reason
    except InvalidStatus as exc:
        facts["http_status"] = exc.response.status_code
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        facts["error"] = f"{type(exc).__name__}: {exc}"
    return facts


def session(site, token, send, timeout=5):
    """Connect with the token, ping, have `send(hello)` run on the host, wait for the event; without a token,
    connect and take the consumer's first answer (a close code, most likely)."""
    return asyncio.run(_session(site, token, send, timeout))


# --- A client of the site, for the scenario tests ------------------------------------
class _SiteConnection(http.client.HTTPSConnection):
    """HTTPS to the site's address, the public name in SNI, the certificate check and Host."""

    def __init__(self, site, timeout):
        super().__init__(site.server_name, site.port, timeout=timeout, context=site.tls_context())
        self.site = site

    def connect(self):
        self.sock = self.site.connect(self.timeout)


def request(site, method, path, token=None, body=None):
    """An HTTPS request to the site; (status, JSON body). An answer of 400 or more raises urllib's HTTPError."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    connection = _SiteConnection(site, timeout=10)
    try:
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    if response.status >= 400:
        url = site.url(path, scheme="https")
        raise urllib.error.HTTPError(url, response.status, response.reason, response.headers, io.BytesIO(payload))
    return response.status, json.loads(payload or b"null")


def socket_to(site, query="", **options):
    """A WebSocket to the site's /ws/cafe/tables/; `options` go to websockets' connect (local_addr=, ...)."""
    url = site.url() + (f"?{query}" if query else "")
    options = {"host": site.host, "server_hostname": site.server_name, **options}
    return connect(url, origin=site.origin, ssl=site.tls_context(), open_timeout=10, **options)


async def receive(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def next_of_type(ws, wanted, timeout=10):
    """Messages until one of type `wanted`; the others seen on the way come back too."""
    seen, deadline = [], time.monotonic() + timeout
    while True:
        message = await receive(ws, timeout=max(0.1, deadline - time.monotonic()))
        if message["type"] == wanted:
            return message, seen
        seen.append(message)
