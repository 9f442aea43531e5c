"""Releases on one app host (issue 15; the cluster's rolling deploy is molecule/cluster/tests/test_6_rolling.py):
a changed release goes out by gunicorn's graceful reload under open screens and a table event every 200 ms,
a rollback goes back the same way, and a release that fails its check is switched back with the run failing
on it. Checklist item 7: "restart gunicorn after changes", without a screen noticing. A code change is deployed
as docs/deploy.md has it, with playbooks/app.yml (it builds the release and ends with the same roll as site.yml).
The production scenario's host is one app host behind its own nginx like this one: it does not repeat these."""

import asyncio
import os

import pytest
from conftest import SCENARIO, SERVICE, playbook

from bench.rolling import app_variant
from bench.screens import Load

pytestmark = pytest.mark.skipif(SCENARIO != "default", reason="one app host's releases: the default scenario's")
SCREENS = 300  # enough that the reconnecting screens meet the workers' handshake limit (1013) as the check runs


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    return lambda name, broken=False: app_variant(tmp_path_factory.mktemp(name), name, broken)


@pytest.fixture(scope="module")
def started_on(app):
    """The release the converge started gunicorn's master on (read before this module deploys any)."""
    return running(app)[0]


def running(app):
    release = os.path.basename(app.check_output("readlink /opt/nurcrm/current"))
    return release, app.check_output(f"systemctl show -p MainPID --value {SERVICE}")


def under_load(site, token, first_address, action):
    async def scenario():
        async with Load(site, token, SCREENS, first_address) as load:
            result = await asyncio.to_thread(action)
            truth, stale = await load.settle()
            # No screen showed a state the database never had, nor misses a change the API confirmed.
            assert not load.untrue(), f"states no database had: {load.untrue()}"
            assert not load.missing(), f"confirmed changes missing from screens: {load.missing()}"
            return result, load.summary(), stale

    return asyncio.run(scenario())


def test_the_hello_names_the_release_current_links_to(app, site, token, started_on):
    async def hello():
        async with Load(site, token, 1, 9000) as load:
            return load.screens[0].release

    assert asyncio.run(hello()) == running(app)[0]


def test_a_changed_release_goes_out_by_graceful_reload_unnoticed(app, inventory, site, token, variant):
    before = running(app)
    changed = ("-i", inventory, "-e", f"app_source_dir={variant('changed')}")
    (rc, output), figures, stale = under_load(
        site, token, 9100, lambda: playbook(*changed, playbook="playbooks/app.yml")
    )
    assert rc == 0, output[-2000:]
    after = running(app)
    print(f"graceful reload: {figures}")
    assert after[0] != before[0] and after[1] == before[1], (before, after)  # new release, same master
    assert figures["releases"] == {after[0]: SCREENS} and not stale, figures
    assert not figures["handshake_failures"] and set(figures["closes"]) <= {1012, 1013}, figures
    assert not figures["event_errors"], figures  # no request dropped by a stopping worker (nurcrm_ops.httpprotocol)
    assert figures["reconnected"] == SCREENS  # the old workers closed every socket, and each came back


def test_reloads_outlive_the_release_gunicorn_started_on(app, inventory, variant, started_on):
    """Keeping two releases, the deploy after the changed one removes the release gunicorn's master started on;
    its reloads go on (gunicorn checks the folder it started in on every reload: the unit starts it outside the
    releases)."""
    master = running(app)[1]
    settings = f'{{"app_releases_kept": 2, "app_source_dir": "{variant("pruned")}"}}'
    rc, output = playbook("-i", inventory, "-e", settings, playbook="playbooks/app.yml")
    assert rc == 0, output[-2000:]
    release, now = running(app)
    kept = app.check_output("ls /opt/nurcrm/releases").split()
    assert now == master and len(kept) == 2 and started_on not in kept, (master, now, kept, started_on)
    reports = app.check_output(f"cat /run/{SERVICE}/worker-*.json")
    assert reports.count(f'"release": "{release}"') == 3, reports


def test_a_rollback_goes_back_the_same_way(app, inventory, site, token):
    before = running(app)
    (rc, output), figures, stale = under_load(
        site, token, 9200, lambda: playbook("-i", inventory, playbook="playbooks/rollback.yml")
    )
    assert rc == 0, output[-2000:]
    after = running(app)
    assert after[0] != before[0] and after[1] == before[1], (before, after)
    assert figures["releases"] == {after[0]: SCREENS} and not stale and not figures["handshake_failures"], figures


def test_a_release_that_fails_its_check_is_switched_back_and_the_run_fails_naming_it(app, inventory, variant):
    before = running(app)
    broken = variant("broken", broken=True)
    rc, output = playbook("-i", inventory, "-e", f"app_source_dir={broken}", playbook="playbooks/app.yml")
    assert rc != 0
    assert "failed on release" in output and "Check this host" in output, output[-2000:]
    assert f"It serves release {before[0]} again." in output, output[-2000:]
    assert running(app)[0] == before[0]
    reports = app.check_output(f"cat /run/{SERVICE}/worker-*.json")
    assert reports.count(f'"release": "{before[0]}"') == 3, reports
