"""The inventories as Ansible renders them for the playbooks, without a host. An inventory gives facts (its
hosts by group, each host's nurcrm_address when there are several, the domain, the secrets); what each host
is told of the others is the bundle's wiring (playbooks/group_vars/all/wiring.yml): every web host lists
every app host, every app host trusts the web hosts and shares one list of Sentinels (channels_redis
shards by position in it), and one host alone runs every layer on loopback and the unix socket."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WIRING = ROOT / "playbooks" / "group_vars" / "all" / "wiring.yml"
SEVERAL = ["inventory/cluster", "molecule/cluster/inventory"]
ONE = ["inventory/local", "inventory/prod", "molecule/production/inventory"]
SHOWN = ["nurcrm_address", "nginx_server_name", "nginx_upstream_servers", "nginx_proxy_bind", "asgi_socket",
         "asgi_forwarded_allow_ips", "asgi_tcp_binds", "app_allowed_hosts", "app_redis_sentinels", "app_redis_url",
         "app_database_url", "redis_sentinel", "redis_bind_addresses", "postgresql_listen_addresses",
         "postgresql_app_networks", "nurcrm_domain", "vault_redis_password", "vault_postgresql_password"]  # fmt: skip


def rendered(inventory):
    """Each host's SHOWN variables, templated by Ansible itself as a play of the bundle has them (a local debug
    task per host, with the playbooks' group_vars)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    done = subprocess.run(
        ["ansible", "all", "-i", inventory, "--playbook-dir", "playbooks", "-c", "local", "-m", "ansible.builtin.debug",
         "-a", "msg={{ {" + ", ".join(f"'{name}': {name} | default(None)" for name in SHOWN) + "} }}"],
        cwd=ROOT, capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    plays = json.loads(done.stdout)["plays"]
    return {host: result["msg"] for host, result in plays[0]["tasks"][0]["hosts"].items()}


def groups(inventory):
    listed = json.loads(subprocess.run(["ansible-inventory", "-i", inventory, "--list"], cwd=ROOT,
                                       capture_output=True, check=True).stdout)  # fmt: skip
    return {group: listed[group]["hosts"] for group in ("web", "app", "redis", "db")}


@pytest.mark.parametrize("inventory", SEVERAL)
def test_each_host_is_told_of_the_others_by_their_own_addresses(inventory):
    hosts, members = rendered(inventory), groups(inventory)
    address = {host: values["nurcrm_address"] for host, values in hosts.items()}
    assert len(set(address.values())) == len(address), "two hosts share an address"
    apps = [f"{address[host]}:8000" for host in members["app"]]
    sentinels = [f"{address[host]}:26379" for host in members["redis"]]
    db = address[members["db"][0]]
    for host in members["web"]:
        assert hosts[host]["nginx_upstream_servers"] == apps
        assert hosts[host]["nginx_proxy_bind"] == address[host]
        assert hosts[host]["nginx_server_name"] == hosts[host]["nurcrm_domain"]
    for host in members["app"]:
        values = hosts[host]
        assert values["asgi_tcp_binds"] == [f"{address[host]}:8000"]
        assert values["asgi_forwarded_allow_ips"] == [address[web] for web in members["web"]]
        assert values["app_redis_sentinels"] == sentinels
        assert values["app_allowed_hosts"] == [values["nurcrm_domain"]]
        # Under Sentinel the URL's host part is the master's name; the password is the vault's, URL-encoded.
        assert values["app_redis_url"].startswith("redis://nurcrm:") and values["app_redis_url"].endswith("@nurcrm/0")
        assert values["app_database_url"].startswith("postgres://nur:")
        assert values["app_database_url"].endswith(f"@{db}:5432/nurcrm")
    for host in members["redis"]:
        assert hosts[host]["redis_bind_addresses"] == [address[host]]
        assert hosts[host]["redis_sentinel"] is True
    for host in members["db"]:
        assert hosts[host]["postgresql_listen_addresses"] == address[host]
        assert hosts[host]["postgresql_app_networks"] == [f"{address[app]}/32" for app in members["app"]]


@pytest.mark.parametrize("inventory", ONE)
def test_one_host_runs_every_layer_on_loopback_and_the_socket(inventory):
    hosts = rendered(inventory)
    assert len(hosts) == 1
    (values,) = hosts.values()
    assert values["nurcrm_address"] is None
    assert values["nginx_upstream_servers"] == [f"unix:{values['asgi_socket']}"] == ["unix:/home/nur/asgi.sock"]
    assert (values["asgi_tcp_binds"], values["nginx_proxy_bind"], values["app_redis_sentinels"]) == ([], "", [])
    assert values["asgi_forwarded_allow_ips"] == ["127.0.0.1", "::1"]
    assert values["redis_sentinel"] is False and values["redis_bind_addresses"] == ["127.0.0.1", "-::1"]
    assert (values["postgresql_listen_addresses"], values["postgresql_app_networks"]) == ("localhost", [])
    assert values["nginx_server_name"] == values["nurcrm_domain"] and values["app_allowed_hosts"] == [
        values["nurcrm_domain"]
    ]
    assert values["app_redis_url"].startswith("redis://nurcrm:") and values["app_redis_url"].endswith(
        "@127.0.0.1:6379/0"
    )
    assert values["app_database_url"].endswith("@127.0.0.1:5432/nurcrm")


def inventory_files():
    return sorted(p for folder in SEVERAL + ONE for p in (ROOT / folder).rglob("*.yml"))


@pytest.mark.parametrize("path", inventory_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_an_inventory_gives_facts_not_the_bundles_wiring(path):
    """A name the wiring sets has no place in an inventory's group_vars/all (Ansible ranks the playbooks'
    group_vars/all above it: it would be ignored), and the inventories restate none of it elsewhere either."""
    wiring = set(yaml.safe_load(WIRING.read_text()))
    restated = sorted(wiring & set(yaml.safe_load(path.read_text()) or {}))
    assert not restated, f"{path.relative_to(ROOT)} sets {restated}: the bundle's wiring derives them"


def test_the_secrets_are_the_vaults_by_their_vault_names():
    """The wiring reads each secret by the vault's name, and every inventory's vault gives the ones it needs."""
    wiring = yaml.safe_load(WIRING.read_text())
    for inventory in SEVERAL + ONE:
        vault = yaml.safe_load((ROOT / inventory / "group_vars" / "all" / "vault.yml").read_text()) or {}
        required = [v.split("{{ ")[1].split()[0] for v in wiring.values() if isinstance(v, str) and "vault_" in v
                    and "default(" not in v]  # fmt: skip
        missing = [name for name in required if name not in vault]
        assert not missing, f"{inventory}'s vault lacks {missing}"


def test_preflight_refuses_a_wiring_value_set_in_an_inventorys_group_vars_all(tmp_path):
    """Ansible would ignore it without a word (the playbooks' group_vars/all rank above): preflight names it,
    on the controller, before a host is contacted."""
    shutil.copytree(ROOT / "inventory" / "local", tmp_path / "inventory")
    with (tmp_path / "inventory" / "group_vars" / "all" / "vars.yml").open("a") as values:
        values.write("asgi_socket: /run/elsewhere.sock\n")
    # A vault imported from a running app's .env holds its values !unsafe (playbooks/new-vault.yml).
    with (tmp_path / "inventory" / "group_vars" / "all" / "vault.yml").open("a") as vault:
        vault.write("vault_imported: !unsafe 'k{{ not a template }}'\n")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    done = subprocess.run(["ansible-playbook", "playbooks/preflight.yml", "-i", str(tmp_path / "inventory")],
                          cwd=ROOT, capture_output=True, text=True, env=env)  # fmt: skip
    output = " ".join(done.stdout.split())
    assert done.returncode != 0 and "the inventory sets asgi_socket in group_vars/all" in output, output[-1500:]
    assert "Gathering" not in output and "ok=2 changed=0" in output, output[-1500:]
