"""The multi-host inventories as Ansible renders them, without a host: what each host is told of the others
is derived from the hosts' own addresses, so every web host lists every app host, every app host trusts
the web hosts and shares one list of Sentinels (channels_redis shards by position in it)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INVENTORIES = ["inventory/cluster", "molecule/cluster/inventory"]
SHOWN = ["nurcrm_address", "nginx_upstream_servers", "asgi_forwarded_allow_ips", "asgi_tcp_binds",
         "app_redis_sentinels", "redis_bind_addresses", "postgresql_listen_addresses"]  # fmt: skip


def rendered(inventory):
    """Each host's SHOWN variables, templated by Ansible itself (a local debug task per host)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    done = subprocess.run(
        ["ansible", "all", "-i", inventory, "-c", "local", "-m", "ansible.builtin.debug",
         "-a", "msg={{ {" + ", ".join(f"'{name}': {name} | default(None)" for name in SHOWN) + "} }}"],
        cwd=ROOT, capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    plays = json.loads(done.stdout)["plays"]
    return {host: result["msg"] for host, result in plays[0]["tasks"][0]["hosts"].items()}


def groups(inventory):
    listed = json.loads(subprocess.run(["ansible-inventory", "-i", inventory, "--list"], cwd=ROOT,
                                       capture_output=True, check=True).stdout)  # fmt: skip
    return {group: listed[group]["hosts"] for group in ("web", "app", "redis", "db")}


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_each_host_is_told_of_the_others_by_their_own_addresses(inventory):
    hosts, members = rendered(inventory), groups(inventory)
    address = {host: values["nurcrm_address"] for host, values in hosts.items()}
    assert len(set(address.values())) == len(address), "two hosts share an address"
    apps = [f"{address[host]}:8000" for host in members["app"]]
    sentinels = [f"{address[host]}:26379" for host in members["redis"]]
    for host in members["web"]:
        assert hosts[host]["nginx_upstream_servers"] == apps
    for host in members["app"]:
        assert hosts[host]["asgi_tcp_binds"] == [f"{address[host]}:8000"]
        assert hosts[host]["asgi_forwarded_allow_ips"] == [address[web] for web in members["web"]]
        assert hosts[host]["app_redis_sentinels"] == sentinels
    for host in members["redis"]:
        assert hosts[host]["redis_bind_addresses"] == [address[host]]
    for host in members["db"]:
        assert hosts[host]["postgresql_listen_addresses"] == address[host]
