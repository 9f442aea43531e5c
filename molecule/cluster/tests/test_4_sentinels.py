"""Sentinels lost: with one down a failover still happens; with two down the doctor says the quorum is lost,
names their hosts, and its fix (the redis layer's rerun on them) brings them back."""

from conftest import (
    DOWN_AFTER_S,
    FAILOVER_TIMEOUT_S,
    doctor_fix,
    failing,
    master_node,
    replication,
    rerun,
    sentinel_master,
    wait_for,
    wait_healthy,
    walked,
)


def test_with_one_sentinel_down_the_master_stopped_is_still_replaced(inventory, redises):
    old = master_node(redises)
    down = next(node for node in redises if node is not old)
    watching = [node for node in redises if node not in (old, down)]
    down.check_output("systemctl stop redis-sentinel")
    try:
        old.check_output("systemctl stop redis-server")
        new_address = wait_for(
            lambda: (address := sentinel_master(watching)) != old.address and address,
            DOWN_AFTER_S + FAILOVER_TIMEOUT_S,
            "a replica promoted by the two Sentinels left",
        )
        assert new_address in {node.address for node in redises if node is not old}
    finally:
        old.check_output("systemctl start redis-server")
        down.check_output("systemctl start redis-sentinel")
    wait_for(lambda: replication(old).get("master_host") == new_address, 30, f"{old.name} a replica again", every=0.5)
    wait_healthy(inventory)


def test_with_two_sentinels_down_the_doctor_says_quorum_lost_and_its_fix_restores_them(inventory, redises):
    down = redises[1:]
    for node in down:
        node.check_output("systemctl stop redis-sentinel")
    try:
        data = walked(inventory)
        first = data["first_failure"]
        assert (first["check"], first["layer"]) == ("sentinel_quorum", "redis"), failing(data)
        assert "quorum lost" in first["evidence"], first
        assert all(node.name in first["evidence"] for node in down), first
        limit = ",".join(node.name for node in down)
        assert rerun(first["fix"]).startswith(
            f"ansible-playbook playbooks/redis.yml -i {inventory} --limit {limit}  # "
        )

        code, fixed = doctor_fix(inventory)
        assert fixed["rerun"]["rc"] == 0 and fixed["rerun"]["changed"], fixed["rerun"]
        assert code == 0 and fixed["after"]["healthy"], failing(fixed["after"])
    finally:
        for node in down:
            node.run("systemctl start redis-sentinel")
