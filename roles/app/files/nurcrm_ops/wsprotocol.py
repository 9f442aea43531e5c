"""uvicorn's WebSocket protocol (websockets, sans-I/O): without the handshake kept for the socket's life, and
with a closing handshake when the worker shuts down.

uvicorn keeps the handshake's request and response, headers and all, as attributes of the
connection for as long as it is open, though it never reads them again once the 101 has gone
out: about 4 KiB of every idle socket (bench/NOTES.md). The ASGI scope has its own copy of what
the app needs.

A worker that shuts down (`systemctl reload gunicorn`) closes each open socket with 1012, and
uvicorn drops the connection in the same instant. nginx then closes the client's connection;
a client writing at that moment (a keepalive ping, a frame) gets it reset and may never read
the 1012: it sees 1006, an abnormal closure (molecule/default/tests/test_9_releases.py saw one
among 300 screens). Here the worker waits for the client's close frame, as RFC 6455 has the
closing side do, at most SHUTDOWN_CLOSE_WAIT_S, and drops the connection then.

gunicorn's config points uvicorn's workers at this class (roles/asgi, `asgi_uvicorn`).
"""

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SHUTDOWN_CLOSE_WAIT_S = 2.0  # well inside gunicorn's graceful_timeout


class WebSocketProtocol(WebSocketsSansIOProtocol):
    request = response = None

    async def send(self, message):
        await super().send(message)
        if self.handshake_complete and self.response is not None:
            self.request = self.response = None

    def shutdown(self):
        if not self.handshake_complete or self.close_sent or self.transport.is_closing():
            super().shutdown()
            return
        # What uvicorn does for an app's `websocket.close`, with 1012: the client's reply (handle_close)
        # or the timer drops the connection.
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1012})
        self.conn.send_close(1012)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(SHUTDOWN_CLOSE_WAIT_S, self.transport.close)
