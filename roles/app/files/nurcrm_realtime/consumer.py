"""The base of a realtime socket: a Channels consumer whose socket survives Redis trouble, reloads and floods.

A project's consumer subclasses RealtimeConsumer and says only what is its own:

- `group_name()`: the group the socket joins (after the guard admitted it, before anything is read);
- `hello()`: the first frame, read after the join so that no change falls between the two, sent once the
  handshake is accepted (the reference project: `connection_established` with its tables);
- `resync()`: the frame that brings a socket up to date after Redis lost the layer's groups
  (layer_watch); None sends nothing;
- `forward_events`: the events it only forwards to the client as {"type": <type>, "data": <data>}.
  A handler is made for each; with the pub/sub layer the frame is encoded once per worker and written
  straight to the sockets (fanout);
- `act(action, message)`: the client's JSON frames with an "action" other than "ping"; by default an
  "unknown_action" error.

What every socket gets from it, with no code of the project's:

- past WS_MAX_PENDING_HANDSHAKES handshakes under way in the worker, the surplus is closed at once with
  1013 (the client backs off and comes back) instead of queueing until every handshake times out;
- the guard (guard): at most WS_MAX_SOCKETS_PER_USER sockets per user over all workers (4429); the socket
  closed with 4401 when its token expires or its user lapses, with 4408 after WS_MAX_LIFETIME;
- Redis unreachable for good: the socket is closed with 1012 (service restart) and the client reconnects,
  never left open but deaf; Redis lost the groups: the socket rejoins and gets `resync()` (layer_watch);
- spread over the app hosts (balance: a worker over its fair share closes its surplus with 1012);
- every bad frame gets {"type": "error", "code": ..., "message": ...} and the socket stays open; past
  WS_MESSAGE_RATE frames a second (WS_MESSAGE_BURST at once) a frame gets "rate_limited", and
  WS_MESSAGE_FLOOD_CLOSE of them in a row close the socket with 1008; {"action": "ping"} gets
  {"type": "pong", "server_time": ...};
- the metrics: handshakes by outcome, open sockets by tenant size (`tenant_size()`), frames written, the
  time the hello took to read.

The scope needs `user` (its `pk`), and may have `auth_expires` (the token's expiry, a Unix time) and
`auth_subprotocol` (the subprotocol to accept), as the project's authentication middleware sets them.
"""

import asyncio
import json
import logging
import time

from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nurcrm_realtime import balance, conf, fanout, guard, layer_watch, metrics

logger = logging.getLogger(__name__)

CLOSE_FLOOD = 1008  # policy violation: WS_MESSAGE_FLOOD_CLOSE frames in a row over the rate
CLOSE_SERVICE_RESTART = 1012  # Redis unreachable: reconnect
CLOSE_TRY_AGAIN = 1013  # the worker has WS_MAX_PENDING_HANDSHAKES handshakes under way: back off, reconnect


def _forwarder(kind):
    async def handler(self, event):
        await self.send_event(kind, event)

    handler.__name__ = handler.__qualname__ = kind
    handler.__doc__ = f'Forward the event to the client as {{"type": "{kind}", "data": ...}}.'
    return handler


class RealtimeConsumer(AsyncWebsocketConsumer):
    forward_events = ()

    # Class attributes stand in until a socket needs its own: an idle socket pays for none of them.
    group = None  # the group it joined
    is_open = False  # accepted and not yet disconnected
    joined = False  # in its group: whatever ends the consumer, it leaves the group
    outlet = None  # the pub/sub layer writes broadcasts straight to the socket (fanout)
    closing = False  # closed by the server: nothing more is sent or read
    allowance = None  # frames the socket may still send now (a token bucket), once it sent one
    allowance_at = 0.0  # loop time of the last refill
    over_rate = 0  # frames over the rate in a row
    handshaking = 0  # this worker's handshakes between connect() and the hello (one count per process)
    counted_as = None  # the tenant size bucket it is counted under in the open sockets, while open

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for kind in cls.__dict__.get("forward_events", ()):
            fanout.FORWARDED.add(kind)
            metrics.EVENTS_BROADCAST.labels(type=kind)  # exported at 0 before the first
            if kind not in cls.__dict__:
                setattr(cls, kind, _forwarder(kind))

    # --- What a project's consumer says -------------------------------------------------
    def group_name(self):
        raise NotImplementedError("a RealtimeConsumer names the group its socket joins (group_name)")

    async def hello(self):
        raise NotImplementedError("a RealtimeConsumer says what its first frame is (hello)")

    async def resync(self):
        return None

    async def tenant_size(self):
        """The size bucket the open socket is counted under (metrics.company_size); the hello was read."""
        return metrics.company_size(0)

    async def act(self, action, message):
        await self.send_error("unknown_action", "unknown action; supported: ping")

    # --- The socket's life ----------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        """Close with 1012 (service restart) when Redis stays unreachable; the client reconnects.

        RedisChannelLayer's receive retries a lost connection 3 times (about 0.7 s in all, see
        nurcrm_realtime.layers), then raises ConnectionError and ends the consumer; a handler's group_add
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
            await self.close(code=CLOSE_SERVICE_RESTART)
        finally:
            self._uncount()
            balance.closed(self)
            layer_watch.forget(self)
            self._drop_outlet()
            await self._leave_group()
            await guard.forget(self)

    async def connect(self):
        """Shed load past WS_MAX_PENDING_HANDSHAKES: in a reconnect storm a worker answers the surplus at once
        with 1013 (the client backs off with jitter and comes back) instead of queueing every hello's read
        until the handshakes time out. Accepted first: a close code needs an open socket."""
        cls = RealtimeConsumer
        if cls.handshaking >= conf.WS_MAX_PENDING_HANDSHAKES:
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
        # Counted (and watched by the guard) before it joins anything: a refused socket joins nothing.
        if not await guard.admit(self):
            logger.info(
                "websocket refused with 4429: user %s has %d sockets open",
                self.scope["user"].pk,
                conf.WS_MAX_SOCKETS_PER_USER,
            )
            metrics.HANDSHAKES.labels(outcome=str(guard.CLOSE_TOO_MANY_SOCKETS)).inc()
            await self.accept(self.scope.get("auth_subprotocol"))
            return await self.shut(guard.CLOSE_TOO_MANY_SOCKETS, "too many open sockets for this user")
        self.group = self.group_name()
        await layer_watch.watch(self)
        # Broadcasts from the join on queue in the outlet until the hello has gone out.
        register = getattr(self.channel_layer, "outlet", None)
        self.outlet = register(self) if register else None
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.joined = True
        # Joined before the hello is read, so no change falls between the two; read before accepting,
        # so that a worker stopping meanwhile answers the handshake (nginx retries it on another worker)
        # rather than closing an accepted socket before its hello.
        started = time.perf_counter()
        hello = await self.hello()
        metrics.SNAPSHOT_SECONDS.observe(time.perf_counter() - started)
        size = await self.tenant_size()
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

    # --- Frames from the client -------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        if self._over_rate():
            if self.over_rate >= conf.WS_MESSAGE_FLOOD_CLOSE:
                logger.warning(
                    "closing socket %s with 1008: %d frames in a row over the rate", self.channel_name, self.over_rate
                )
                return await self.shut(CLOSE_FLOOD, "too many messages")
            return await self.send_error(
                "rate_limited",
                f"at most {conf.WS_MESSAGE_RATE} messages a second ({conf.WS_MESSAGE_BURST} at once); "
                "this one was dropped",
            )
        if text_data is None:
            return await self.send_error("binary_not_supported", "binary frames are not supported; send JSON text")
        if len(text_data.encode("utf-8", "surrogatepass")) > conf.WS_MAX_MESSAGE_BYTES:
            return await self.send_error(
                "message_too_large", f"messages are limited to {conf.WS_MAX_MESSAGE_BYTES} bytes"
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
        return await self.act(action, message)

    def _over_rate(self):
        """Whether this frame exceeds the socket's rate: a token bucket of WS_MESSAGE_BURST frames,
        refilled at WS_MESSAGE_RATE a second, computed when a frame comes (no timer)."""
        now = asyncio.get_running_loop().time()
        burst = conf.WS_MESSAGE_BURST
        if self.allowance is None:
            allowance = burst
        else:
            allowance = min(burst, self.allowance + (now - self.allowance_at) * conf.WS_MESSAGE_RATE)
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
    # outlet (nurcrm_realtime.layers), once per broadcast.
    async def send_json(self, content):
        await self.send_counted(json.dumps(content))

    async def send_event(self, kind, event):
        """A forwarded event that came through the consumer's queue (not an outlet): encoded here."""
        await self.send_counted(fanout.frame(event))

    async def send_counted(self, text):
        if not self.closing:
            await self.send(text_data=text)
            metrics.FRAMES_WRITTEN.inc()

    # --- Events from layer_watch ---------------------------------------------------------
    async def layer_reset(self, event):
        """Redis lost the groups: rejoin, then send what the client may have missed meanwhile."""
        await self.channel_layer.group_add(self.group, self.channel_name)
        message = await self.resync()
        if message is not None:
            await self.send_json(message)

    async def layer_rejoin(self, event):
        """Re-added before RedisChannelLayer's group_expiry drops a socket open for that long."""
        await self.channel_layer.group_add(self.group, self.channel_name)
