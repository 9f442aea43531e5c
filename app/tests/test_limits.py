"""Resource limits: each socket's message rate, open sockets per user over all workers, an order's items.

The rate and the socket cap are also run against the real server (gunicorn with 3 uvicorn workers,
redis-server): the cap is one count for all workers."""

import asyncio
import json

import pytest
import redis
from websockets.exceptions import ConnectionClosed

from tests.conftest import connect_ok, socket_to, token_for
from tests.localstack import LocalStack

pytestmark = pytest.mark.django_db(transaction=True)

RATE, BURST, FLOOD = 10, 20, 50  # the defaults of WS_MESSAGE_RATE, WS_MESSAGE_BURST, WS_MESSAGE_FLOOD_CLOSE
PING = {"action": "ping"}


async def replies(ws, count):
    return [await ws.receive_json_from(timeout=5) for _ in range(count)]


# --- Message rate ----------------------------------------------------------------------------------------


async def test_frames_over_the_burst_get_a_rate_limited_error_and_the_socket_stays_open(tenant):
    """21 pings at once: 20 pongs, then {"type": "error", "code": "rate_limited"}; 0.3 s later (3 frames'
    worth at 10 a second) pings get pongs again."""
    async with socket_to(token=token_for(tenant[2])) as ws:
        await connect_ok(ws)
        for _ in range(BURST + 1):
            await ws.send_json_to(PING)
        answers = await replies(ws, BURST + 1)
        assert [a["type"] for a in answers] == ["pong"] * BURST + ["error"]
        assert answers[-1]["code"] == "rate_limited" and "10 messages a second" in answers[-1]["message"]
        await asyncio.sleep(0.3)
        for _ in range(2):
            await ws.send_json_to(PING)
        assert [a["type"] for a in await replies(ws, 2)] == ["pong", "pong"]


async def test_a_client_within_the_rate_is_never_limited(tenant):
    """A ping every 0.12 s (8 a second) for 30 pings, after a full burst: never an error."""
    async with socket_to(token=token_for(tenant[2])) as ws:
        await connect_ok(ws)
        for _ in range(30):
            await ws.send_json_to(PING)
            assert (await ws.receive_json_from(timeout=5))["type"] == "pong"
            await asyncio.sleep(0.12)


async def test_a_sustained_flood_is_closed_with_1008(tenant):
    """Frames sent as fast as they go: 20 pongs, then rate_limited errors, then after 50 frames in a row
    over the rate the socket is closed with 1008 (policy violation)."""
    async with socket_to(token=token_for(tenant[2])) as ws:
        await connect_ok(ws)
        for _ in range(BURST + FLOOD + 10):
            await ws.send_to(text_data='{"action": "ping"}')
        outputs = []
        while not outputs or outputs[-1]["type"] != "websocket.close":
            outputs.append(await ws.receive_output(timeout=5))
    frames = [json.loads(output["text"]) for output in outputs[:-1]]
    assert [f["type"] for f in frames[:BURST]] == ["pong"] * BURST
    assert {f.get("code") for f in frames[BURST:]} == {"rate_limited"} and len(frames) - BURST >= FLOOD - 1
    assert (outputs[-1]["code"], outputs[-1]["reason"]) == (1008, "too many messages")


# --- Orders -------------------------------------------------------------------------------------------------


def order(api, user, items):
    return api(user).post("/api/cafe/orders/", {"items": items}, format="json")


def item(quantity=1, price="10.00", name="Plov"):
    return {"name": name, "quantity": quantity, "price": price}


@pytest.mark.parametrize(
    "items,message",
    [
        ([item()] * 101, "no more than 100 elements"),
        ([item(quantity=1001)], "less than or equal to 1000"),
        ([item(quantity=0)], "greater than or equal to 1"),
        ([item(price="1000000.01")], "less than or equal to 1000000"),
        ([item(price="-0.01")], "greater than or equal to 0"),
        ([item(price="NaN")], "valid number"),
        ([item(price="1e400")], "no more than 10 digits"),
        ([item(quantity=1000, price="1000000")] * 11, "is over 9999999999.99"),
        ([item(name="x" * 201)], "no more than 200 characters"),
        ({"name": "Plov"}, "Expected a list"),
    ],
    ids=["101-items", "quantity-1001", "quantity-0", "price-over", "price-negative", "price-nan",
         "price-huge", "total-over-its-column", "long-name", "not-a-list"],
)  # fmt: skip
def test_an_order_with_items_out_of_bounds_is_a_400_saying_which(api, tenant, items, message):
    response = order(api, tenant[2], items)
    assert response.status_code == 400, response.content
    assert message in json.dumps(response.json()["items"])


def test_an_order_at_every_bound_is_accepted(api, tenant):
    """100 items of 1000 at 99,999.99: a total of 9,999,999,000.00, which its column holds."""
    response = order(api, tenant[2], [item(quantity=1000, price="99999.99")] * 100)
    assert response.status_code == 201, response.content
    assert response.json()["total"] == "9999999000.00"


# --- The real server ------------------------------------------------------------------------------------------

CAP = 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    stack = LocalStack(tmp_path_factory.mktemp("limits"), redis_server, WS_MAX_SOCKETS_PER_USER=str(CAP))
    stack.token = stack.manage("issue_token", "--user", "demo").strip()
    stack.demo_id = stack.manage(
        "shell",
        "--verbosity",
        "0",
        "-c",
        "from apps.users.models import User; print(User.objects.get(username='demo').pk)",
    ).strip()
    yield stack
    stack.stop()


async def first_frame(ws):
    try:
        return json.loads(await asyncio.wait_for(ws.recv(), 5))["type"]
    except ConnectionClosed as closed:
        return closed.rcvd.code


@pytest.mark.slow
@pytest.mark.redis
async def test_a_user_gets_the_cap_of_sockets_over_all_workers_and_one_more_is_closed_with_4429(stack, redis_server):
    """WS_MAX_SOCKETS_PER_USER=4 on three workers: four sockets open, the fifth is closed with 4429; once one
    closes, a new one opens; when all are closed the user's count in Redis is empty."""
    count_key = f"{stack.env['CHANNEL_LAYER_PREFIX']}:nurcrm:sockets:{stack.demo_id}"
    client = redis.Redis.from_url(redis_server)
    sockets = [await stack.connect(f"token={stack.token}") for _ in range(CAP)]
    try:
        assert [await first_frame(ws) for ws in sockets] == ["connection_established"] * CAP
        assert client.zcard(count_key) == CAP
        async with stack.connect(f"token={stack.token}") as extra:
            assert await first_frame(extra) == 4429
        await sockets.pop().close()
        await asyncio.sleep(0.2)
        sockets.append(await stack.connect(f"token={stack.token}"))
        assert await first_frame(sockets[-1]) == "connection_established"
    finally:
        for ws in sockets:
            await ws.close()
    await asyncio.sleep(0.2)
    assert client.zcard(count_key) == 0


@pytest.mark.slow
@pytest.mark.redis
async def test_a_flood_on_the_real_server_is_closed_with_1008_and_another_socket_keeps_working(stack):
    """300 frames as fast as the client sends them, on the default limits: 20 pongs, rate_limited errors,
    then 1008; the same user's other socket answers its ping throughout."""
    async with stack.connect(f"token={stack.token}") as calm, stack.connect(f"token={stack.token}") as flood:
        assert await first_frame(calm) == await first_frame(flood) == "connection_established"
        for _ in range(300):
            try:
                await flood.send('{"action": "ping"}')
            except ConnectionClosed:
                break
        kinds = []
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(flood.recv(), 5))
                kinds.append(frame.get("code", frame["type"]))
        except ConnectionClosed as closed:
            code = closed.rcvd.code
        await calm.send('{"action": "ping"}')
        assert json.loads(await asyncio.wait_for(calm.recv(), 5))["type"] == "pong"
    assert code == 1008
    assert kinds[:BURST] == ["pong"] * BURST and set(kinds[BURST:]) == {"rate_limited"}
