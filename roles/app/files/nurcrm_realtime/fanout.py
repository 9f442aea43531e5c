"""Broadcasts written straight to a worker's sockets: one decode per worker, no task per socket.

Channels hands every group message to every member through the member's own queue: a task
wakes to read it, decodes it, `await_many_dispatch` waits on it and starts the next read, the
handler encodes the frame. For a broadcast to every screen of a company that is about 25 µs of
bookkeeping per socket, repeated for each socket (bench/: at 3,000 sockets and 5 events a
second it was most of two cores).

Here a socket that wants its group's broadcasts straight registers an `Outlet` with the layer
(nurcrm_realtime.layers.RedisPubSubChannelLayer). The layer decodes a group message once; when it is an event
the consumer only forwards (FORWARDED), it encodes the event's frame once, for every member, and
writes it to each registered member's socket at once, from the layer's reader, without waking the
consumer. Whoever sent the event (the app's notifications, an operator's shell, any other code)
takes this path:

- A write normally completes without suspending (uvicorn writes to the transport and returns).
  It runs eagerly: `Outlet.put` steps the send until it first suspends. Only a socket whose
  transport is full suspends; its send then goes on in a task of its own, and later frames
  queue behind it, in order. One slow client never holds up the others.
- Before `open()` (the consumer is still connecting) frames queue: the client gets its hello
  first, then every event since it joined, in order.
- A socket that falls `BACKLOG` frames behind is closed with 1013 (try again later); its
  client reconnects and gets a fresh snapshot. Nothing is dropped silently.

Other messages (any other type, anything sent to the socket's own channel) go through the
consumer's queue as before.
"""

import asyncio
import collections
import json
import logging
import types

from nurcrm_realtime import metrics

logger = logging.getLogger(__name__)

BACKLOG = 100  # as RedisChannelLayer's channel capacity
# The events the consumers of this process only forward, each as {"type": <type>, "data": <data>}: what
# their classes name in `forward_events` (nurcrm_realtime.consumer).
FORWARDED = set()


def frame(message):
    """The text frame of an event the consumer only forwards ({"type": "order.created", "data": ...}
    gives '{"type": "order_created", "data": ...}'); None for any other message."""
    kind = str(message.get("type", "")).replace(".", "_")
    if kind not in FORWARDED or "data" not in message:
        return None
    return json.dumps({"type": kind, "data": message["data"]})


class Outlet:
    """One socket's end of the fast path: `put(text)` writes a text frame, in order, never blocking."""

    __slots__ = ("consumer", "backlog", "task", "closed")

    def __init__(self, consumer):
        self.consumer = consumer
        self.backlog = collections.deque()  # not None while connecting or while a send is suspended
        self.task = None
        self.closed = False

    def put(self, text):
        """Whether the frame was taken: written, or queued behind the frames before it."""
        if self.closed:
            return False
        if self.backlog is None:
            return self._send_now(text)
        if len(self.backlog) < BACKLOG:
            self.backlog.append(text)
            return True
        self._overflow()
        return False

    def open(self):
        """The consumer has sent its hello: write what queued meanwhile, then write at once."""
        if self.task is not None or self.closed:
            return
        if self.backlog:
            self._continue(None)
        else:
            self.backlog = None

    def close(self):
        """The socket is gone: drop what is queued, stop a suspended send."""
        self.closed = True
        self.backlog = None
        if self.task is not None:
            self.task.cancel()

    def _send_now(self, text):
        send = self.consumer.send(text_data=text)
        try:
            waiting_for = send.send(None)
        except StopIteration:
            return True  # written
        except Exception as exc:
            send.close()
            self._failed(exc)
            return False
        self.backlog = collections.deque()
        self._continue((send, waiting_for))
        return True

    def _continue(self, started):
        self.task = asyncio.ensure_future(self._drain(started))

    async def _drain(self, started):
        """Finish the send `started` (a coroutine and what it waits for), then write the backlog."""
        try:
            if started is not None:
                send, waiting_for = started
                try:
                    await _Resumed(send, waiting_for)
                finally:
                    send.close()  # a no-op once it has ended; ends it if this task was cancelled first
            while self.backlog:
                await self.consumer.send(text_data=self.backlog.popleft())
            if not self.closed:
                self.backlog = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
        finally:
            self.task = None

    def _failed(self, exc):
        # The socket closed under the write: the consumer gets its disconnect and unregisters.
        logger.debug("broadcast to %s not written: %r", self.consumer.channel_name, exc)
        self.closed = True
        self.backlog = None

    def _overflow(self):
        logger.warning(
            "socket %s is %d broadcasts behind: closing it with 1013, the client reconnects",
            self.consumer.channel_name,
            BACKLOG,
        )
        metrics.BACKLOG_CLOSES.inc()
        self.close()
        asyncio.ensure_future(_close(self.consumer, 1013))


async def _close(consumer, code):
    try:
        await consumer.close(code=code)
    except Exception as exc:  # gone already
        logger.debug("closing %s: %r", consumer.channel_name, exc)


@types.coroutine
def _Resumed(coro, waiting_for):  # noqa: N802 (awaited like a class)
    """Await the rest of `coro`, which has already run up to its first suspension, on `waiting_for`."""
    while True:
        try:
            value = yield waiting_for
        except BaseException as exc:  # a cancel, thrown into the task: pass it on
            try:
                waiting_for = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting_for = coro.send(value)
            except StopIteration as stop:
                return stop.value
