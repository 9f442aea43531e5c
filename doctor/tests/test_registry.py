"""The registry: every check declared once and consistently, prerequisites that skip, walk order,
and the fix line that starts with the bundle's own rerun of the layer."""

import re
from pathlib import Path

import pytest
import yaml
from conftest import ONE_HOST, make_facts

from doctor.registry import LAYERS, REGISTRY, ROOT, SITE, STEP_INDEX, STEPS, evaluate


def test_check_names_are_unique_and_every_step_has_checks():
    names = [c.name for c in REGISTRY]
    assert len(names) == len(set(names))
    assert {c.step for c in REGISTRY} == {s.name for s in STEPS}


def test_the_walk_follows_the_checklists_steps():
    assert [STEP_INDEX[c.step] for c in REGISTRY] == sorted(STEP_INDEX[c.step] for c in REGISTRY)


def layer_play(playbook):
    """The layer's own play in its playbook: the first that is not an import (the takeover's look comes first)."""
    return next(play for play in yaml.safe_load((ROOT / playbook).read_text()) if "hosts" in play)


def test_every_layers_playbook_exists_and_site_yml_imports_it():
    imported = {entry["ansible.builtin.import_playbook"] for entry in yaml.safe_load((ROOT / "site.yml").read_text())}
    for layer, spec in LAYERS.items():
        if spec.playbook:
            assert (ROOT / spec.playbook).is_file(), layer
            assert spec.playbook in imported, f"site.yml does not import {spec.playbook}"
            hosts = layer_play(spec.playbook)["hosts"]
            assert hosts == spec.group, f"{spec.playbook} runs on {hosts}, the doctor reruns it on {spec.group}"


def test_every_checklist_item_of_a_step_is_claimed_by_one_molecule_test_file():
    """Each file of molecule/default/tests proves its ITEMS, the doctor's checks of them included."""
    claimed = {}
    for path in (ROOT / "molecule" / "default" / "tests").glob("test_*.py"):
        items = re.search(r"^ITEMS = \(([\d, ]+),?\)$", path.read_text(), re.M)
        for item in map(int, items.group(1).replace(" ", "").strip(",").split(",")) if items else []:
            assert item not in claimed, f"item {item}: {claimed.get(item)} and {path.name}"
            claimed[item] = path.name
    assert {step.item for step in STEPS} <= set(claimed), claimed


def test_a_check_whose_prerequisite_failed_is_skipped_with_the_reason():
    facts = make_facts()
    facts.hosts[ONE_HOST]["gunicorn"]["unit"]["ActiveState"] = "inactive"
    results = {r.check: r for r in evaluate(facts)}
    assert results["gunicorn_active"].status == "fail"
    skipped = results["gunicorn_worker_count"]
    assert (skipped.status, skipped.evidence) == ("skip", "needs gunicorn_active, which failed")
    assert results["gunicorn_worker_class"].status == "pass", "it needs nothing: it still runs"


def test_a_skip_propagates_down_the_client_side():
    facts = make_facts()
    facts.tls["error"] = "certificate rejected: self-signed certificate"
    results = {r.check: r for r in evaluate(facts)}
    assert results["handshake_upgrades"].evidence == "needs tls_certificate, which failed"
    assert results["consumer_accepts_token"].evidence == "needs handshake_upgrades, which was skipped"
    assert results["delivery"].status == "skip"


def test_a_result_names_its_host_and_the_client_side_names_the_public_name():
    results = evaluate(make_facts())
    hosts = {r.check: r.host for r in results}
    assert hosts["gunicorn_active"] == ONE_HOST
    assert hosts["handshake_upgrades"] == "localhost"
    assert all(r.host for r in results)


def test_the_first_failure_is_the_first_in_walk_order():
    facts = make_facts()
    facts.hosts[ONE_HOST]["redis"]["ping"] = "Connection refused"
    facts.hosts[ONE_HOST]["gunicorn"]["config"]["worker_class"] = "sync"
    first = next(r for r in evaluate(facts) if r.status == "fail")
    assert (first.step, first.check) == ("gunicorn", "gunicorn_worker_class")


def test_a_fix_away_from_the_bundle_says_where_to_run_it(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    facts = make_facts(inventory=str(ROOT / "inventory" / "local"))
    facts.hosts[ONE_HOST]["gunicorn"]["unit"]["ActiveState"] = "failed"
    first = next(r for r in evaluate(facts) if r.status == "fail")
    expected = f"cd {ROOT} && ansible-playbook playbooks/asgi.yml -i {ROOT}/inventory/local --limit {ONE_HOST}  # "
    assert first.fix.startswith(expected), first.fix


def test_needs_name_earlier_checks_on_the_same_hosts():
    seen = {}
    for registered in REGISTRY:
        for need in registered.needs:
            assert need in seen, f"{registered.name} needs {need}, registered later"
            assert seen[need].scope in (registered.scope, (SITE,))
        seen[registered.name] = registered


@pytest.mark.parametrize("playbook", sorted({spec.playbook for spec in LAYERS.values() if spec.playbook}))
def test_each_layers_playbook_runs_the_role_of_that_layer_alone(playbook):
    play = layer_play(playbook)
    assert [r["role"] if isinstance(r, dict) else r for r in play["roles"]] == [Path(playbook).stem]
    first = yaml.safe_load((ROOT / playbook).read_text())[0]
    assert first.get("ansible.builtin.import_playbook") == "takeover.yml", f"{playbook} does not look first"


def test_a_host_the_probe_saw_without_root_is_skipped_saying_what_it_could_not_read():
    facts = make_facts()
    facts.hosts[ONE_HOST].update(root=False, user="deploy", unreadable=["/etc/nurcrm/app.env", "nginx -T"])
    results = evaluate(facts)
    on_host = [r for r in results if r.host == ONE_HOST]
    assert on_host and all(r.status == "skip" for r in on_host)
    assert on_host[0].evidence == "the probe ran as deploy, not root: it could not read /etc/nurcrm/app.env, nginx -T"
    consumer = next(r for r in results if r.check == "consumer_accepts_token")
    assert consumer.status == "skip" and "no token minted" in consumer.evidence
