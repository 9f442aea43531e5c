"""uvicorn's HTTP protocol (httptools) with a graceful shutdown that answers a connection accepted just before it.

When a worker shuts down gracefully (`systemctl reload gunicorn`: the old workers stop once new ones serve),
uvicorn closes every connection that has no request under way. A connection accepted a moment before,
whose request is in the socket's buffer but not yet parsed, is closed with that request unread: the kernel
resets it, and nginx answers 502, never retrying a request it already sent that is not idempotent (a
PATCH of a table, a POST of an order). Measured on one host: about 1 such request in 250 during a reload
(molecule/default/tests/test_9_releases.py). Here such a connection is served its one request with
`Connection: close` instead (a WebSocket handshake gets 503, which nginx retries on another worker); one that
sends nothing within FIRST_REQUEST_WAIT_S is closed as before. gunicorn's config points uvicorn's workers
at this class (roles/asgi, `asgi_uvicorn`).
"""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FIRST_REQUEST_WAIT_S = 1.0
BUSY = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HTTPProtocol(HttpToolsProtocol):
    requests = 0  # requests begun on this connection
    draining = False  # shut down before its first request: serve that one, then close

    def on_headers_complete(self):
        self.requests += 1
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def handle_websocket_upgrade(self):
        if self.draining:  # a socket opened now would outlive the worker: let nginx try another
            self.transport.write(BUSY)
            self.transport.close()
            return
        super().handle_websocket_upgrade()

    def shutdown(self):
        if self.cycle is None and self.requests == 0 and not self.transport.is_closing():
            self.draining = True
            self.loop.call_later(FIRST_REQUEST_WAIT_S, self._close_if_idle)
            return
        super().shutdown()

    def _close_if_idle(self):
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()
