"""An open socket lives no longer than its token, its user and WS_MAX_LIFETIME (nurcrm_realtime.guard),
against the real server: gunicorn with 3 uvicorn workers on a unix socket, redis-server, SQLite, seed_demo,
and real WebSocket clients.

However a user's access ends (save(), QuerySet.update(), raw SQL, delete(), a new password), every socket
of the user is closed with 4401 within 2 seconds of the change's commit, and nobody else's; a token's
expiry closes its socket with 4401 as it expires; WS_MAX_LIFETIME closes any socket with 4408.
"""

import asyncio
import json
import sqlite3
import time

import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from tests.localstack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SOCKETS = 6  # per user, over the three workers
WITHIN = 2.0  # seconds from the commit to the close
USERS = ("by-save", "by-update", "by-sql", "deleted", "new-password", "new-password-sql", "bystander")

SETUP = f"""
import json
from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
from apps.users.models import User
from rest_framework_simplejwt.tokens import AccessToken
tokens = {{}}
for name in {USERS!r}:
    user = User.objects.create_user(name, password="pw-" + name, company_id=DEMO_COMPANY_ID)
    tokens[name] = str(AccessToken.for_user(user))
print(json.dumps(tokens))
"""
# Each ends the user's access through the ORM, then prints the time: the change has committed by then.
ORM_CHANGES = {
    "by-save": "u = User.objects.get(username='by-save'); u.is_active = False; u.save()",
    "by-update": "User.objects.filter(username='by-update').update(is_active=False)",
    "deleted": "User.objects.get(username='deleted').delete()",
    "new-password": "u = User.objects.get(username='new-password'); u.set_password('another-pw-1'); u.save()",
}
SQL_CHANGES = {
    "by-sql": "UPDATE users_user SET is_active = 0 WHERE username = 'by-sql'",
    "new-password-sql": "UPDATE users_user SET password = 'md5$salt$0123' WHERE username = 'new-password-sql'",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    stack = LocalStack(tmp_path_factory.mktemp("revocation"), redis_server)
    stack.tokens = json.loads(stack.manage("shell", "--verbosity", "0", "-c", SETUP))
    yield stack
    stack.stop()


async def opened(stack, token, count):
    sockets = [await stack.connect(f"token={token}") for _ in range(count)]
    for ws in sockets:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_established"
    return sockets


async def closed(ws, timeout=10):
    """The close code the server sent, and when it arrived (epoch seconds); frames before it are skipped."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as gone:
        return (gone.rcvd.code if gone.rcvd else None), time.time()


async def ping_pong(ws):
    await ws.send('{"action": "ping"}')
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"


def change_by_orm(stack, name):
    script = f"import time\nfrom apps.users.models import User\n{ORM_CHANGES[name]}\nprint(time.time())"
    return float(stack.manage("shell", "--verbosity", "0", "-c", script))


def change_by_sql(stack, name):
    database = sqlite3.connect(stack.env["DATABASE_URL"].removeprefix("sqlite:///"), timeout=10)
    try:
        with database:  # commits
            database.execute(SQL_CHANGES[name])
        return time.time()
    finally:
        database.close()


@pytest.mark.parametrize(
    "name,change",
    [
        ("by-save", change_by_orm),
        ("by-update", change_by_orm),
        ("by-sql", change_by_sql),
        ("deleted", change_by_orm),
        ("new-password", change_by_orm),
        ("new-password-sql", change_by_sql),
    ],
    ids=["deactivated-by-save", "deactivated-by-queryset-update", "deactivated-by-raw-sql", "deleted",
         "password-changed-by-save", "password-changed-by-raw-sql"],
)  # fmt: skip
async def test_every_socket_of_a_user_whose_access_ended_is_closed_with_4401_within_2_seconds(stack, name, change):
    """Six sockets of the user (over three workers) answer pings; the change commits; each socket is closed
    with 4401 within 2 s of the commit. A socket of another user of the same company stays open and answers."""
    sockets = await opened(stack, stack.tokens[name], SOCKETS)
    (bystander,) = await opened(stack, stack.tokens["bystander"], 1)
    try:
        for ws in sockets:
            await ping_pong(ws)
        closes = asyncio.gather(*(closed(ws) for ws in sockets))
        committed = await asyncio.to_thread(change, stack, name)
        outcomes = await closes
        await ping_pong(bystander)
    finally:
        for ws in (*sockets, bystander):
            await ws.close()
    assert [code for code, _ in outcomes] == [4401] * SOCKETS
    late = [round(at - committed, 2) for _, at in outcomes if at - committed > WITHIN]
    assert late == [], f"closed more than {WITHIN} s after the commit"


async def test_a_socket_is_closed_with_4401_when_its_token_expires(stack):
    """A token of 4 seconds: the socket works until then, and is closed with 4401 within 2 s of the expiry."""
    token = stack.manage("issue_token", "--user", "demo", "--ttl", "4").strip()
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    (ws,) = await opened(stack, token, 1)
    await ping_pong(ws)
    code, at = await closed(ws)
    assert code == 4401
    assert expires <= at <= expires + WITHIN


async def test_a_socket_is_closed_with_4408_after_the_lifetime_cap_whatever_its_token(tmp_path, redis_server):
    """WS_MAX_LIFETIME=2 and a token of a day: the socket is closed with 4408 two to four seconds after it opened."""
    stack = LocalStack(tmp_path, redis_server, workers=1, WS_MAX_LIFETIME="2")
    try:
        token = stack.manage("issue_token", "--user", "demo", "--ttl", "86400").strip()
        opened_at = time.time()
        (ws,) = await opened(stack, token, 1)
        await ping_pong(ws)
        code, at = await closed(ws)
    finally:
        stack.stop()
    assert code == 4408
    assert 2 <= at - opened_at <= 2 + WITHIN
