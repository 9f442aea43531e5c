"""The per-host check a rolling deploy waits for before a host returns to nginx's upstream.

    nurcrm-manage selfcheck --release 3f2a9c1b7d4e --workers 3

Run on an app host, as the app user, against this host's own gunicorn socket (not through nginx, which
has the host marked down meanwhile), once nurcrm-ready (roles/asgi/files) says that every worker serves
the release: WebSockets opened on the socket get `connection_established` of that release and answer
`{"action": "ping"}` with pong. It mints its token in-process (nothing on a command line or in a log),
writes nothing, and exits non-zero with one line naming the check that failed.
"""

import asyncio
import json
import random
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework_simplejwt.tokens import AccessToken
from websockets.asyncio.client import unix_connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 10
SHED = 1013  # a worker busy with a reconnect storm (the clients this host just closed): back off, try again


async def pong(ws):
    """The reply to ping: pong, or an error frame. The host is live, so its company's events (and a
    snapshot after a layer reset) may come first; they are not replies, and are skipped."""
    while (reply := json.loads(await ws.recv())).get("type") not in ("pong", "error"):
        pass
    if reply["type"] != "pong":
        raise CommandError(f"socket: ping was answered with error {reply.get('code')!r}, not pong")


class Command(BaseCommand):
    help = "Check that this host's gunicorn serves the release (a handshake per worker, ping)."

    def add_arguments(self, parser):
        parser.add_argument("--release", required=True, help="the release id every worker must run")
        parser.add_argument("--workers", type=int, required=True, help="workers gunicorn runs")
        parser.add_argument("--socket", default="/home/nur/asgi.sock", help="gunicorn's unix socket")
        parser.add_argument("--user", default="demo", help="the user whose token opens the sockets")

    def handle(self, *args, release, workers, socket, user, **options):
        account = get_user_model().objects.filter(username=user, is_active=True).first()
        if account is None:
            raise CommandError(f"socket: no active user named {user!r} to open a socket with (doctor_user)")
        token = str(AccessToken.for_user(account))
        for _ in range(workers):  # one handshake per worker, on average: the socket spreads them
            asyncio.run(self.socket_serves_soon(release, socket, token))
        self.stdout.write(f"ok: {workers} workers run release {release}; sockets get its hello and pong")

    @classmethod
    async def socket_serves_soon(cls, release, socket, token):
        """As a client does: a socket shed with 1013 is tried again after a backoff with jitter, for TIMEOUT s."""
        deadline, attempt = time.monotonic() + TIMEOUT, 0
        while True:
            try:
                return await cls.socket_serves(release, socket, token)
            except CommandError as error:
                if not (isinstance(error.__cause__, ConnectionClosed) and error.__cause__.rcvd) or (
                    error.__cause__.rcvd.code != SHED or time.monotonic() > deadline
                ):
                    raise
            await asyncio.sleep(random.uniform(0, min(2.0, 0.25 * 2**attempt)))
            attempt += 1

    @staticmethod
    async def socket_serves(release, socket, token):
        host = settings.ALLOWED_HOSTS[0]
        try:
            async with unix_connect(
                socket, f"ws://{host}/ws/cafe/tables/?token={token}", origin=f"https://{host}", open_timeout=TIMEOUT
            ) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                if hello.get("type") != "connection_established":
                    raise CommandError(f"socket: the first frame is {hello.get('type')!r}, not connection_established")
                if hello.get("release") != release:
                    raise CommandError(f"socket: the hello says release {hello.get('release')!r}, not {release}")
                await ws.send(json.dumps({"action": "ping"}))
                await asyncio.wait_for(pong(ws), TIMEOUT)
        except CommandError:
            raise
        except Exception as exc:  # refused, closed, timed out: one line, not a traceback
            raise CommandError(f"socket: {socket}: {type(exc).__name__}: {exc}") from exc
