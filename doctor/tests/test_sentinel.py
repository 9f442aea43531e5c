"""Redis under Sentinel (molecule/cluster's layout): every Redis host's server, Sentinel and role, the quorum,
one master for all, and the app hosts finding it through the Sentinels. Each broken case fails naming the
host to rerun (the down one itself where there is one), or says what to do when no playbook restores it."""

import pytest
from conftest import ADDRESS, CKQUORUM_OK, CLUSTER, make_facts, make_sentinel_cluster, redis_at

from doctor.checks.redis import under_sentinel
from doctor.registry import REGISTRY, evaluate

SENTINEL_CHECKS = [c.name for c in REGISTRY if c.when is under_sentinel]
REDIS_HOSTS = ",".join(CLUSTER["redis"])
REFUSED = "Could not connect to Redis at {}: Connection refused"
NOQUORUM = (
    "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master. "
    "Not enough available Sentinels to reach the majority and authorize a failover"
)
WRONGPASS = "NOAUTH Authentication required. AUTH failed: WRONGPASS invalid username-password pair or user is disabled."


def by_check(results):
    found = {}
    for r in results:
        found.setdefault(r.check, {})[r.host] = r
    return found


def first_failure(facts):
    return next(r for r in evaluate(facts) if r.status == "fail")


def sentinel_down(f, *names):
    """redis-sentinel stopped on these hosts: nobody gets an answer there, the others count fewer Sentinels."""
    for name in names:
        address = f.hosts[name]["sentinel"]["address"]
        refused = REFUSED.format(address)
        f.hosts[name]["sentinel"].update(service="inactive", master=None, answer=refused, ckquorum=refused, replicas={})
        for app in CLUSTER["app"]:
            for answer in f.hosts[app]["redis"]["sentinels"]:
                if answer["address"] == address:
                    answer.update(master=None, answer=refused)
    usable = len(CLUSTER["redis"]) - len(names)
    for name in set(CLUSTER["redis"]) - set(names):
        f.hosts[name]["sentinel"]["ckquorum"] = CKQUORUM_OK.replace("3", str(usable)) if usable >= 2 else NOQUORUM


def redis_down(f, name):
    """redis-server stopped on a replica: it answers nothing, and the master lists one replica fewer."""
    refused = REFUSED.format(redis_at(name))
    f.hosts[name]["redis_server"].update(service="inactive", ping=refused, replication={"error": refused})
    master = f.hosts["redis1"]["redis_server"]["replication"]
    del master["replicas"][redis_at(name)]
    master["connected_slaves"] -= 1


def replication(f, name, **values):
    f.hosts[name]["redis_server"]["replication"].update(values)


def app_env(f, app, **values):
    gunicorn = f.hosts[app]["gunicorn"]
    for view in [gunicorn["env"], *gunicorn["worker_env"].values()]:
        view.update(values)


def app_answers(f, app, answer, master=None):
    """What every Sentinel an app host asks answers it."""
    f.hosts[app]["redis"].update(master=master)
    for asked in f.hosts[app]["redis"]["sentinels"]:
        asked.update(master=master, answer=answer)


def other_sentinels(f, app):
    """An app host given Sentinels that no Redis host of the inventory runs (and that do not answer)."""
    app_env(f, app, REDIS_SENTINELS="10.9.9.9:26379")
    for report in f.hosts[app]["gunicorn"]["reports"].values():
        report["redis_sentinel"]["sentinels"] = ["10.9.9.9:26379"]
    f.hosts[app]["redis"].update(
        master=None, sentinels=[{"address": "10.9.9.9:26379", "master": None, "answer": REFUSED.format("10.9.9.9")}]
    )


MANUAL = None  # no playbook restores it: the fix line says what to do

# id: (what breaks, the check, the host of its result, words of the evidence, the layer, (playbook, --limit) or MANUAL)
CASES = {
    "a-replica-down-fails-on-itself": (
        lambda f: redis_down(f, "redis2"),
        "redis_server_active",
        "redis2",
        "redis-server is inactive; PING 127.0.2.32:6379 -> 'Could not connect",
        "redis",
        ("playbooks/redis.yml", "redis2"),
    ),
    "a-replica-down-is-named-by-the-master": (
        lambda f: redis_down(f, "redis2"),
        "redis_replication",
        "redis1",
        "master 127.0.2.31:6379 has 1 of 2 replicas online; not replicating: redis2",
        "redis",
        ("playbooks/redis.yml", "redis2"),
    ),
    "a-replica-whose-link-is-down": (
        lambda f: (
            replication(f, "redis3", master_link_status="down"),
            f.hosts["redis1"]["redis_server"]["replication"]["replicas"].pop(redis_at("redis3")),
        ),
        "redis_replication",
        "redis3",
        "replica of redis1 (127.0.2.31:6379), link down",
        "redis",
        ("playbooks/redis.yml", "redis3"),
    ),
    "a-replica-of-another-master": (
        lambda f: replication(f, "redis3", master_host=ADDRESS["redis2"]),
        "redis_replication",
        "redis3",
        "replica of 127.0.2.32:6379, but the Sentinels name redis1 (127.0.2.31:6379)",
        "redis",
        MANUAL,
    ),
    "a-second-master": (
        lambda f: replication(f, "redis2", role="master", master_host=None, master_port=None, master_link_status=None),
        "redis_replication",
        "redis2",
        "127.0.2.32:6379 is a master, but the Sentinels name redis1 (127.0.2.31:6379)",
        "redis",
        MANUAL,
    ),
    "the-operations-password-refused": (
        lambda f: f.hosts["redis2"]["redis_server"].update(replication={"error": WRONGPASS}),
        "redis_replication",
        "redis2",
        "INFO replication as the operations user: NOAUTH",
        "redis",
        ("playbooks/redis.yml", "redis2"),
    ),
    "a-sentinel-down": (
        lambda f: sentinel_down(f, "redis3"),
        "sentinel_active",
        "redis3",
        "redis-sentinel is inactive; SENTINEL get-master-addr-by-name nurcrm on 127.0.2.33:26379 -> 'Could not",
        "redis",
        ("playbooks/redis.yml", "redis3"),
    ),
    "no-sentinel-conf-on-a-redis-host": (
        lambda f: (f.hosts["redis3"].pop("sentinel"), f.hosts["redis3"]["redis_server"].pop("replication")),
        "sentinel_active",
        "redis3",
        "no sentinel.conf of the bundle",
        "redis",
        ("playbooks/redis.yml", "redis3"),
    ),
    "two-sentinels-down-lose-the-quorum": (
        lambda f: sentinel_down(f, "redis2", "redis3"),
        "sentinel_quorum",
        REDIS_HOSTS,
        "quorum lost: 1 of 3 Sentinels answer, the quorum is 2; no Sentinel answers on redis2, redis3",
        "redis",
        ("playbooks/redis.yml", "redis2,redis3"),
    ),
    "sentinels-that-do-not-count-one-another": (
        lambda f: [f.hosts[name]["sentinel"].update(ckquorum=NOQUORUM) for name in CLUSTER["redis"]],
        "sentinel_quorum",
        REDIS_HOSTS,
        "quorum lost: 3 of 3 Sentinels answer, the quorum is 2; CKQUORUM on redis1, redis2, redis3: NOQUORUM 1 usable",
        "redis",
        MANUAL,
    ),
    "sentinels-disagree-on-the-master": (
        lambda f: f.hosts["redis3"]["sentinel"].update(master=redis_at("redis3"), answer=redis_at("redis3")),
        "sentinels_agree_on_master",
        REDIS_HOSTS,
        "Sentinels name different masters: {'redis1': '127.0.2.31:6379', 'redis2': '127.0.2.31:6379', "
        "'redis3': '127.0.2.33:6379'}",
        "redis",
        MANUAL,
    ),
    "an-app-host-resolves-another-master": (
        lambda f: f.hosts["app2"]["redis"].update(master=redis_at("redis2")),
        "sentinels_agree_on_master",
        REDIS_HOSTS,
        "the Sentinels of the Redis hosts name redis1 (127.0.2.31:6379); "
        "app host(s) resolve {'app2': '127.0.2.32:6379'}",
        "django",
        ("playbooks/app.yml", "app2"),
    ),
    "an-app-host-on-other-sentinels": (
        lambda f: other_sentinels(f, "app2"),
        "app_hosts_agree_on_redis",
        "app1,app2",
        "'app2': 'nurcrm:6379/0 via Sentinels 10.9.9.9:26379 master nurcrm prefix asgi layer redis-pubsub'",
        "django",
        ("playbooks/app.yml", "app1,app2"),
    ),
    "an-app-host-on-other-sentinels-reaches-no-master": (
        lambda f: other_sentinels(f, "app2"),
        "redis_reachable",
        "app2",
        "no Sentinel of REDIS_SENTINELS names master 'nurcrm': {'10.9.9.9:26379': 'Could not connect to Redis at "
        "10.9.9.9: Connection refused'}; no Redis host of the inventory runs them",
        "django",
        ("playbooks/app.yml", "app2"),
    ),
    "an-app-host-on-another-master-name": (
        lambda f: app_env(f, "app2", REDIS_MASTER_NAME="other"),
        "app_hosts_agree_on_redis",
        "app1,app2",
        "'app2': 'nurcrm:6379/0 via Sentinels 127.0.2.31:26379,127.0.2.32:26379,127.0.2.33:26379 master other",
        "django",
        ("playbooks/app.yml", "app1,app2"),
    ),
    "an-app-host-on-another-prefix": (
        lambda f: app_env(f, "app2", CHANNEL_LAYER_PREFIX="other"),
        "app_hosts_agree_on_redis",
        "app1,app2",
        "master nurcrm prefix other layer redis-pubsub'",
        "django",
        ("playbooks/app.yml", "app1,app2"),
    ),
    "sentinels-that-know-no-such-master": (
        lambda f: app_answers(f, "app1", "(nil)"),
        "redis_reachable",
        "app1",
        "they know no master of that name",
        "django",
        ("playbooks/app.yml", "app1"),
    ),
    "a-wrong-sentinel-password": (
        lambda f: app_answers(f, "app1", WRONGPASS),
        "redis_reachable",
        "app1",
        "WRONGPASS",
        "django",
        ("playbooks/app.yml", "app1"),
    ),
    "every-sentinel-down-for-an-app-host": (
        lambda f: app_answers(f, "app1", REFUSED.format("127.0.2.31:26379")),
        "redis_reachable",
        "app1",
        "no Sentinel of REDIS_SENTINELS names master 'nurcrm'",
        "redis",
        ("playbooks/redis.yml", REDIS_HOSTS),
    ),
    "no-redis-cli-on-an-app-host": (
        lambda f: f.hosts["app1"].update(missing=["redis-cli"]),
        "redis_reachable",
        "app1",
        "redis-cli is not installed on app1",
        "redis",
        MANUAL,
    ),
    "a-worker-on-other-sentinels": (
        lambda f: next(iter(f.hosts["app1"]["gunicorn"]["reports"].values()))["redis_sentinel"].update(
            sentinels=["10.9.9.9:26379"]
        ),
        "workers_share_redis",
        "app1",
        "via Sentinels 10.9.9.9:26379 master nurcrm",
        "redis",
        ("playbooks/asgi.yml", "app1"),
    ),
}


def test_a_healthy_cluster_passes_every_check_on_every_host():
    results = by_check(evaluate(make_sentinel_cluster()))
    failing = [r for rs in results.values() for r in rs.values() if not r.ok]
    assert not failing, failing
    assert {check: list(rs) for check, rs in results.items() if check in SENTINEL_CHECKS} == {
        "sentinel_quorum": [REDIS_HOSTS],
        "sentinel_active": CLUSTER["redis"],
        "redis_replication": CLUSTER["redis"],
        "sentinels_agree_on_master": [REDIS_HOSTS],
    }


def test_sentinels_checks_give_no_result_on_a_standalone_redis():
    results = evaluate(make_facts())
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert not [r for r in results if r.check in SENTINEL_CHECKS]


def test_every_sentinel_check_has_a_failing_case():
    assert {case[1] for case in CASES.values()} >= set(SENTINEL_CHECKS)


@pytest.mark.parametrize("case", CASES)
def test_a_broken_sentinel_cluster_fails_naming_the_host_to_fix(case):
    breaks, check, host, evidence, layer, fix = CASES[case]
    facts = make_sentinel_cluster()
    breaks(facts)
    result = by_check(evaluate(facts))[check][host]
    assert (result.status, result.layer) == ("fail", layer), result
    assert evidence in result.evidence, result.evidence
    if fix is MANUAL:
        assert result.rerun is None and result.fix.startswith("no playbook restores this: "), result.fix
    else:
        playbook, limit = fix
        assert result.rerun == {"playbook": playbook, "limit": limit, "inventory": "molecule/cluster/inventory"}


def test_a_replica_down_is_first_broken_on_itself_and_its_own_replication_is_skipped():
    facts = make_sentinel_cluster()
    redis_down(facts, "redis2")
    first = first_failure(facts)
    assert (first.check, first.host, first.rerun["limit"]) == ("redis_server_active", "redis2", "redis2")
    replicas = by_check(evaluate(facts))["redis_replication"]
    assert replicas["redis2"].evidence == "needs redis_server_active, which failed"
    assert replicas["redis3"].ok


def test_one_sentinel_down_keeps_the_quorum_and_is_first_broken_on_its_host():
    facts = make_sentinel_cluster()
    sentinel_down(facts, "redis3")
    results = by_check(evaluate(facts))
    quorum = results["sentinel_quorum"][REDIS_HOSTS]
    assert quorum.ok and "2 of 3 Sentinels answer, the quorum is 2; no Sentinel answers on redis3" in quorum.evidence
    first = first_failure(facts)
    assert (first.check, first.host) == ("sentinel_active", "redis3")
    assert all(r.ok for r in results["redis_reachable"].values()), "the app still finds the master"


def test_two_sentinels_down_are_one_rerun_on_both_hosts():
    facts = make_sentinel_cluster()
    sentinel_down(facts, "redis2", "redis3")
    first = first_failure(facts)
    assert (first.check, first.rerun["limit"]) == ("sentinel_quorum", "redis2,redis3")
    assert first.fix.endswith(
        "--limit redis2,redis3  # starts redis-sentinel on redis2, redis3: until 2 Sentinels agree that the master "
        "is lost, no replica is promoted"
    ), first.fix


def test_after_a_failover_the_app_hosts_view_is_the_new_master():
    """REDIS_URL's host is the master's name: PING and the password checks go to the master the Sentinels name,
    and a fault there is rerun on that Redis host."""
    facts = make_sentinel_cluster(master="redis2")
    results = by_check(evaluate(facts))
    assert all(r.ok for rs in results.values() for r in rs.values())
    assert results["redis_reachable"]["app1"].evidence == "PING 127.0.2.32:6379/0 (master nurcrm by Sentinel) -> PONG"
    facts.hosts["app1"]["redis"]["anonymous_ping"] = "PONG"
    (anonymous,) = [r for r in evaluate(facts) if r.check == "redis_authenticated" and r.status == "fail"]
    assert anonymous.rerun["limit"] == "redis2"
