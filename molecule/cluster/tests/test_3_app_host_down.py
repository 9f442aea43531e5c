"""An app host is lost (its container killed, as a power cut): its sockets reconnect through nginx to the
other within 5 s, new handshakes succeed throughout, events keep reaching every socket, and when it
returns the sockets spread back (issue 24): within a minute the busiest host holds at most 60 % of them,
every screen reconnected without a failed handshake and shows the database."""

import asyncio
import subprocess
import time

from conftest import (
    Screen,
    change_a_table,
    open_spread,
    receive,
    settle,
    socket_to,
    until_balanced,
    upstream_connections,
    wait_for,
)

from bench.screens import Load

RECONNECT_S = 5
SCREENS = 60  # open while the host is away: all on the other one when it returns


async def keep_handshaking(site, token, stop):
    """A new socket every 100 ms until told to stop: how many got their hello, and the failures."""
    opened, failures = 0, []
    while not stop.is_set():
        try:
            async with socket_to(site, f"token={token}") as ws:
                assert (await receive(ws))["type"] == "connection_established"
                opened += 1
        except Exception as error:  # noqa: BLE001 (every way a handshake can fail is a failure here)
            failures.append(f"{type(error).__name__}: {error}")
        await asyncio.sleep(0.1)
    return opened, failures


def test_an_app_host_lost_and_back(site, token, apps):
    lost, kept = apps[-1], apps[0]

    async def scenario():
        sockets, hellos = await open_spread(site, token, apps, 10)
        screens = [Screen(ws, hello) for ws, hello in zip(sockets, hellos, strict=True)]
        on_lost = upstream_connections().get(lost.address, 0)
        stop = asyncio.Event()
        handshakes = asyncio.create_task(keep_handshaking(site, token, stop))
        await asyncio.sleep(0.3)
        killed = time.monotonic()
        await asyncio.to_thread(subprocess.run, ["docker", "kill", lost.name], check=True, capture_output=True)
        # Each screen whose socket closes reconnects at once; the time from the kill to its new hello.
        back_after = await settle(screens, site, token, sorted(screens[0].tables)[0], killed)
        stop.set()
        opened, failures = await handshakes
        # Events keep reaching every screen, all on the host that is left.
        table_id = sorted(screens[0].tables)[-1]
        status = await change_a_table(site, token, table_id)
        await asyncio.gather(*(screen.until(table_id, status) for screen in screens))
        held = upstream_connections()
        await asyncio.gather(*(screen.close() for screen in screens))
        return on_lost, back_after, opened, failures, held

    on_lost, back_after, opened, failures, held = asyncio.run(scenario())
    print(f"{on_lost} sockets on {lost.name}: back after {[round(s, 2) for s in back_after]} s; {opened} handshakes")
    assert len(back_after) == on_lost > 0
    assert max(back_after) < RECONNECT_S
    assert not failures and opened > 0, failures
    assert held.get(lost.address, 0) == 0 and held.get(kept.address, 0) >= len(back_after), held

    async def spreads_back_when_it_returns():
        async with Load(site, token, SCREENS, 10000) as load:
            assert upstream_connections().get(lost.address, 0) == 0
            await asyncio.to_thread(subprocess.run, ["docker", "start", lost.name], check=True, capture_output=True)
            await asyncio.to_thread(
                wait_for,
                lambda: lost.run("systemctl is-active gunicorn").stdout.strip() == "active",
                60,
                f"gunicorn on {lost.name}",
            )
            balance = await until_balanced(apps)
            truth, stale = await load.settle()
            return balance, load.summary(), stale

    (before, after, seconds), figures, stale = asyncio.run(spreads_back_when_it_returns())
    print(f"{lost.name} back: sockets {before} -> {after} in {seconds:.0f} s; {figures}")
    assert after[lost.name] > 0
    assert not figures["handshake_failures"] and set(figures["closes"]) <= {1012}, figures
    assert not stale, f"{len(stale)} screens unlike the database"
