"""nurcrm_ops.wsprotocol under a real uvicorn server: the socket works, the handshake is not kept, and a worker that
shuts down closes an open socket with 1012 and waits for the client's close frame before it drops the connection."""

import asyncio
import json

import pytest
import uvicorn
from websockets.asyncio.client import unix_connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame
from websockets.uri import parse_uri

from core.asgi import application
from nurcrm_ops.wsprotocol import SHUTDOWN_CLOSE_WAIT_S, WebSocketProtocol
from tests.conftest import ORIGIN, token_for

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


OURS = "nurcrm_ops.wsprotocol:WebSocketProtocol"


@pytest.fixture
async def server(request, tmp_path, redis_layer):
    """A real uvicorn on a unix socket, with our protocol unless a test parametrizes it (indirect)."""
    path = tmp_path / "asgi.sock"
    ws = getattr(request, "param", OURS)
    config = uvicorn.Config(application, uds=str(path), ws=ws, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        assert not serving.done(), serving
        await asyncio.sleep(0.02)
    yield server, path
    server.should_exit = True
    await serving


async def test_an_open_socket_keeps_no_handshake_and_still_works(server, tenant):
    server, path = server
    company, _, user = tenant
    url = f"ws://localhost/ws/cafe/tables/?token={token_for(user)}"
    async with unix_connect(str(path), url, origin=ORIGIN.decode()) as ws:
        assert json.loads(await ws.recv())["type"] == "connection_established"
        (protocol,) = server.server_state.connections
        assert isinstance(protocol, WebSocketProtocol)
        assert protocol.handshake_complete and protocol.request is None and protocol.response is None
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"


async def test_a_socket_without_a_token_is_closed_with_4401_as_before(server):
    server, path = server
    async with unix_connect(str(path), "ws://localhost/ws/cafe/tables/", origin=ORIGIN.decode()) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4401


@pytest.mark.parametrize(
    ("server", "waits"),
    [(OURS, True), ("websockets-sansio", False)],
    ids=["ours-waits", "uvicorns-drops"],
    indirect=["server"],
)
async def test_a_worker_shutting_down_waits_for_the_clients_close_frame(server, tenant, waits):
    """The client reads the 1012, and holds its reply: the connection must stay up until the reply is sent, so
    that a client writing as the worker stops is never reset before it reads the 1012 (it would see 1006)."""
    server, path = server
    client = ClientProtocol(parse_uri(f"ws://localhost/ws/cafe/tables/?token={token_for(tenant[2])}"))
    request = client.connect()
    request.headers["Origin"] = ORIGIN.decode()
    client.send_request(request)
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b"".join(client.data_to_send()))

    async def until(done):
        while not done():
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, "the server dropped the connection"
            client.receive_data(data)

    def hello():
        frames = [event for event in client.events_received() if isinstance(event, Frame)]
        return any(json.loads(frame.data)["type"] == "connection_established" for frame in frames)

    try:
        await until(hello)
        server.should_exit = True
        await until(lambda: client.close_rcvd is not None)
        assert client.close_rcvd.code == 1012 and client.close_sent is not None
        reply = b"".join(client.data_to_send())  # the client's close frame, held back
        try:
            early = await asyncio.wait_for(reader.read(1), SHUTDOWN_CLOSE_WAIT_S / 4)
        except TimeoutError:
            early = None  # still up, waiting for the reply
        assert (early is None) is waits, early
        if waits:
            writer.write(reply)
            assert await asyncio.wait_for(reader.read(), SHUTDOWN_CLOSE_WAIT_S / 4) == b""  # dropped on the reply
    finally:
        writer.close()
