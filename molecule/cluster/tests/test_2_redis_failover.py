"""The Redis master is stopped under SCREENS staff screens and a steady stream of table changes (bench/screens.py,
the documented client): Sentinel promotes a replica within its timeouts, the tables changed only while the
master was down, and never again, reach every screen within RESYNC_S of the promotion (the outbox's relay and
the workers' resync, issue 24), no change the API confirmed is missing from any screen, every state a screen
showed is one the database had, orders created during the failover are saved, and the old master returns as a
replica."""

import asyncio
import itertools
import json
import time
import urllib.error

from conftest import (
    DOWN_AFTER_S,
    FAILOVER_TIMEOUT_S,
    master_node,
    replication,
    request,
    sentinel_master,
    tables_via_rest,
    wait_for,
)

from bench.screens import Load

SCREENS = 100
FAILOVER_ONLY = 3  # tables changed only while the master is down, and never again
RESYNC_S = 10
STATUSES = ("occupied", "reserved", "cleaning", "free")


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


def behind(load, changes):
    """Screens that do not yet show each of `changes` ({table: version}): index -> tables."""
    late = {}
    for screen in load.screens:
        tables = [table for table, version in changes.items() if (screen.versions.get(table) or 0) < version]
        if tables:
            late[screen.index] = tables
    return late


def test_a_failover_loses_no_change_and_every_screen_stays_true(site, token, redises, apps):
    old = master_node(redises)
    survivors = [node for node in redises if node is not old]

    async def scenario():
        ids = sorted(await tables_via_rest(site, token))
        spared = ids[:FAILOVER_ONLY]
        async with Load(site, token, SCREENS, 8000, spared=frozenset(spared)) as load:
            stop = asyncio.Event()
            ordering = asyncio.create_task(keep_ordering(site, token, ids[-1], stop))
            await asyncio.sleep(0.5)
            stopped = time.monotonic()
            await asyncio.to_thread(old.check_output, "systemctl stop redis-server")
            promotion = asyncio.create_task(
                asyncio.to_thread(
                    wait_for,
                    lambda: (address := sentinel_master(survivors)) != old.address and address,
                    DOWN_AFTER_S + FAILOVER_TIMEOUT_S + 5,
                    "a replica promoted",
                )
            )
            # The spared tables change while the master is down, then never again: each its own writer.
            during = {}

            async def change_until_promoted(table):
                for turn in itertools.count():
                    if promotion.done():
                        return
                    version = await load.change(table, STATUSES[turn % len(STATUSES)])
                    if version is not None:
                        during[table] = version
                    await asyncio.sleep(0.3)

            await asyncio.gather(*(change_until_promoted(table) for table in spared))
            new_address = await promotion
            promoted = time.monotonic()
            while late := behind(load, during):
                assert time.monotonic() - promoted < RESYNC_S, (
                    f"{len(late)} screens still miss the failover's changes {RESYNC_S} s after the promotion, "
                    f"e.g. {next(iter(late.items()))}"
                )
                await asyncio.sleep(0.2)
            caught_up = time.monotonic() - promoted
            stop.set()
            answers = await ordering
            truth, stale = await load.settle()
            return load, during, answers, stale, new_address, promoted - stopped, caught_up

    try:
        load, during, answers, stale, new_address, promoted_after, caught_up = asyncio.run(scenario())
    finally:
        old.check_output("systemctl start redis-server")
    figures = load.summary()
    print(
        f"failover: {new_address} promoted {promoted_after:.1f} s after the master stopped; the tables changed "
        f"only meanwhile {during} were on every screen {caught_up:.1f} s later; orders: {answers}; "
        f"{json.dumps(figures)}"
    )
    assert promoted_after <= DOWN_AFTER_S + FAILOVER_TIMEOUT_S
    assert len(during) == FAILOVER_ONLY, f"not every spared table was changed during the failover: {during}"
    assert answers and set(answers) == {201}, answers
    assert not figures["event_errors"], figures
    assert not stale, f"{len(stale)} screens unlike the database, e.g. {next(iter(stale.items()))}"
    assert not load.missing(), f"confirmed changes missing from screens: {load.missing()}"
    assert not load.untrue(), f"states no database had: {load.untrue()}"
    count = "from apps.cafe.models import OutboxEvent; print(OutboxEvent.objects.count())"
    waiting = apps[0].check_output(f"nurcrm-manage shell --verbosity 0 -c '{count}'")
    assert waiting == "0", f"{waiting} events still wait in the outbox"

    wanted = {"role": "slave", "master_host": new_address, "master_link_status": "up"}
    wait_for(
        lambda: wanted.items() <= replication(old).items(),
        30,
        f"{old.name} back as a replica of {new_address}, in sync",
        every=0.5,
    )
