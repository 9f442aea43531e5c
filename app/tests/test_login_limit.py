"""POST /api/auth/token/ limited per user name (apps.users.login_attempts), counted in a real Redis:
after 5 failed attempts within the window, 429 with Retry-After; refusals logged, passwords never.
The last tests run the real server (gunicorn, 3 uvicorn workers): one count for all of its workers."""

import asyncio
import json
import logging
import os
import re
import time
from urllib.parse import urlencode

import pytest

from apps.users.models import User
from tests.localstack import LocalStack

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

SECRET_GUESS = "Correct-Horse-Battery-Staple-42"  # what an attacker tries; must appear in no log line


@pytest.fixture
def limited(settings, redis_server):
    """The count in the session's redis-server, under keys of this test's own."""
    settings.REDIS_URL = redis_server
    settings.CHANNEL_LAYER_PREFIX = f"login{os.urandom(4).hex()}"
    return settings


def attempt(client, password, username="staff"):
    return client.post("/api/auth/token/", {"username": username, "password": password})


def test_thirty_wrong_passwords_get_five_401s_then_429s_with_retry_after(client, tenant, limited):
    """The 6th and every later attempt is a 429 whose Retry-After is the rest of the 300 s window."""
    statuses = [attempt(client, f"{SECRET_GUESS}-{n}").status_code for n in range(30)]
    assert statuses == [401] * 5 + [429] * 25
    refused = attempt(client, SECRET_GUESS)
    assert refused.json()["code"] == "login_throttled"
    assert 290 <= int(refused["Retry-After"]) <= 300


def test_the_right_password_is_refused_too_while_the_user_name_is_locked(client, tenant, limited, make_company):
    """Locked means locked: the 6th attempt fails even with the password. Another user name is not locked."""
    for n in range(5):
        attempt(client, f"wrong-{n}")
    assert attempt(client, "pw-staff-1").status_code == 429
    User.objects.create_user("cook", password="pw-cook-1", company=tenant[0])
    assert attempt(client, "pw-cook-1", username="cook").status_code == 200


def test_a_successful_login_clears_the_count(client, tenant, limited):
    """Four failures, a success, then five more failures before a 429: the success started the count again."""
    statuses = [attempt(client, f"wrong-{n}").status_code for n in range(4)]
    statuses.append(attempt(client, "pw-staff-1").status_code)
    statuses += [attempt(client, f"wrong-again-{n}").status_code for n in range(6)]
    assert statuses == [401] * 4 + [200] + [401] * 5 + [429]


def test_the_lock_ends_with_the_window(client, tenant, limited):
    """LOGIN_FAILURE_WINDOW=2: locked at once after five failures, the password works again 2 s later."""
    limited.LOGIN_FAILURE_WINDOW = 2
    for n in range(5):
        attempt(client, f"wrong-{n}")
    refused = attempt(client, "pw-staff-1")
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 2
    time.sleep(2.5)
    assert attempt(client, "pw-staff-1").status_code == 200


def test_a_user_name_in_other_case_or_form_shares_the_count(client, tenant, limited):
    """'staff', 'STAFF' and 'ｓｔａｆｆ' (full-width) are one count: no variant gives a fresh five."""
    for name in ("staff", "STAFF", "Staff", "ｓｔａｆｆ", "sTaFf"):
        attempt(client, "wrong", username=name)
    assert attempt(client, "pw-staff-1").status_code == 429


def test_a_request_without_a_password_is_a_400_and_does_not_count(client, tenant, limited):
    statuses = [client.post("/api/auth/token/", {"username": "staff"}).status_code for _ in range(10)]
    assert statuses == [400] * 10
    assert attempt(client, "pw-staff-1").status_code == 200


def test_refusals_are_logged_with_the_user_name_and_no_password_is_logged_at_all(client, tenant, limited, caplog):
    """Every log record of 8 failed and refused attempts, at DEBUG, from every logger: the refusals name
    the user name and the 429; no record holds a password tried, in its message or its arguments."""
    with caplog.at_level(logging.DEBUG):
        for n in range(8):
            attempt(client, f"{SECRET_GUESS}-{n}")
        attempt(client, "pw-staff-1")
    refusals = [r.getMessage() for r in caplog.records if "login refused (429)" in r.getMessage()]
    assert len(refusals) == 4
    assert all("'staff'" in line for line in refusals)
    everything = "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records)
    assert SECRET_GUESS not in everything and "pw-staff-1" not in everything


def test_with_redis_unreachable_logins_work_and_the_failure_is_logged(client, tenant, settings, caplog):
    """Redis down: the attempt is not counted (nginx still limits addresses), the login is not refused for it."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with caplog.at_level(logging.ERROR, logger="apps.users.login_attempts"):
        assert attempt(client, "pw-staff-1").status_code == 200
    assert "login attempts are not limited: Redis failed" in caplog.text


# --- The real server ---------------------------------------------------------------------------------------

USER = """
from apps.users.models import User
from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
User.objects.create_user("waiter", password="pw-waiter-1", company_id=DEMO_COMPANY_ID)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    stack = LocalStack(tmp_path_factory.mktemp("login"), redis_server)
    stack.manage("shell", "--verbosity", "0", "-c", USER)
    yield stack
    stack.stop()


async def post_login(stack, username, password):
    """POST /api/auth/token/ over the unix socket, as nginx forwards it; (status, headers)."""
    body = urlencode({"username": username, "password": password}).encode()
    reader, writer = await asyncio.open_unix_connection(str(stack.sock))
    writer.write(
        b"POST /api/auth/token/ HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    response = (await asyncio.wait_for(reader.read(), 10)).decode()
    writer.close()
    head = response.split("\r\n\r\n", 1)[0].split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {name.lower(): value for name, value in headers.items()}


@pytest.mark.slow
async def test_twenty_parallel_attempts_over_three_workers_get_exactly_five_401s(stack):
    """20 wrong passwords at once, spread over the three workers: 5 answered 401 and 15 refused 429
    with Retry-After. A count per worker would have let up to 15 through."""
    outcomes = await asyncio.gather(*(post_login(stack, "waiter", f"{SECRET_GUESS}-{n}") for n in range(20)))
    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [401] * 5 + [429] * 15
    assert all(int(headers["retry-after"]) > 0 for status, headers in outcomes if status == 429)
    assert (await post_login(stack, "waiter", "pw-waiter-1"))[0] == 429


@pytest.mark.slow
def test_the_servers_log_names_the_refusals_and_holds_no_password(stack):
    """Runs after the attempts above: the workers logged the refusals with the user name, and no password."""
    log = stack.logs_text()
    assert len(re.findall(r"login refused \(429\) for user name 'waiter'", log)) == 16
    assert SECRET_GUESS not in log and "pw-waiter-1" not in log
    assert json.dumps(SECRET_GUESS)[1:-1] not in log
