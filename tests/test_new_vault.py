"""playbooks/new-vault.yml, run for real (Ansible, ansible-vault) on this machine: new random secrets, encrypted;
and, taking over a running server, the secrets its app runs with read from its environment file (the host here
is this machine), so that no user is signed out; none of them in the run's output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE = Path(sys.executable).parent
IMPORTED = ("vault_django_secret_key", "vault_jwt_signing_key", "vault_postgresql_password", "vault_redis_password")


class Loader(yaml.SafeLoader):
    pass


Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def new_vault(tmp_path, *extra):
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    password = tmp_path / "vault-password"
    password.write_text("test-vault-password\n")
    env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(password), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    argv = [str(ANSIBLE / "ansible-playbook"), "playbooks/new-vault.yml", "-i", str(inventory / "hosts.yml")]
    done = subprocess.run(
        [*argv, "-e", f"vault_inventory={inventory}", *extra], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    vault = inventory / "group_vars" / "all" / "vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;"), "the vault is not encrypted"
    view = subprocess.run(
        [str(ANSIBLE / "ansible-vault"), "view", str(vault)], capture_output=True, text=True, env=env, check=True
    )
    return yaml.load(view.stdout, Loader=Loader), done.stdout + done.stderr


def test_a_new_vault_holds_new_random_secrets(tmp_path):
    secrets, _ = new_vault(tmp_path)
    assert len(secrets["vault_django_secret_key"]) == 50 and len(secrets["vault_postgresql_password"]) == 32
    assert len({secrets[name] for name in IMPORTED}) == len(IMPORTED)


@pytest.mark.skipif(os.geteuid() != 0, reason="the import reads the file with become (CI runs as root)")
def test_the_running_apps_secrets_are_kept_and_never_shown(tmp_path):
    app_env = tmp_path / "app.env"
    secret_key = "k$3cr{{ not a template }}%&'\"-django"
    app_env.write_text(
        f"SECRET_KEY='{secret_key}'\nDEBUG=False\nDB_PASSWORD=db-pass-1\n"
        "REDIS_URL=redis://:r%40dis-pass@127.0.0.1:6379/0\n".replace("'\"", "'\"'\"'\"")
    )
    secrets, output = new_vault(tmp_path, "-e", "vault_import_host=localhost", "-e", f"vault_import_env={app_env}")
    assert secrets["vault_django_secret_key"] == secret_key
    assert secrets["vault_postgresql_password"] == "db-pass-1"
    assert secrets["vault_redis_password"] == "r@dis-pass"
    assert len(secrets["vault_jwt_signing_key"]) == 50  # the app had none: made new
    said = " ".join(output.split())
    assert "vault_django_secret_key, vault_postgresql_password, vault_redis_password; made new: the others" in said
    for value in ("db-pass-1", "r@dis-pass", "k$3cr"):
        assert value not in output
    assert json.dumps(secrets)  # plain strings, whatever their characters
