"""The per-host check a rolling deploy waits for before a host returns to nginx's upstream.

    python -m nurcrm_ops.selfcheck --socket /home/nur/asgi.sock --host app.nurcrm.kg --workers 3 \\
        --release 3f2a9c1b7d4e --url '/ws/cafe/tables/?token={token}' -- nurcrm-manage issue_token --user demo

Run on an app host against this host's own gunicorn socket (not through nginx, which has the host marked
down meanwhile), once nurcrm-ready says that every worker serves the release. The token comes from the
command after `--` (run in the release as the app user, e.g. through nurcrm-manage): its last line of
output, which goes into the socket's URL where `{token}` is and nowhere else (no command line, no log).
Once per worker, on average (the socket spreads them), a WebSocket is opened and must be accepted; with
--hello its first frame must be of that type (and name the release, when it names one); with --ping that
frame is sent and a frame of type --pong must come back (other frames, the project's events, are skipped).
A handshake shed with 1013 (a worker busy with the reconnect storm of the clients this host just closed)
is tried again after a backoff with jitter, for --timeout seconds. Exits 1 with one line naming what
failed, 2 on bad arguments. Standard library only: it imports nothing of the project's.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
SHED = 1013


class Failed(Exception):
    """What failed, in one line."""


class Closed(Failed):
    def __init__(self, code):
        super().__init__(f"the socket was closed with {code}")
        self.code = code


class WebSocket:
    """A client WebSocket over a unix socket: text frames out (masked), text frames in, RFC 6455."""

    def __init__(self, path, host, url, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {url} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: https://{host}\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.read_some()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, *lines = head.decode("latin-1").split("\r\n")
        if status.split(" ", 2)[1:2] != ["101"]:
            raise Failed(f"the handshake was answered {status!r}, not 101")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()  # noqa: S324 (the RFC's)
        if headers.get("sec-websocket-accept") != accept:
            raise Failed("the handshake's Sec-WebSocket-Accept is wrong")

    def read_some(self):
        data = self.sock.recv(65536)
        if not data:
            raise Failed("the server closed the connection")
        return data

    def read(self, n):
        while len(self.buffer) < n:
            self.buffer += self.read_some()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, text, opcode=0x1):
        payload, mask = text.encode() if isinstance(text, str) else text, os.urandom(4)
        length = len(payload)
        head = bytes([0x80 | opcode])
        if length < 126:
            head += bytes([0x80 | length])
        elif length < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", length)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self):
        """The next text message; pings are answered, a close frame raises Closed with its code."""
        message = b""
        while True:
            first, second = self.read(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self.read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self.read(8))
            mask = self.read(4) if second & 0x80 else None
            payload = self.read(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x8:
                raise Closed(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005)
            if opcode == 0x9:
                self.send(payload, opcode=0xA)
            elif opcode in (0x0, 0x1, 0x2):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self):
        try:
            self.send(struct.pack("!H", 1000), opcode=0x8)
        except OSError:
            pass
        self.sock.close()


def token_of(command, timeout):
    """The last line the token command prints; Failed naming the command's own error line otherwise."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Failed(f"token command {command[0]}: {exc}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}, no output"])[-1]
        raise Failed(f"token command {' '.join(command[:2])}: {said}")
    return lines[-1].strip()


def check_one(args, token):
    ws = WebSocket(args.socket, args.host, args.url.replace("{token}", token), args.timeout)
    try:
        if args.hello:
            hello = json.loads(ws.recv())
            if hello.get("type") != args.hello:
                raise Failed(f"the first frame is {hello.get('type')!r}, not {args.hello}")
            if args.release and "release" in hello and hello["release"] != args.release:
                raise Failed(f"the hello says release {hello['release']!r}, not {args.release}")
        if args.ping:
            ws.send(args.ping)
            while (reply := json.loads(ws.recv())).get("type") not in (args.pong, "error"):
                pass  # the project's events, not replies
            if reply["type"] != args.pong:
                raise Failed(f"{args.ping} was answered with an error frame {reply.get('code')!r}, not {args.pong}")
    finally:
        ws.close()


def check_soon(args, token):
    """As a client does: a socket shed with 1013 is tried again after a backoff with jitter."""
    deadline, attempt = time.monotonic() + args.timeout, 0
    while True:
        try:
            return check_one(args, token)
        except Closed as closed:
            if closed.code != SHED or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0, min(2.0, 0.25 * 2**attempt)))  # noqa: S311 (jitter, not a secret)
        attempt += 1


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m nurcrm_ops.selfcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="gunicorn's unix socket")
    parser.add_argument("--host", required=True, help="the Host (and https:// Origin) of the handshake")
    parser.add_argument("--url", required=True, help="the WebSocket's path and query, {token} where the token goes")
    parser.add_argument("--workers", type=int, required=True, help="workers gunicorn runs: one handshake each")
    parser.add_argument("--release", default="", help="the release a hello that names one must name")
    parser.add_argument("--hello", default="", help="the type of the first frame (none checked when empty)")
    parser.add_argument("--ping", default="", help="a frame to send once open (none when empty)")
    parser.add_argument("--pong", default="pong", help="the type of the reply to --ping (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=10, help="seconds for each step (default: %(default)s)")
    parser.add_argument("token_command", nargs="*", help="after --: the command that prints a token")
    args = parser.parse_args(argv)
    if "{token}" in args.url and not args.token_command:
        parser.error("--url has {token}: give the command that prints one after --")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        token = token_of(args.token_command, args.timeout * 3) if args.token_command else ""
        for _ in range(args.workers):
            check_soon(args, token)
    except Failed as failed:
        print(f"selfcheck: socket {args.socket}: {failed}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # refused, timed out, not JSON: one line, not a traceback
        print(f"selfcheck: socket {args.socket}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    says = f"release {args.release}; " if args.release else ""
    print(
        f"ok: {args.workers} handshakes on {args.socket} accepted; {says}{args.hello or 'no hello checked'}"
        f"{', ' + args.pong if args.ping else ''}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
