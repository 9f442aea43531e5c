"""Tokens never reach log lines (checklist item 5: logs are where operators look first)."""

import logging

import pytest

from core.logs import RedactTokens, redact
from tests.conftest import close_code, connect_ok, socket_to, token_for

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiMSJ9.c2lnbmF0dXJlLXNlY3JldA"


@pytest.mark.parametrize(
    "line",
    [
        f'127.0.0.1:0 - "WebSocket /ws/cafe/tables/?token={TOKEN}" [accepted]',
        f'"GET /ws/cafe/tables/?branch_id=1&token={TOKEN}&x=1 HTTP/1.1" 101',
        f"Authorization: Bearer {TOKEN}",
    ],
)
def test_redact_removes_the_token_and_keeps_the_rest(line):
    cleaned = redact(line)
    assert TOKEN not in cleaned and "[redacted]" in cleaned
    assert cleaned == line.replace(TOKEN, "[redacted]")


def test_filter_rewrites_formatted_records():
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:1", f"/ws/cafe/tables/?token={TOKEN}"),
        None,
    )
    RedactTokens().filter(record)
    assert TOKEN not in record.getMessage()


@pytest.mark.django_db(transaction=True)
async def test_consumer_logs_never_contain_the_token(tenant, caplog):
    """Accepted and refused sockets alike leave no token in the app's log records."""
    good, expired = token_for(tenant[2]), token_for(tenant[2], ttl=-1)
    with caplog.at_level(logging.DEBUG):
        async with socket_to(token=good) as ws:
            await connect_ok(ws)
        async with socket_to(token=expired) as ws:
            assert await close_code(ws) == 4401
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused with 4401" in text
    assert good not in text and expired not in text
