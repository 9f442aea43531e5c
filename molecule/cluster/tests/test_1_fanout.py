"""Checklist item 3 across hosts: an event sent on one app host reaches the sockets of both, through one
channel layer on the master the Sentinels name."""

import asyncio

from conftest import (
    DEMO_COMPANY,
    every_socket_gets,
    numsub,
    open_spread,
    send_from,
    upstream_connections,
    workers_holding_sockets,
)

GROUP_CHANNEL = f"asgi__group__cafe_tables_{DEMO_COMPANY}"  # RedisPubSubChannelLayer's name for the group


def test_nginx_spreads_sockets_over_both_app_hosts(site, token, apps):
    async def scenario():
        sockets, hellos = await open_spread(site, token, apps, 8)
        try:
            assert {hello["type"] for hello in hellos} == {"connection_established"}
            return upstream_connections()
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    held = asyncio.run(scenario())
    assert all(held.get(app.address, 0) > 0 for app in apps), held


def test_an_event_sent_on_either_app_host_reaches_sockets_on_both(site, token, apps, redises):
    async def scenario():
        sockets, _ = await open_spread(site, token, apps, 8)
        try:
            # Every worker holding a socket of the company subscribes once, on the current master: both
            # hosts' workers are there.
            holders = sum(len(workers_holding_sockets(app)) for app in apps)
            assert await asyncio.to_thread(numsub, redises, GROUP_CHANNEL) == holders
            for app in apps:
                table_id = await asyncio.to_thread(send_from, app)
                await every_socket_gets(sockets, table_id)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    asyncio.run(scenario())
