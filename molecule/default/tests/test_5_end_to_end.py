"""Checklist items 5-8 end to end, with a real WebSocket client through nginx over wss://:
connection_established, ping/pong, order and table events, branch scoping, an expired token,
and no token in nginx's or gunicorn's logs afterwards; the doctor's consumer, delivery and logs steps."""

import asyncio
import time

import pytest
from conftest import (
    DEMO_BRANCHES,
    DEMO_COMPANY,
    DEMO_USER,
    assert_check_passes,
    checks_of,
    close_code,
    manage,
    receive,
    request,
    socket_to,
)

testinfra_hosts = ["ansible://app"]
ITEMS = (5, 6, 7, 8)

# The production note's shell snippet, verbatim but for the demo company's id.
SHELL_SENDER = f"""
from apps.cafe.models import Table
from apps.users.models import Company
import uuid

company = Company.objects.get(id=uuid.UUID('{DEMO_COMPANY}'))
table = Table.objects.filter(company=company).first()
from apps.cafe.views import send_table_status_changed_notification
send_table_status_changed_notification(table)
print('Notification sent', table.id)
"""


@pytest.mark.parametrize("check", checks_of(ITEMS))
def test_the_doctors_check_passes(walk, check):
    """The doctor's own walk: a token minted on the host, connection_established, a delivered event,
    no error logged meanwhile."""
    assert_check_passes(walk, check)


def test_valid_token_gets_connection_established_and_ping_gets_pong(site, token):
    async def check():
        async with socket_to(site, f"token={token}") as ws:
            hello = await receive(ws)
            assert hello["type"] == "connection_established"
            assert hello["company_id"] == DEMO_COMPANY and hello["tables"]
            await ws.send('{"action": "ping"}')
            assert (await receive(ws))["type"] == "pong"

    asyncio.run(check())


def test_orders_created_and_changed_over_rest_reach_the_socket(site, token):
    async def check():
        async with socket_to(site, f"token={token}") as ws:
            table = (await receive(ws))["tables"][0]
            order = {"table": table["id"], "items": [{"name": "Plov", "quantity": 2, "price": "350.00"}]}
            status, created = await asyncio.to_thread(request, site, "POST", "/api/cafe/orders/", token, order)
            assert status == 201
            event = await receive(ws)
            assert (event["type"], event["data"]["id"], event["data"]["total"]) == (
                "order_created",
                created["id"],
                "700.00",
            )
            path = f"/api/cafe/orders/{created['id']}/"
            status, _ = await asyncio.to_thread(request, site, "PATCH", path, token, {"status": "served"})
            assert status == 200
            event = await receive(ws)
            assert (event["type"], event["data"]["status"]) == ("order_updated", "served")

    asyncio.run(check())


def test_table_status_change_over_rest_reaches_the_socket(site, token):
    async def check():
        async with socket_to(site, f"token={token}") as ws:
            table = (await receive(ws))["tables"][-1]
            new_status = "reserved" if table["status"] != "reserved" else "free"
            path = f"/api/cafe/tables/{table['id']}/"
            status, _ = await asyncio.to_thread(request, site, "PATCH", path, token, {"status": new_status})
            assert status == 200
            event = await receive(ws)
            assert (event["type"], event["data"]["id"], event["data"]["status"]) == (
                "table_status_changed",
                table["id"],
                new_status,
            )

    asyncio.run(check())


def test_shell_sender_delivers_table_status_changed(host, site, token):
    """send_table_status_changed_notification(table) from `manage.py shell -c` reaches the browser's socket."""

    async def check():
        async with socket_to(site, f"token={token}") as ws:
            await receive(ws)
            output = await asyncio.to_thread(manage, host, "shell", "-c", SHELL_SENDER)
            table_id = output.split()[-1]
            event = await receive(ws)
            assert (event["type"], event["data"]["id"]) == ("table_status_changed", table_id)

    asyncio.run(check())


def test_branch_socket_gets_its_branch_events_and_not_another_branchs(host, site, token):
    main, terrace = DEMO_BRANCHES["Main hall"], DEMO_BRANCHES["Terrace"]

    async def check():
        async with socket_to(site, f"token={token}&branch_id={main}") as ws:
            hello = await receive(ws)
            assert {table["branch_id"] for table in hello["tables"]} == {main}
            for branch in (terrace, main):
                await asyncio.to_thread(
                    manage, host, "send_test_notification", "--company", DEMO_COMPANY, "--branch", branch
                )
            event = await receive(ws)
            assert event["data"]["branch_id"] == main
            with pytest.raises(TimeoutError):
                await receive(ws, timeout=1)

    asyncio.run(check())


def test_expired_token_is_closed_with_4401(host, site, used_tokens):
    expired = manage(host, "issue_token", "--user", DEMO_USER, "--ttl", "-60")
    used_tokens.append(expired)

    async def check():
        async with socket_to(site, f"token={expired}") as ws:
            assert await close_code(ws) == 4401

    asyncio.run(check())


@pytest.mark.parametrize(
    "log",
    ["nginx access log", "nginx error log", "gunicorn journal"],
)
def test_no_token_reached_the_logs(host, web, used_tokens, log):
    """Runs last in this file: every token used above, and any JWT at all, is absent from the logs."""
    assert used_tokens, "the tests above used no token"
    text = {
        "nginx access log": lambda: web.file("/var/log/nginx/access.log").content_string,
        "nginx error log": lambda: web.file("/var/log/nginx/error.log").content_string,
        "gunicorn journal": lambda: host.check_output("journalctl -u gunicorn --no-pager -o cat"),
    }[log]()
    assert "/ws/cafe/tables/" in text or log != "nginx access log", "the access log saw no socket at all"
    for used in used_tokens:
        assert used not in text
    assert "eyJhbGciOi" not in text, f"a JWT is in the {log}"


def test_a_socket_of_a_user_deactivated_by_sql_is_closed_with_4401_within_2_seconds(db_host, site, token):
    """On the deployed stack, with PostgreSQL: an UPDATE straight in the database (no model signal) ends the
    user's open socket; the user is active again afterwards."""

    def set_active(active):
        sql = f"UPDATE users_user SET is_active = {str(active).lower()} WHERE username = '{DEMO_USER}'"
        db_host.check_output(f'runuser -u postgres -- psql -d nurcrm -c "{sql}"')

    async def scenario():
        async with socket_to(site, f"token={token}") as ws:
            assert (await receive(ws))["type"] == "connection_established"
            await asyncio.to_thread(set_active, False)
            committed = time.monotonic()
            code = await close_code(ws, timeout=5)
            return code, time.monotonic() - committed

    try:
        code, after = asyncio.run(scenario())
    finally:
        set_active(True)
    print(f"closed {after:.2f} s after the UPDATE")
    assert code == 4401 and after <= 2, (code, after)
