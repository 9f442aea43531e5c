"""uvicorn's WebSocket protocol (websockets, sans-I/O) without the handshake kept for the socket's life.

uvicorn keeps the handshake's request and response, headers and all, as attributes of the
connection for as long as it is open, though it never reads them again once the 101 has gone
out: about 4 KiB of every idle socket (bench/NOTES.md). The ASGI scope has its own copy of what
the app needs. gunicorn's config points uvicorn's workers at this class (roles/asgi,
`asgi_uvicorn`).
"""

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class WebSocketProtocol(WebSocketsSansIOProtocol):
    request = response = None

    async def send(self, message):
        await super().send(message)
        if self.handshake_complete and self.response is not None:
            self.request = self.response = None
