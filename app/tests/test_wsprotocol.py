"""core.wsprotocol under a real uvicorn server: the socket works, the handshake is not kept."""

import asyncio
import json

import pytest
import uvicorn
from websockets.asyncio.client import unix_connect
from websockets.exceptions import ConnectionClosed

from core.asgi import application
from core.wsprotocol import WebSocketProtocol
from tests.conftest import ORIGIN, token_for

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def server(tmp_path, redis_layer):
    path = tmp_path / "asgi.sock"
    config = uvicorn.Config(
        application, uds=str(path), ws="core.wsprotocol:WebSocketProtocol", lifespan="off", log_config=None
    )
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
