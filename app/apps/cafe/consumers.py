"""The staff screens' socket: table and order events of one company, or one branch of it.

Only authorised sockets get here: apps.users.ws_auth refuses the others (4400/4401/4403)
before a consumer starts. A user's socket over WS_MAX_SOCKETS_PER_USER is closed with 4429, and
apps.users.ws_guard closes an open one whose token, user or lifetime lapsed (4401/4408). Every
bad frame gets {"type": "error", "code": ..., "message": ...} and the socket stays open; a
frame over the socket's message rate gets {"type": "error", "code": "rate_limited", ...}, and
WS_MESSAGE_FLOOD_CLOSE of them in a row close the socket with 1008 (policy violation).

Redis trouble never leaves a socket open but deaf: when Redis loses the layer's groups the
consumer rejoins and sends {"type": "tables_snapshot", "reason": "channel_layer_reset", ...}
(see core.layer_watch); when Redis stays unreachable the socket is closed with 1012 and the
client reconnects (see TableStatusConsumer.__call__).
"""

import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.cafe.groups import socket_group
from apps.cafe.models import Table
from apps.cafe.notifications import table_payload
from apps.users import ws_guard
from core import balance, fanout, layer_watch, metrics

logger = logging.getLogger(__name__)

CLOSE_FLOOD = 1008  # policy violation: WS_MESSAGE_FLOOD_CLOSE frames in a row over the rate
CLOSE_TRY_AGAIN = 1013  # the worker has WS_MAX_PENDING_HANDSHAKES handshakes under way: back off, reconnect


class TableStatusConsumer(AsyncWebsocketConsumer):
    # Class attributes stand in until a socket needs its own: an idle socket pays for none of them.
    is_open = False  # accepted and not yet disconnected
    joined = False  # in its group: whatever ends the consumer, it leaves the group
    outlet = None  # the pub/sub layer writes broadcasts straight to the socket (core.fanout)
    closing = False  # closed by the server: nothing more is sent or read
    allowance = None  # frames the socket may still send now (a token bucket), once it sent one
    allowance_at = 0.0  # loop time of the last refill
    over_rate = 0  # frames over the rate in a row
    handshaking = 0  # this worker's handshakes between connect() and the hello (one count per process)
    counted_as = None  # the company size bucket it is counted under in the open sockets, while open

    async def __call__(self, scope, receive, send):
        """Close with 1012 (service restart) when Redis stays unreachable; the client reconnects.

        RedisChannelLayer's receive retries a lost connection 3 times (about 0.7 s in all, see
        core.layers), then raises ConnectionError and ends the consumer; a handler's group_add
        does the same. The consumers of a worker share one blocking read, so in an outage they
        fail one after another, each after its retries: some close, the others stay and get a
        reset once Redis is back. The pub/sub layer's receive never raises (it reconnects
        by itself), so its sockets stay open. Uncaught, the error would end the socket with
        1011 and a traceback. Until Redis answers again, a new handshake fails (HTTP 500).
        """
        try:
            await super().__call__(scope, receive, send)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            metrics.REDIS_ERRORS.labels(where="consumer").inc()
            if not self.is_open:
                raise
            logger.warning("Redis unreachable (%s): closing the socket with 1012, the client reconnects", exc)
            await self.close(code=1012)
        finally:
            self._uncount()
            balance.closed(self)
            layer_watch.forget(self)
            self._drop_outlet()
            await self._leave_group()
            await ws_guard.forget(self)

    async def connect(self):
        """Shed load past WS_MAX_PENDING_HANDSHAKES: in a reconnect storm a worker answers the surplus at once
        with 1013 (the client backs off with jitter and comes back) instead of queueing every snapshot read
        until the handshakes time out. Accepted first: a close code needs an open socket."""
        cls = TableStatusConsumer
        if cls.handshaking >= settings.WS_MAX_PENDING_HANDSHAKES:
            logger.info("websocket shed with 1013: %d handshakes under way in this worker", cls.handshaking)
            metrics.HANDSHAKES.labels(outcome=str(CLOSE_TRY_AGAIN)).inc()
            await self.accept(self.scope.get("auth_subprotocol"))
            return await self.shut(CLOSE_TRY_AGAIN, "server busy, reconnect later")
        cls.handshaking += 1
        try:
            await self.open_socket()
        finally:
            cls.handshaking -= 1

    async def open_socket(self):
        user, branch = self.scope["user"], self.scope.get("branch")
        self.company_id, self.branch_id = user.company_id, branch.pk if branch else None
        # Counted (and watched by the guard) before it joins anything: a refused socket joins nothing.
        if not await ws_guard.admit(self):
            logger.info(
                "websocket refused with 4429: user %s has %d sockets open", user.pk, settings.WS_MAX_SOCKETS_PER_USER
            )
            metrics.HANDSHAKES.labels(outcome=str(ws_guard.CLOSE_TOO_MANY_SOCKETS)).inc()
            await self.accept(self.scope.get("auth_subprotocol"))
            return await self.shut(ws_guard.CLOSE_TOO_MANY_SOCKETS, "too many open sockets for this user")
        self.group = socket_group(self.company_id, self.branch_id)
        await layer_watch.watch(self)
        # Broadcasts from the join on queue in the outlet until the hello has gone out.
        register = getattr(self.channel_layer, "outlet", None)
        self.outlet = register(self) if register else None
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.joined = True
        # Joined before the snapshot is read, so no change falls between the two; read before
        # accepting, so that a worker stopping meanwhile answers the handshake (nginx retries it
        # on another worker) rather than closing an accepted socket before its snapshot.
        started = time.perf_counter()
        tables = await self._snapshot()
        metrics.SNAPSHOT_SECONDS.observe(time.perf_counter() - started)
        # The company's size, in the open sockets' metric: a company-wide snapshot holds all its tables.
        size = metrics.company_size(await self._company_tables() if self.branch_id else len(tables))
        hello = self.tables_message(
            "connection_established",
            release=settings.RELEASE,
            company_id=str(self.company_id),
            branch_id=str(self.branch_id) if self.branch_id else None,
            tables=tables,
        )
        await self.accept(self.scope.get("auth_subprotocol"))
        self.is_open = True
        balance.opened(self)
        metrics.HANDSHAKES.labels(outcome="accepted").inc()
        self.counted_as = size
        metrics.OPEN_SOCKETS.labels(company_size=self.counted_as).inc()
        await self.send_json(hello)
        if self.outlet:
            self.outlet.open()

    async def disconnect(self, code):
        self.is_open = False
        self._uncount()
        balance.closed(self)
        self._drop_outlet()
        await self._leave_group()

    async def shut(self, code, reason):
        """Close from the server's side, from any task: stop writing first, then send the close."""
        if self.closing:
            return
        self.closing = True
        self._drop_outlet()
        try:
            await self.close(code=code, reason=reason)
        except Exception as exc:  # gone already
            logger.debug("closing %s: %r", self.channel_name, exc)

    async def send(self, text_data=None, bytes_data=None, close=False):
        # A reply or event already on its way when the server closed the socket is dropped, not
        # sent after the close (which uvicorn would raise on).
        if not self.closing:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    def _uncount(self):
        if self.counted_as:
            metrics.OPEN_SOCKETS.labels(company_size=self.counted_as).dec()
            self.counted_as = None

    def _drop_outlet(self):
        if self.outlet:
            self.outlet = None
            self.channel_layer.drop_outlet(self)

    async def _leave_group(self):
        """A handshake that fails after the join (the client gone, the worker stopping, Redis
        lost) gets no disconnect: without this its channel would stay a member of the group."""
        if self.joined:
            self.joined = False
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                metrics.REDIS_ERRORS.labels(where="consumer").inc()
                logger.info("could not leave group %s (%s); the membership expires", self.group, exc)

    @staticmethod
    def tables_message(kind, tables, **fields):
        """A snapshot frame; read `tables` only after joining the group."""
        return {"type": kind, **fields, "server_time": timezone.now().isoformat(), "tables": tables}

    # --- Frames from the client -------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        if self._over_rate():
            if self.over_rate >= settings.WS_MESSAGE_FLOOD_CLOSE:
                logger.warning(
                    "closing socket %s with 1008: %d frames in a row over the rate", self.channel_name, self.over_rate
                )
                return await self.shut(CLOSE_FLOOD, "too many messages")
            return await self.send_error(
                "rate_limited",
                f"at most {settings.WS_MESSAGE_RATE} messages a second ({settings.WS_MESSAGE_BURST} at once); "
                "this one was dropped",
            )
        if text_data is None:
            return await self.send_error("binary_not_supported", "binary frames are not supported; send JSON text")
        if len(text_data.encode("utf-8", "surrogatepass")) > settings.WS_MAX_MESSAGE_BYTES:
            return await self.send_error(
                "message_too_large", f"messages are limited to {settings.WS_MAX_MESSAGE_BYTES} bytes"
            )
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            return await self.send_error("invalid_json", "the message is not valid JSON")
        if not isinstance(message, dict):
            return await self.send_error("invalid_message", "the message must be a JSON object")
        action = message.get("action")
        if action == "ping":
            return await self.send_json({"type": "pong", "server_time": timezone.now().isoformat()})
        return await self.send_error("unknown_action", "unknown action; supported: ping")

    def _over_rate(self):
        """Whether this frame exceeds the socket's rate: a token bucket of WS_MESSAGE_BURST frames,
        refilled at WS_MESSAGE_RATE a second, computed when a frame comes (no timer)."""
        now = asyncio.get_running_loop().time()
        burst = settings.WS_MESSAGE_BURST
        if self.allowance is None:
            allowance = burst
        else:
            allowance = min(burst, self.allowance + (now - self.allowance_at) * settings.WS_MESSAGE_RATE)
        self.allowance_at = now
        if allowance >= 1:
            self.allowance = allowance - 1
            if self.over_rate:
                self.over_rate = 0
            return False
        self.allowance = allowance
        self.over_rate += 1
        return True

    async def send_error(self, code, message):
        await self.send_json({"type": "error", "code": code, "message": message})

    # The consumer's own frames are counted here, one by one; the layer counts those it writes through an
    # outlet (core.layers), once per broadcast.
    async def send_json(self, content):
        await self.send_counted(json.dumps(content))

    async def send_counted(self, text):
        if not self.closing:
            await self.send(text_data=text)
            metrics.FRAMES_WRITTEN.inc()

    # --- Events from the channel layer (see apps.cafe.notifications) -----------------
    # Each sends {"type": "<handler>", "data": payload}. The sender encodes that frame once, as the
    # event's `text`, for every socket; an event without it (another sender) is encoded here.
    # With the pub/sub layer the frame mostly goes out through the outlet, without these handlers.
    async def table_status_changed(self, event):
        await self.send_event("table_status_changed", event)

    async def order_created(self, event):
        await self.send_event("order_created", event)

    async def order_updated(self, event):
        await self.send_event("order_updated", event)

    async def send_event(self, kind, event):
        await self.send_counted(fanout.frame(event))

    # --- Events from core.layer_watch --------------------------------------------------
    async def layer_reset(self, event):
        """Redis lost the groups: rejoin, then send what the client may have missed meanwhile."""
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json(
            self.tables_message("tables_snapshot", await self._snapshot(), reason="channel_layer_reset")
        )

    async def layer_rejoin(self, event):
        """Re-added before RedisChannelLayer's group_expiry drops a socket open for that long."""
        await self.channel_layer.group_add(self.group, self.channel_name)

    # --- Database ----------------------------------------------------------------------
    @database_sync_to_async
    def _snapshot(self):
        tables = Table.objects.filter(company_id=self.company_id)
        if self.branch_id:
            tables = tables.filter(branch_id=self.branch_id)
        return [table_payload(table) for table in tables]

    @database_sync_to_async
    def _company_tables(self):
        return Table.objects.filter(company_id=self.company_id).count()


class NoRouteConsumer(AsyncWebsocketConsumer):
    """Any other path under the WebSocket router: refuse the handshake (HTTP 403), say why in the log."""

    async def connect(self):
        logger.warning("no WebSocket route for path %s", self.scope.get("path"))
        await self.close()
