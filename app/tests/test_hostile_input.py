"""Hostile clients against the real local stack (gunicorn with 3 uvicorn workers on a unix socket,
redis-server on loopback, SQLite, seed_demo, issue_token): malformed frames, forged tokens, oversized frames."""

import asyncio
import base64
import json
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote_plus, urlencode

import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from apps.cafe.management.commands.seed_demo import DEMO_BRANCHES
from tests.localstack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.redis]

APP_DIR = Path(__file__).resolve().parent.parent
WORKERS = 3
WS_MAX_MESSAGE_BYTES = 65536  # the app's default, which the stack below runs with
UVICORN_WS_MAX_SIZE = 16 * 1024 * 1024  # uvicorn's default ws_max_size
SEED = 20240611
DEMO_BRANCH_IDS = [str(branch_id) for branch_id, _ in DEMO_BRANCHES.values()]
SERVER_ERRORS = ("Traceback", "Exception in ASGI application", "Worker exited", "Booting worker")

RIVALS = """
from apps.users.models import Branch, Company, User
rival = Company.objects.create(name="Rival Cafe")
Branch.objects.create(company=rival, name="Rival hall")
User.objects.create_user("rival", company=rival)
User.objects.create_user("loner")
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    """The stack of test_local_run.py, plus a rival company's user, a user without company, and tokens.
    Its message rate is out of reach: here every frame must get its own reply (test_limits.py tests the rate)."""
    unlimited = {"WS_MESSAGE_RATE": "1000000", "WS_MESSAGE_BURST": "1000000"}
    stack = LocalStack(tmp_path_factory.mktemp("hostile"), redis_server, workers=WORKERS, **unlimited)
    stack.manage("shell", "-c", RIVALS)
    with ThreadPoolExecutor(4) as pool:
        minted = pool.map(
            lambda args: stack.manage("issue_token", "--user", *args).strip(),
            [("demo",), ("demo", "--ttl", "-60"), ("rival",), ("loner",)],
        )
        stack.tokens = dict(zip(("demo", "expired", "rival", "loner"), minted, strict=True))
    yield stack
    stack.stop()


def log_marks(stack):
    return [path.stat().st_size for path in stack.logs]


def server_errors_since(stack, marks):
    """Lines that tell of a failed request or a dead worker, logged after `marks` (see log_marks)."""
    lines = []
    for path, mark in zip(stack.logs, marks, strict=True):
        with open(path, "rb") as f:
            f.seek(mark)
            lines += f.read().decode(errors="replace").splitlines()
    return [line for line in lines if any(error in line for error in SERVER_ERRORS)]


def workers(stack):
    return sorted(stack.worker_pids())


async def established(ws):
    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert hello["type"] == "connection_established", hello
    return hello


async def ping_pong(ws):
    await ws.send('{"action": "ping"}')
    reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply["type"] == "pong", reply


# --- Frames ------------------------------------------------------------------------------------------------
# Each maker returns (frame, expected): a str is a text frame, bytes a binary one; expected is "pong" or the
# error code the app documents for it.

UNICODE = "aZ09 _-\"'\\{}[]:,\t\n\x00\x07\x1f\x7f é€ЖЪ中文한국어🙂🍵\U0010fffd\ufeff\u200b\u2028"


def _text(rng, n):
    return "".join(rng.choice(UNICODE) for _ in range(n))


def _padded(head, size, filler="a"):
    """A JSON object `{head..., "pad": "<filler...>"}` of exactly `size` UTF-8 bytes (filler of 1 or 3 bytes)."""
    shell = "{" + head + ', "pad": ""}'
    room = size - len(shell.encode())
    width = len(filler.encode())
    body = filler * (room // width) + "a" * (room % width)
    frame = "{" + head + ', "pad": "' + body + '"}'
    assert len(frame.encode()) == size
    return frame


def bad_json(rng):
    frame = rng.choice(
        [
            lambda: "{\x01" + _text(rng, rng.randint(0, 300)),
            lambda: "{" + _text(rng, rng.randint(1, 300)).replace('"', "").replace("}", "") + "x",
            lambda: '{"action": "ping"'[: rng.randint(1, 16)],
            lambda: '{"action": ping}',
            lambda: "{'action': 'ping'}",
            lambda: '{"action": "ping",}',
            lambda: '{"action": "ping"}}',
            lambda: '{"action": "ping"} {"action": "ping"}',
            lambda: "",
            lambda: " \t\r\n",
            lambda: "\x00",
            lambda: "\ufeff" + '{"action": "ping"}',
            lambda: '"unterminated',
            lambda: "[" * rng.randint(1, 60000),
            lambda: "[" * 30000 + "]" * 30000,
            lambda: '{"a":' * 10000 + "{}" + "}" * 10000,
            lambda: '{"action": "ping", "x": ' + "[" * 20000 + "]" * 20000 + "}",
        ]
    )()
    return frame, "invalid_json"


def not_an_object(rng):
    frame = rng.choice(
        [
            "1",
            "-0.5e10",
            "[]",
            '[{"action": "ping"}]',
            "null",
            "true",
            '"ping"',
            "NaN",
            "-Infinity",
            str(rng.randint(-(10**30), 10**30)),
            json.dumps(_text(rng, rng.randint(0, 100))),
            "[" * 50 + "]" * 50,
        ]
    )
    return frame, "invalid_message"


def unknown_action(rng):
    action = rng.choice(
        ["PING", "ping ", " ping", "pIng", "ping\x00", "pong", "subscribe", "", None, 1, True, ["ping"], {"a": 1}]
        + [_text(rng, rng.randint(1, 40))]
    )
    frame = rng.choice(
        [
            lambda: json.dumps({"action": action}),
            lambda: json.dumps({"action": action, "data": {"table": str(uuid.UUID(int=rng.getrandbits(128)))}}),
            lambda: "{}",
            lambda: '{"Action": "ping"}',
            lambda: '{"a":' * 100 + "{}" + "}" * 100,
        ]
    )()
    return frame, "unknown_action"


def big_below_limit(rng):
    size = rng.choice([rng.randint(1000, WS_MAX_MESSAGE_BYTES), WS_MAX_MESSAGE_BYTES])
    if rng.random() < 0.5:
        return _padded('"action": "ping"', size, rng.choice("a€")), "pong"
    return _padded('"action": "upload"', size, rng.choice("a€")), "unknown_action"


def big_above_limit(rng):
    size = rng.choice(
        [WS_MAX_MESSAGE_BYTES + 1, WS_MAX_MESSAGE_BYTES + 2, rng.randint(WS_MAX_MESSAGE_BYTES + 1, 2 * 1024 * 1024)]
    )
    kind = rng.random()
    if kind < 0.4:  # would be a valid ping, if it were short enough
        return _padded('"action": "ping"', size, rng.choice("a€")), "message_too_large"
    if kind < 0.7:  # 21,846 characters, 65,538 bytes: the limit counts bytes, not characters
        return "€" * (WS_MAX_MESSAGE_BYTES // 3 + 1), "message_too_large"
    return "{" * size, "message_too_large"


def binary(rng):
    frame = rng.choice(
        [
            lambda: rng.randbytes(rng.randint(0, 4096)),
            lambda: b"",
            lambda: b'{"action": "ping"}',
            lambda: rng.randbytes(WS_MAX_MESSAGE_BYTES + rng.randint(1, 100_000)),
        ]
    )()
    return frame, "binary_not_supported"


def ping(rng):
    frame = rng.choice(
        [
            '{"action": "ping"}',
            '  {"action":"ping"}\n',
            '{"action": "ping", "extra": [1, 2, {"x": null}]}',
            '{"\\u0061ction": "p\\u0069ng"}',
            '{"action": "other", "action": "ping"}',
            '{"action": "ping", "n": NaN}',
            json.dumps({"action": "ping", "note": _text(rng, rng.randint(0, 200))}),
        ]
    )
    return frame, "pong"


MAKERS = [
    (bad_json, 20),
    (not_an_object, 10),
    (unknown_action, 15),
    (big_below_limit, 6),
    (big_above_limit, 4),
    (binary, 10),
    (ping, 20),
]


def frames_for(rng, count):
    makers, weights = zip(*MAKERS, strict=True)
    return [maker(rng) for maker in rng.choices(makers, weights, k=count)]


def reply_matches(reply, expected):
    if expected == "pong":
        return reply.get("type") == "pong"
    return reply.get("type") == "error" and reply.get("code") == expected and isinstance(reply.get("message"), str)


async def test_a_thousand_malformed_frames_each_get_one_error_reply_and_break_nothing(stack):
    """1,000 seeded random bad frames from 5 clients: one matching reply each, sockets open, same workers."""
    clients, per_client = 5, 200
    rng = random.Random(SEED)
    plans = [frames_for(rng, per_client) for _ in range(clients)]
    assert {expected for plan in plans for _, expected in plan} == {
        "pong",
        "invalid_json",
        "invalid_message",
        "unknown_action",
        "binary_not_supported",
        "message_too_large",
    }
    before, marks = workers(stack), log_marks(stack)

    async def client(number, plan):
        compression = "deflate" if number % 2 else None  # half the clients compress, half send raw frames
        async with stack.connect(f"token={stack.tokens['demo']}", compression=compression) as ws:
            await established(ws)

            async def sender():
                for frame, _ in plan:
                    await ws.send(frame)

            async def receiver():
                return [json.loads(await ws.recv()) for _ in plan]

            _, replies = await asyncio.wait_for(asyncio.gather(sender(), receiver()), 40)
            await ping_pong(ws)  # the next reply after the 200 is this pong: no frame had a second reply
            still_open = ws.state.name
        wrong = [
            (index, repr(frame[:60]), len(frame.encode() if isinstance(frame, str) else frame), expected, reply)
            for index, ((frame, expected), reply) in enumerate(zip(plan, replies, strict=True))
            if not reply_matches(reply, expected)
        ]
        return wrong, still_open

    results = await asyncio.gather(*(client(number, plan) for number, plan in enumerate(plans)))

    assert [wrong for wrong, _ in results] == [[]] * clients
    assert [state for _, state in results] == ["OPEN"] * clients
    assert workers(stack) == before
    assert server_errors_since(stack, marks) == []


# --- Tokens ------------------------------------------------------------------------------------------------


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def _forged(rng, stack):
    """A well-formed JWT with the real claims (or variants), signed with a key that is not the server's."""
    claims = dict(_claims(stack.tokens["demo"]))
    claims.update(
        rng.choice(
            [{}, {"user_id": "2"}, {"user_id": "999"}, {"exp": int(time.time()) + 10**6}, {"token_type": "access"}]
        )
    )
    claims["jti"] = uuid.UUID(int=rng.getrandbits(128)).hex
    key = rng.randbytes(48).hex()
    return jwt.encode(claims, key, algorithm=rng.choice(["HS256", "HS384", "HS512"]))


def _tampered(rng, stack):
    """The demo user's real token with its payload or signature changed, or re-signed as alg none."""
    header, payload, signature = stack.tokens["demo"].split(".")
    claims = _claims(stack.tokens["demo"])
    change = rng.choice(["user", "exp", "type", "sig", "none", "drop_sig"])
    if change == "user":
        claims["user_id"] = rng.choice(["2", "3", "1 ", 1])
    elif change == "exp":
        claims["exp"] = claims["exp"] + rng.randint(1, 10**6)
    elif change == "type":
        claims["token_type"] = "refresh"
    elif change == "sig":
        flip = rng.randrange(len(signature) - 1)
        signature = signature[:flip] + ("A" if signature[flip] != "A" else "B") + signature[flip + 1 :]
        return f"{header}.{payload}.{signature}"
    elif change == "none":
        none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{none_header}.{_b64(json.dumps(claims).encode())}."
    elif change == "drop_sig":
        return f"{header}.{payload}."
    claims["jti"] = uuid.UUID(int=rng.getrandbits(128)).hex  # every tampered token a distinct string
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _random_string(rng):
    alphabet = rng.choice(
        [
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
            "abcdefghijklmnopqrstuvwxyz0123456789 !\"#$%&'()*+,/:;<=>?@[\\]^`{|}~",
            "é€ЖЪ中文🙂\x00\x01\x7f%+=&?",
        ]
    )
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(16, 400)))
    return rng.choice(["", "eyJ", "Bearer ", "token="]) + text


def attempts_for(rng, stack):
    """200 (token, query extras, use subprotocol, expected close code), shuffled."""
    tokens = stack.tokens
    jwt_shaped = [
        *((_forged(rng, stack), 4401) for _ in range(40)),
        *((_tampered(rng, stack), 4401) for _ in range(40)),
        *((tokens["expired"], 4401) for _ in range(30)),
    ]
    attempts = [(token, {}, rng.random() < 0.5, code) for token, code in jwt_shaped]
    attempts += [(_random_string(rng), {}, False, 4401) for _ in range(50)]
    for _ in range(30):  # a rival company's user naming one of the demo company's branches
        attempts.append((tokens["rival"], {"branch_id": rng.choice(DEMO_BRANCH_IDS)}, rng.random() < 0.5, 4403))
    for _ in range(10):  # a user of no company at all
        attempts.append((tokens["loner"], {}, rng.random() < 0.5, 4403))
    rng.shuffle(attempts)
    return attempts


async def attempt(stack, token, extras, subprotocol, gate):
    """Open one socket with the token; the close code the server sent, or what it sent instead of closing."""
    if subprotocol:
        query, kwargs = urlencode(extras), {"subprotocols": ["nurcrm.bearer", token]}
    else:
        query, kwargs = urlencode(dict(extras, token=token)), {}
    async with gate:
        try:
            async with stack.connect(query, **kwargs) as ws:
                try:
                    return ("message", await asyncio.wait_for(ws.recv(), 5))
                except ConnectionClosed as closed:
                    return ("closed", closed.rcvd.code if closed.rcvd else None)
        except InvalidStatus as refused:
            return ("http", refused.response.status_code)


async def test_two_hundred_forged_expired_and_foreign_tokens_are_all_refused_and_never_logged(stack):
    """200 bad tokens, 20 at a time: each closed with its 4401 or 4403, and no token string in any log."""
    rng = random.Random(SEED + 1)
    attempts = attempts_for(rng, stack)
    assert len(attempts) == 200
    gate = asyncio.Semaphore(20)

    outcomes = await asyncio.wait_for(
        asyncio.gather(*(attempt(stack, token, extras, sub, gate) for token, extras, sub, _ in attempts)), 40
    )

    wrong = [
        (token[:40], extras, subprotocol, expected, outcome)
        for (token, extras, subprotocol, expected), outcome in zip(attempts, outcomes, strict=True)
        if outcome != ("closed", expected)
    ]
    assert wrong == []
    logs = stack.logs_text()
    assert "token=[redacted]" in logs
    leaked = {token for token, *_ in attempts if token in logs or quote_plus(token) in logs}
    assert leaked == set()


# --- Frame size ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "deflate"], ids=["raw", "deflate"])
async def test_a_frame_over_uvicorns_16_mib_limit_is_closed_with_1009_and_the_workers_live_on(stack, compression):
    """A 17 MiB frame (raw, or deflated to a few KiB) is closed with 1009; same workers; new sockets work."""
    before, marks = workers(stack), log_marks(stack)
    frame = _padded('"action": "ping"', 17 * 1024 * 1024)
    assert len(frame) > UVICORN_WS_MAX_SIZE
    async with stack.connect(f"token={stack.tokens['demo']}", compression=compression) as ws:
        await established(ws)
        try:
            await asyncio.wait_for(ws.send(frame), 20)
            outcome = ("message", await asyncio.wait_for(ws.recv(), 10))
        except ConnectionClosed as closed:
            outcome = ("closed", closed.rcvd.code if closed.rcvd else None)
    assert outcome == ("closed", 1009)

    async with stack.connect(f"token={stack.tokens['demo']}") as ws:
        await established(ws)
        await ping_pong(ws)
    assert workers(stack) == before
    assert server_errors_since(stack, marks) == []
