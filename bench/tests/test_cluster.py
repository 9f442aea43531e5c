"""The cluster mode's own logic, without containers: CPU readings, the spread of sockets over the app hosts,
deliveries per CPU-second and their extrapolation, the floor's Redis from the app's settings, and choosing
the target."""

import os
import time

import pytest

from bench import __main__ as cli
from bench import report
from bench import target as targets
from bench.scenarios import cpu_used, spread_of
from bench.target import (
    BenchError,
    app_binds,
    docker_host,
    established_by_local,
    floor_redis,
    molecule_inventory,
    parse_env_file,
    unit_cpu_seconds,
)
from bench.tests.test_logic import record

APP1, APP2 = "127.0.2.21:8000", "127.0.2.22:8000"


def stat(pid, comm, utime, stime, cutime=0, cstime=0):
    """A /proc/<pid>/stat line: fields 14 to 17 are utime, stime, cutime and cstime."""
    return f"{pid} ({comm}) S 1 1 1 0 -1 4194560 100 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 4 0 1 1 1"


def test_a_unit_s_cpu_is_systemd_s_own_figure_when_it_keeps_one():
    assert unit_cpu_seconds("nsec 2500000000\n") == 2.5


def test_without_systemd_s_figure_the_unit_s_processes_ticks_are_summed():
    output = "\n".join(
        [
            "hz 100",
            "stat " + stat(10, "gunicorn", 100, 50, cutime=30, cstime=20),  # a dead worker's time in cutime
            "stat " + stat(11, "gunicorn: worker (x)", 200, 100),  # a name with spaces and a parenthesis
            "stat ",  # a worker that ended between listing and reading
        ]
    )
    assert unit_cpu_seconds(output) == pytest.approx(5.0)


@pytest.mark.parametrize("output", ["", "hz 100\n", "stat " + stat(1, "x", 1, 1)])
def test_a_cpu_reading_without_figures_fails(output):
    with pytest.raises(BenchError):
        unit_cpu_seconds(output)


SS = f"""0      0      127.0.2.10:443     127.77.1.1:41000
0      0      {APP1}    127.0.2.10:50000
0      0      {APP1}    127.0.2.10:50002
0      0      {APP2}    127.0.2.10:50004
0      0      127.0.2.21:45000   127.0.2.31:6379
0      0      127.0.2.10:50000   {APP1}
"""


def test_the_spread_counts_connections_whose_local_end_is_an_app_host_s_bind():
    assert established_by_local(SS, [APP1, APP2]) == {APP1: 2, APP2: 1}
    assert established_by_local("", [APP1, APP2]) == {APP1: 0, APP2: 0}


def test_the_spread_leaves_out_the_connections_held_before_the_clients_opened():
    assert spread_of({APP1: 2, APP2: 0}, {APP1: 52, APP2: 50}) == {APP1: 50, APP2: 50}
    assert spread_of(None, None) is None


def test_cpu_used_is_the_difference_per_role_and_host():
    before = {"app": {"app1": 1.0, "app2": 2.0}, "web": {"web1": 0.5}}
    after = {"app": {"app1": 1.75, "app2": 2.5}, "web": {"web1": 0.75}}
    assert cpu_used(before, after) == {"app": {"app1": 0.75, "app2": 0.5}, "web": {"web1": 0.25}}
    assert cpu_used({"floor": 3.0}, {"floor": 3.5}) == {"floor": 0.5}
    assert cpu_used(None, None) is None


def cluster_run(side, n, rep, delivered, app=(1.0, 1.0), web=0.5, floor=0.5, p99=20.0):
    cpu = {"app": {"app1": app[0], "app2": app[1]}, "web": {"web1": web}} if side == "stack" else {"floor": floor}
    return {
        "side": side,
        "n": n,
        "rate": 5.0,
        "rep": rep,
        "delivered": delivered,
        "delivered_ratio": 1.0,
        "latency_ms": {"count": 1, "p50": p99 / 2, "p95": p99, "p99": p99, "max": p99},
        "client": {"loop_lag_ms_max": 1.0, "window_s": 20.0},
        "spread": {APP1: n // 2, APP2: n - n // 2} if side == "stack" else None,
        "cpu_s": cpu,
    }


def test_deliveries_per_cpu_second_divide_by_every_app_host_s_cpu():
    run = cluster_run("stack", 1000, 0, 100_000, app=(4.0, 6.0), web=20.0)
    assert report.per_cpu_second(run, "app") == 10_000
    assert report.per_cpu_second(run, "web") == 5_000
    assert report.per_cpu_second(cluster_run("floor", 1000, 0, 100_000, floor=2.0), "floor") == 50_000
    assert report.per_cpu_second(dict(run, cpu_s=None), "app") is None


def test_the_marginal_figure_cancels_a_window_s_fixed_costs():
    low = cluster_run("stack", 100, 0, 10_000, app=(1.0, 1.0))  # 2 s: 1 s of them fixed
    high = cluster_run("stack", 1000, 0, 100_000, app=(5.5, 5.5))
    assert report.marginal_per_cpu_second(low, high) == pytest.approx(10_000)


def test_the_capacity_of_n_app_hosts_scales_linearly_with_cores():
    assert report.extrapolate(8000.0, hosts=(1, 2, 4), cores=1, rate=5.0) == [
        (1, 8000.0, 1600.0),
        (2, 16000.0, 3200.0),
        (4, 32000.0, 6400.0),
    ]
    assert report.extrapolate(8000.0, hosts=(2,), cores=4)[0][1] == 64000.0


def cluster_records():
    runs = []
    for rep in range(2):
        runs += [
            cluster_run("stack", 100, rep, 10_000, app=(1.0, 1.0), p99=30.0),
            cluster_run("floor", 100, rep, 10_000),
        ]
        runs += [
            cluster_run("stack", 1000, rep, 100_000, app=(4.0, 6.0), web=20.0, p99=60.0),
            cluster_run("floor", 1000, rep, 100_000, p99=40.0),
        ]
    single = [cluster_run("stack", 100, 0, 10_000), cluster_run("floor", 100, 0, 10_000)]
    return [
        record("fanout", single, label="E"),
        record("fanout", runs, label="on the cluster", target_name="cluster", target="cluster"),
    ]


def test_the_capacity_is_taken_at_the_largest_n_with_its_medians():
    records = cluster_records()
    rows = report.cluster_rows(records, report.cluster_variant(records))
    assert [row["n"] for row in rows] == [100, 1000]
    assert rows[1]["spread"] == {APP1: 500, APP2: 500} and rows[1]["ratio_p99"] == 1.5
    found = report.capacity(rows)
    assert (found["n"], found["app"], found["web"], found["floor"]) == (1000, 10_000, 5_000, 200_000)
    assert found["app_cores"] == 0.5 and found["marginal"] == pytest.approx(90_000 / 8)


def test_the_report_keeps_the_single_host_headline_and_adds_a_cluster_section():
    records = cluster_records()
    assert [report.is_cluster(record) for record in records] == [False, True]
    text = report.markdown(records, "E")
    assert text.startswith("# Benchmark") and "Variant **E**." in text
    cluster = text[text.index("## Cluster") : text.index("## How these were measured")]
    assert "**10,000 socket deliveries per CPU-second of the app hosts**" in cluster
    assert "| 8 | 80,000 | 16,000 |" in cluster, "8 app hosts at 1 CPU each"
    assert "one web-host core for every 0.5 app-host cores" in cluster
    assert "127.0.2.21: 500, 127.0.2.22: 500" in cluster and "Linear scaling" in cluster
    assert "## Variants" not in text, "the cluster is not a variant of the single-host stack"


def test_a_report_without_a_cluster_has_no_cluster_section():
    assert "## Cluster" not in report.markdown(cluster_records()[:1], "E")


def test_the_floor_signs_in_to_the_master_the_sentinels_name_as_the_app_s_user():
    env = parse_env_file(
        "# Ansible managed\nREDIS_URL='redis://nurcrm:p%40ss@nurcrm/0'\n"
        "REDIS_SENTINELS='127.0.2.31:26379,127.0.2.32:26379'\nREDIS_SENTINEL_PASSWORD='s'\nREDIS_MASTER_NAME=nurcrm\n"
    )
    asked = []

    def master(sentinels, name, password):
        asked.append((sentinels, name, password))
        return "127.0.2.32", 6379

    assert floor_redis(env, master) == ("redis://nurcrm@127.0.2.32:6379/0", "p@ss")
    assert asked == [("127.0.2.31:26379,127.0.2.32:26379", "nurcrm", "s")]
    assert floor_redis({"REDIS_URL": "redis://127.0.0.1:6379/0"}) == ("redis://127.0.0.1:6379/0", None)


def test_the_app_binds_are_rendered_from_the_host_s_own_address():
    variables = {"nurcrm_address": "127.0.2.21", "asgi_tcp_port": 8000}
    assert app_binds(variables) == [APP1]
    assert app_binds({"asgi_tcp_port": 8000}) == [], "a host without an address of its own binds the socket only"


def test_the_app_binds_come_from_the_cluster_inventory_as_listed():
    """As cluster_target reads them: the inventory's listing, with the bundle's wiring (its asgi_tcp_port)."""
    from doctor.hosts import load_inventory
    from doctor.registry import ROOT

    listed, groups = load_inventory(ROOT / "molecule" / "cluster" / "inventory")
    hostvars = listed["_meta"]["hostvars"]
    binds = [bind for name in groups["app"] for bind in app_binds(hostvars[name])]
    assert binds == [APP1, APP2]


def test_hosts_are_reached_by_docker_exec_as_molecule_reaches_them():
    host = docker_host("app1.nurcrm.test", {"ansible_connection": "community.docker.docker"})
    assert host.command.prefix == ["docker", "exec", "app1.nurcrm.test"]
    with pytest.raises(BenchError, match="docker exec"):
        docker_host("app1", {"ansible_connection": "ssh"})


def test_the_cluster_s_inventory_is_the_newest_molecule_wrote(tmp_path):
    with pytest.raises(BenchError, match="molecule converge -s cluster"):
        molecule_inventory(tmp=tmp_path)
    old, new = tmp_path / "molecule.AAAA.cluster/inventory", tmp_path / "molecule.BBBB.cluster/inventory"
    (tmp_path / "molecule.CCCC.default/inventory").mkdir(parents=True)
    for path, age in ((old, 100), (new, 0)):
        path.mkdir(parents=True)
        os.utime(path, (time.time() - age, time.time() - age))
    assert molecule_inventory(tmp=tmp_path) == new


def test_target_cluster_selects_the_cluster_preset_with_its_inventory(monkeypatch):
    made = []
    monkeypatch.setattr(
        targets,
        "cluster_target",
        lambda inventory: (
            made.append(inventory)
            or targets.Target(
                name="cluster",
                url="wss://x/",
                manage=targets.Command([]),
                host=targets.Command([]),
                gunicorn="systemd:g",
            )
        ),
    )
    options = cli.parse(["fanout", "--target", "cluster", "--inventory", "/tmp/inv", "--n", "100,1000"])
    target = targets.target_from_options(options)
    assert (target.name, made, options.n) == ("cluster", ["/tmp/inv"], [100, 1000])
    assert cli.parse(["fanout"]).target == "container", "the default stays the container"


def test_all_on_the_cluster_converges_it_then_measures_fan_out_and_deploys_under_load(monkeypatch):
    done = []
    monkeypatch.setattr(cli, "ensure_cluster", lambda converge: done.append(("converge", converge)))
    monkeypatch.setattr(cli, "ensure_container", lambda converge: done.append(("container", converge)))
    monkeypatch.setattr(cli, "fanout", lambda options: done.append(("fanout", options.n, options.target)))
    monkeypatch.setattr(cli, "burst", lambda options: done.append(("burst",)))
    monkeypatch.setattr(cli, "memory", lambda options: done.append(("memory",)))
    monkeypatch.setattr(cli, "run_rolling", lambda options: done.append(("rolling", options.screens)))
    monkeypatch.setattr(cli, "write_report", lambda options: done.append(("report",)) or 0)
    assert cli.run_all(cli.parse(["all", "--target", "cluster", "--no-converge"])) == 0
    rolling = ("rolling", cli.rolling.SCREENS)
    assert done == [("converge", False), ("fanout", cli.CLUSTER_NS, "cluster"), rolling, ("report",)]


def test_the_container_target_signs_in_as_the_wired_redis_user():
    """The one-host floor signs in to Redis as the app's user, a value of the bundle's wiring."""
    from doctor.hosts import wired

    assert targets.container_target().floor_redis_url == f"redis://{wired('redis_app_user')}@127.0.0.1:6379/0"
    assert wired("redis_app_user") == "nurcrm"
