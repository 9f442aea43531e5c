"""A host that does not answer, among hosts that do: the walk goes on, the host's first check fails naming it
with a fix no playbook makes, the rest on it are skipped, every other host is still judged, and that failure is
the first to fix. When no host answers the doctor cannot look: one line, exit status 2."""

import json

import pytest
from conftest import (
    INVENTORY,
    PUBLIC_NAME,
    REFUSED,
    FakeHosts,
    client_side,
    make_sentinel_cluster,
    redis_at,
    silence,
    walk_over,
)

from doctor import cli, walk
from doctor.hosts import rendered
from doctor.registry import HOST, evaluate, first_failure


def results_on(results, host):
    return [r for r in results if r.host == host]


def by_check(results):
    return {(r.check, r.host): r for r in results}


def test_an_app_host_that_does_not_answer_fails_once_with_a_manual_fix_and_its_other_checks_wait():
    facts = make_sentinel_cluster()
    silence(facts, "app2")
    on_app2 = results_on(evaluate(facts), "app2")
    first, rest = on_app2[0], on_app2[1:]
    assert (first.check, first.status, first.layer, first.rerun) == ("gunicorn_active", "fail", HOST, None)
    assert first.evidence == f"app2 does not answer: {REFUSED}"
    assert first.fix == (
        f"no playbook restores this: start app2 (or restore its connection); then rerun nurcrm-doctor -i {INVENTORY}"
    )
    assert rest and all((r.status, r.evidence) == ("skip", "needs app2 to answer") for r in rest)


def test_an_app_host_that_does_not_answer_is_the_first_failure_and_every_other_host_still_passes():
    facts = make_sentinel_cluster()
    silence(facts, "app2")
    results = evaluate(facts)
    first = first_failure(results, facts)
    assert (first.check, first.host) == ("gunicorn_active", "app2")
    others = [r for r in results if "app2" not in r.host.split(",")]
    assert others and all(r.ok for r in others), [r for r in others if not r.ok]
    assert by_check(results)["app_hosts_agree_on_redis", "app1,app2"].evidence.endswith("; app2 does not answer")


def test_the_web_hosts_upstream_is_judged_on_the_app_hosts_that_answer():
    """The down host's bind cannot be read: the web host is not blamed for it."""
    facts = make_sentinel_cluster()
    silence(facts, "app2")
    upstream = by_check(evaluate(facts))["nginx_upstream_reaches_every_app_host", "web1"]
    assert upstream.ok, upstream
    assert "reaches app1; app2 does not answer; not judged: ['127.0.2.22:8000']" in upstream.evidence


def test_a_failed_handshake_while_an_app_host_does_not_answer_is_blamed_on_that_host():
    facts = make_sentinel_cluster()
    silence(facts, "app2")
    facts.handshake = {"status": None, "error": "timed out"}
    results = evaluate(facts)
    handshake = by_check(results)["handshake_upgrades", "localhost"]
    assert (handshake.status, handshake.layer, handshake.rerun) == ("fail", HOST, None)
    assert handshake.evidence == f"no answer: timed out; app2 does not answer: {REFUSED}"
    assert first_failure(results, facts).host == "app2", "the host itself, though the handshake comes first"


def sentinel_silent_for_the_apps(facts, name):
    """What the app hosts hear from a Redis host that is off: its Sentinel refuses them."""
    for app in facts.groups["app"]:
        for asked in facts.hosts[app]["redis"]["sentinels"]:
            if asked["address"] == facts.hosts[name]["sentinel"]["address"]:
                asked.update(master=None, answer="Could not connect to Redis: Connection refused")


def test_a_redis_host_that_does_not_answer_leaves_the_quorum_to_the_two_others():
    facts = make_sentinel_cluster()
    sentinel_silent_for_the_apps(facts, "redis3")
    facts.hosts["redis1"]["redis_server"]["replication"]["replicas"].pop(redis_at("redis3"))
    silence(facts, "redis3")
    results = evaluate(facts)
    found = by_check(results)
    quorum = found["sentinel_quorum", "redis1,redis2,redis3"]
    assert quorum.ok and "2 of 3 Sentinels answer, the quorum is 2; no Sentinel answers on redis3" in quorum.evidence
    assert found["sentinels_agree_on_master", "redis1,redis2,redis3"].ok
    master = found["redis_replication", "redis1"]
    assert master.ok and master.evidence.endswith("; redis3 does not answer")
    first = first_failure(results, facts)
    assert (first.check, first.host, first.layer) == ("redis_server_active", "redis3", HOST)
    assert all(r.ok for r in results if "redis3" not in r.host.split(","))


def test_a_master_that_does_not_answer_is_blamed_by_its_replicas_and_the_app_hosts_not_rerun():
    """Before the Sentinels fail over they still name it: what its replicas and the app hosts see is its absence."""
    facts = make_sentinel_cluster()
    silence(facts, "redis1")
    for name in ("redis2", "redis3"):
        facts.hosts[name]["redis_server"]["replication"]["master_link_status"] = "down"
    for app in facts.groups["app"]:
        facts.hosts[app]["redis"]["ping"] = "Could not connect to Redis at 127.0.2.31:6379: Connection refused"
    results = evaluate(facts)
    blamed = [r for r in results if r.check in ("redis_replication", "redis_reachable") and r.host != "redis1"]
    assert [r.host for r in blamed] == ["redis2", "redis3", "app1", "app2"]
    assert all((r.status, r.layer, r.rerun) == ("fail", HOST, None) for r in blamed), blamed
    assert all(r.evidence.endswith(f"; redis1 does not answer: {REFUSED}") for r in blamed)
    assert first_failure(results, facts).host == "redis1"


def test_with_the_web_host_down_the_site_is_still_judged_from_the_client_and_blames_it():
    facts = make_sentinel_cluster()
    silence(facts, "web1")
    facts.tls = {"addresses": ["127.0.0.1"], "error": "TLS connection to localhost failed: Connection refused"}
    facts.handshake, facts.session = {}, {}
    results = evaluate(facts)
    tls = by_check(results)["tls_certificate", "localhost"]
    assert (tls.status, tls.layer) == ("fail", HOST)
    assert tls.evidence == f"TLS connection to localhost failed: Connection refused; web1 does not answer: {REFUSED}"
    assert tls.fix.startswith("no playbook restores this: start web1 (or restore its connection)")
    first = first_failure(results, facts)
    assert (first.check, first.host) == ("nginx_config_valid", "web1")


def test_with_a_web_host_down_while_the_site_answers_the_client_side_checks_pass():
    """A second path to the site (a load balancer, another web host): the client's view is still evidence."""
    facts = make_sentinel_cluster()
    silence(facts, "web1")
    results = evaluate(facts)
    site = [r for r in results if r.host == "localhost"]
    assert [r.check for r in site] == [
        "tls_certificate",
        "tls_certificate_lifetime",
        "handshake_upgrades",
        "consumer_accepts_token",
        "group_exists",
        "delivery",
    ]
    assert all(r.ok for r in site), site
    assert by_check(results)["web_hosts_agree_on_upstream", "web1"].status == "skip"


def test_when_the_first_app_host_does_not_answer_the_next_one_mints_the_token(monkeypatch):
    client_side(monkeypatch)
    fake = walk_over(monkeypatch, FakeHosts(make_sentinel_cluster(), down={"app1"}))
    facts = walk.gather(INVENTORY)
    assert facts.session_host == "app2" and ("app2", "token") in fake.asked and ("app2", "send") in fake.asked
    results = by_check(evaluate(facts))
    assert results["consumer_accepts_token", "localhost"].ok and results["delivery", "localhost"].ok


def test_with_no_web_host_answering_the_public_name_is_the_inventorys(monkeypatch):
    client_side(monkeypatch)
    walk_over(monkeypatch, FakeHosts(make_sentinel_cluster(), down={"web1"}))
    assert walk.gather(INVENTORY).site.server_name == PUBLIC_NAME
    walk_over(monkeypatch, FakeHosts(make_sentinel_cluster()))
    assert walk.gather(INVENTORY).site.server_name == "localhost", "else as the web host's nginx serves it"


@pytest.mark.parametrize(
    "key, value",
    [
        ("nginx_server_name", "app.nurcrm.kg"),
        ("plain", "as written"),
        ("with_ansibles_filter", None),
        ("unset", None),
    ],
)
def test_an_inventory_variable_is_rendered_from_the_hosts_other_variables(key, value):
    variables = {
        "nginx_server_name": "{{ nurcrm_domain }}",
        "nurcrm_domain": "{{ sub }}.nurcrm.kg",
        "sub": "app",
        "plain": "as written",
        "with_ansibles_filter": "{{ sub | ansible.builtin.to_json }}",
    }
    assert rendered(variables, key) == value


def test_a_host_that_stops_answering_during_the_walk_is_judged_as_one_that_does_not_answer(monkeypatch):
    client_side(monkeypatch)
    walk_over(monkeypatch, FakeHosts(make_sentinel_cluster(), stops={"app2"}))
    facts = walk.gather(INVENTORY)
    assert facts.hosts["app2"] == {"unreachable": REFUSED} and "app2" not in facts.walk_logs
    assert first_failure(evaluate(facts), facts).evidence == f"app2 does not answer: {REFUSED}"


def test_the_cluster_healthy_exits_0(doctor):
    code, out, _ = doctor()
    assert code == 0 and "checks pass." in out


def test_an_app_host_down_is_exit_status_1_naming_it_as_the_first_broken(doctor):
    code, out, err = doctor(down={"app2"})
    assert (code, err) == (1, "")
    assert "First broken layer: host on app2 (gunicorn: gunicorn_active)" in out
    assert f"  evidence: app2 does not answer: {REFUSED}" in out


def test_the_json_carries_the_host_that_does_not_answer(doctor):
    code, out, _ = doctor("--json", down={"app2"})
    data = json.loads(out)
    assert code == 1 and not data["healthy"] and data["unreachable"] == {"app2": REFUSED}
    assert (data["first_failure"]["host"], data["first_failure"]["layer"]) == ("app2", HOST)


def test_fix_runs_no_playbook_for_a_host_that_does_not_answer(doctor, monkeypatch):
    monkeypatch.setattr(cli, "rerun", lambda *_, **__: pytest.fail("a playbook was run"))
    code, out, _ = doctor("--fix", down={"app2"})
    assert code == 1
    assert "No playbook restores the first broken layer (host on app2): no playbook restores this: start app2" in out


def test_no_host_answering_is_one_line_and_exit_status_2(doctor):
    every = set(make_sentinel_cluster().hosts)
    code, out, err = doctor(down=every)
    assert (code, out) == (2, "")
    assert err == f"nurcrm-doctor: host web1 is unreachable: {REFUSED}\n"
