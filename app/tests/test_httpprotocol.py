"""nurcrm_ops.httpprotocol under a real uvicorn server: a connection accepted just before a graceful shutdown, whose
request arrives after it began, is answered; uvicorn's own protocol drops it (nginx would answer 502)."""

import asyncio

import pytest
import uvicorn


async def ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def request_across_shutdown(tmp_path, http):
    """Connect, let the server begin its graceful shutdown, then send the request: what comes back."""
    path = tmp_path / "asgi.sock"
    server = uvicorn.Server(uvicorn.Config(ok, uds=str(path), http=http, lifespan="off", log_config=None))
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    reader, writer = await asyncio.open_unix_connection(str(path))
    await asyncio.sleep(0.1)  # accepted
    server.should_exit = True
    await asyncio.sleep(0.3)  # uvicorn looks every 0.1 s, then shuts its connections down
    try:
        writer.write(b"PATCH / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError as error:
        answer = type(error).__name__.encode()
    finally:
        writer.close()
        await asyncio.wait_for(serving, 10)
    return answer


@pytest.mark.parametrize(
    ("http", "answered"),
    [("nurcrm_ops.httpprotocol:HTTPProtocol", True), ("httptools", False)],
    ids=["ours-answers", "uvicorns-drops"],
)
async def test_a_request_that_arrives_as_the_worker_shuts_down(tmp_path, http, answered):
    answer = await request_across_shutdown(tmp_path, http)
    assert answer.startswith(b"HTTP/1.1 200") is answered, answer[:80]
    if answered:
        assert b"connection: close" in answer.lower() and b"\r\nok\r\n" in answer
