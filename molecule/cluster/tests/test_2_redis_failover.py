"""The Redis master is stopped: Sentinel promotes a replica within its timeouts, no screen stays stale or
deaf, an order created during the failover is saved, and the old master returns as a replica."""

import asyncio
import time
import urllib.error

from conftest import (
    DOWN_AFTER_S,
    FAILOVER_TIMEOUT_S,
    Screen,
    master_node,
    replication,
    request,
    sentinel_master,
    settle,
    tables_via_rest,
    wait_for,
)

SOCKETS = 10


async def keep_ordering(site, token, table_id, stop):
    """An order every 300 ms over REST until told to stop: each answer's status (or the error)."""
    answers = []
    while not stop.is_set():
        order = {"table": table_id, "items": [{"name": "Chai", "quantity": 1, "price": "50.00"}]}
        try:
            status, _ = await asyncio.to_thread(request, site, "POST", "/api/cafe/orders/", token, order)
            answers.append(status)
        except urllib.error.HTTPError as error:
            answers.append(error.code)
        await asyncio.sleep(0.3)
    return answers


def test_the_master_stopped_is_replaced_and_every_screen_stays_true(site, token, redises):
    old = master_node(redises)
    survivors = [node for node in redises if node is not old]

    async def scenario():
        screens = [await Screen.open(site, token) for _ in range(SOCKETS)]
        table_id = sorted(screens[0].tables)[0]
        stop = asyncio.Event()
        ordering = asyncio.create_task(keep_ordering(site, token, table_id, stop))
        await asyncio.sleep(0.5)
        stopped = time.monotonic()
        await asyncio.to_thread(old.check_output, "systemctl stop redis-server")
        new_address = await asyncio.to_thread(
            wait_for,
            lambda: (address := sentinel_master(survivors)) != old.address and address,
            DOWN_AFTER_S + FAILOVER_TIMEOUT_S + 5,
            "a replica promoted",
        )
        promoted_after = time.monotonic() - stopped
        print(f"failover: {new_address} promoted {promoted_after:.1f} s after the master stopped")
        assert promoted_after <= DOWN_AFTER_S + FAILOVER_TIMEOUT_S
        await asyncio.sleep(1)  # the app's layers notice the switch within about a second
        stop.set()
        answers = await ordering
        await settle(screens, site, token, table_id, stopped)
        # Events after the failover reach every screen, kept or reconnected, and each equals the database.
        await settle(screens, site, token, table_id, stopped)
        truth = await tables_via_rest(site, token)
        stale = [i for i, screen in enumerate(screens) if screen.tables != truth]
        reconnected = sum(screen.reconnected for screen in screens)
        await asyncio.gather(*(screen.close() for screen in screens))
        return answers, stale, reconnected, new_address

    answers, stale, reconnected, new_address = asyncio.run(scenario())
    print(f"orders during the failover: {answers}; sockets reconnected: {reconnected} of {SOCKETS}")
    assert answers and set(answers) == {201}, answers
    assert not stale, f"screens unlike the database: {stale}"

    old.check_output("systemctl start redis-server")
    wanted = {"role": "slave", "master_host": new_address, "master_link_status": "up"}
    wait_for(
        lambda: wanted.items() <= replication(old).items(),
        30,
        f"{old.name} back as a replica of {new_address}, in sync",
        every=0.5,
    )
