"""The production path (molecule/production): a host reached over SSH as the deploy user who becomes
root with sudo, bootstrapped from a provider's root login, serving a certificate from a real ACME
server (Pebble) that renews by itself; preflight's checks of the name and the ports; the doctor over
the same connection, with become and without."""

import asyncio
import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SCENARIO, playbook, receive, socket_to

from tools.fixtures import DOCTOR

pytestmark = pytest.mark.skipif(SCENARIO != "production", reason="molecule/production's own")
testinfra_hosts = ["ansible://web"]

CACHE = Path("~/.cache/nurcrm/production").expanduser()
HOST, PORT = "127.0.3.1", 2222
LIVE = "/etc/letsencrypt/live/app.nurcrm.test"


def ssh(user, *options):
    """One SSH login attempt from the controller, with the scenario's key and known_hosts."""
    return subprocess.run(
        ["ssh", "-i", str(CACHE / "deploy_key"), "-p", str(PORT), "-o", f"UserKnownHostsFile={CACHE / 'known_hosts'}"]
        + ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *options]
        + [f"{user}@{HOST}", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )


# --- SSH and become --------------------------------------------------------------------------
def test_the_deploy_user_logs_in_with_the_key_and_becomes_root_through_sudo(host):
    assert ssh("deploy").returncode == 0
    assert host.check_output("id -u") == "0", "testinfra runs as the deploy user with become"
    assert host.run("sudo -n -l -U deploy").rc == 0


def test_root_and_passwords_cannot_log_in_over_ssh(host):
    refused = ssh("root")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    no_password = ssh("deploy", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password")
    assert no_password.returncode == 255 and "Permission denied (publickey)" in no_password.stderr
    config = host.check_output("sshd -T")
    assert "permitrootlogin no" in config and "passwordauthentication no" in config


def test_the_host_key_is_checked_against_the_known_hosts_written_for_the_run(tmp_path):
    """Another key for the same address in known_hosts: the connection is refused, not trusted on first use."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other_key")], check=True)
    other = (tmp_path / "other_key.pub").read_text().split()[:2]
    (tmp_path / "other").write_text(f"[{HOST}]:{PORT} {' '.join(other)}\n")
    refused = subprocess.run(
        ["ssh", "-i", str(CACHE / "deploy_key"), "-p", str(PORT), "-o", f"UserKnownHostsFile={tmp_path / 'other'}"]
        + ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"deploy@{HOST}", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr


def test_bootstrap_reruns_as_the_deploy_user_and_changes_nothing(inventory):
    returncode, output = playbook("-i", inventory, playbook="playbooks/bootstrap.yml")
    assert returncode == 0, output[-2000:]
    assert "changed=0" in output.split("PLAY RECAP")[-1], output[-1500:]
    assert "deploy logged in with its key and became root: root and password logins go" in output, output[-2000:]


def test_bootstrap_leaves_root_and_passwords_as_they_are_when_the_deploy_key_does_not_log_in(host, inventory, tmp_path):
    """A team whose key does not work is not locked out: the run stops before sshd's settings change."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    dropin = "/etc/ssh/sshd_config.d/50-nurcrm.conf"
    host.check_output(f"mv {dropin} /root/50-nurcrm.conf.kept")  # as a host before its bootstrap
    try:
        # This controller logs in with another key than the one the host lets in as the deploy user.
        other = f"bootstrap_login_key={tmp_path / 'other'}"
        returncode, output = playbook("-i", inventory, "-e", other, playbook="playbooks/bootstrap.yml")
        assert returncode != 0
        assert "deploy could not log in to app.nurcrm.test with its key alone and become root" in output, output[-2000:]
        assert "root and password logins are left as they are" in output
        assert not host.file(dropin).exists, "sshd's settings changed although the deploy user's login failed"
    finally:
        host.check_output(f"mv /root/50-nurcrm.conf.kept {dropin}")


# --- Certificates from the ACME server -------------------------------------------------------
def served_certificate(site):
    """The certificate nginx serves for the name: (serial, issuer's common name), verified with Pebble's root."""
    with site.connect() as tls:
        cert = tls.getpeercert()
    return cert["serialNumber"], dict(item[0] for item in cert["issuer"])["commonName"]


def test_the_certificate_comes_from_the_acme_server_after_a_real_http_01_challenge(host, site):
    serial, issuer = served_certificate(site)
    assert issuer.startswith("Pebble Intermediate CA"), issuer
    assert host.file(f"{LIVE}/fullchain.pem").exists
    assert host.check_output(f"readlink -f {LIVE}/fullchain.pem").startswith("/etc/letsencrypt/archive/")
    challenges = host.check_output(
        "grep -c 'GET /.well-known/acme-challenge/[^ ]* HTTP/1.1\" 200 ' /var/log/nginx/access.log"
    )
    assert int(challenges) >= 1, "Pebble fetched no token from nginx: the challenge was not validated for real"


def test_the_certificate_renews_by_itself_and_nginx_reloads_after(host):
    assert host.service("certbot.timer").is_enabled and host.service("certbot.timer").is_running
    hook = host.file("/etc/letsencrypt/renewal-hooks/deploy/nurcrm-reload-nginx")
    assert hook.exists and hook.mode & 0o111 and "systemctl reload nginx" in hook.content_string
    renewal = host.file("/etc/letsencrypt/renewal/app.nurcrm.test.conf").content_string
    assert "server = https://127.0.3.250:14000/dir" in renewal and "authenticator = webroot" in renewal
    assert "REQUESTS_CA_BUNDLE" in host.check_output("systemctl show -p Environment certbot.service")


def test_a_forced_renewal_changes_the_served_certificate_while_open_sockets_keep_working(host, site, token):
    before, _ = served_certificate(site)

    async def scenario():
        async with socket_to(site, f"token={token}") as ws:
            assert (await receive(ws))["type"] == "connection_established"
            # As certbot's timer runs it: with the environment of certbot.service (the ACME server's CA).
            renewed = await asyncio.to_thread(
                host.run,
                "env $(systemctl show -p Environment --value certbot.service)"
                " certbot renew --force-renewal --no-random-sleep-on-renew",
            )
            assert renewed.rc == 0, renewed.stderr[-1500:]
            await ws.send('{"action": "ping"}')
            assert (await receive(ws))["type"] == "pong", "the open socket did not survive the renewal"

    asyncio.run(scenario())
    deadline = time.monotonic() + 10
    while served_certificate(site)[0] == before:
        assert time.monotonic() < deadline, "nginx still serves the certificate from before the renewal"
        time.sleep(0.5)


# --- Preflight: the name and the ports ---------------------------------------------------------
def test_preflight_warns_when_the_name_does_not_resolve_to_the_host(inventory):
    returncode, output = playbook("-i", inventory, "--tags", "preflight")
    assert returncode == 0, output[-2000:]
    assert "WARNING: app.nurcrm.test resolves to nothing from the controller, not to app.nurcrm.test" in output


def test_preflight_refuses_web_ports_taken_by_another_program_before_anything_changes(host, inventory):
    taker = "nohup python3 -m http.server --bind 127.0.3.9 443 >/dev/null 2>&1 & echo $!"
    pid = host.check_output(f"bash -c {shlex.quote(taker)}")
    try:
        deadline = time.monotonic() + 10
        while host.run("ss -Hltn 'sport = :443' | grep -q 127.0.3.9").rc != 0:
            assert time.monotonic() < deadline, "the stand-in did not listen"
            time.sleep(0.2)
        returncode, output = playbook("-i", inventory, "-e", '{"nginx_listen_addresses": ["127.0.3.9"]}')
    finally:
        host.run(f"kill {pid}")
    assert returncode != 0
    assert "127.0.3.9:443 taken by python3, not nginx" in output, output[-2000:]
    assert "changed=0" in output.split("PLAY RECAP")[-1]


# --- The doctor over the same SSH connection -------------------------------------------------
def doctor(inventory):
    done = subprocess.run([str(DOCTOR), "-i", inventory, "--json"], capture_output=True, text=True, cwd=ROOT)
    return done.returncode, done.stdout, done.stderr


def test_the_doctor_passes_over_ssh_with_become(inventory):
    code, out, err = doctor(inventory)
    data = json.loads(out)
    failing = [(r["check"], r["evidence"]) for r in data["results"] if r["status"] != "pass"]
    assert code == 0 and data["healthy"], failing or err
    tls = next(r for r in data["results"] if r["check"] == "tls_certificate")
    assert "127.0.3.1 (doctor_connect_address)" in tls["evidence"]


def test_without_become_the_doctor_says_what_it_could_not_read(inventory, tmp_path):
    """The same inventory with ansible_become off: one line naming what the deploy user could not read, exit 2."""
    hosts = yaml.safe_load(Path(inventory, "hosts").read_text())
    hosts["all"]["hosts"]["app.nurcrm.test"]["ansible_become"] = False
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (tmp_path / "group_vars").symlink_to(Path(inventory, "group_vars").resolve())
    code, out, err = doctor(str(tmp_path))
    assert code == 2 and "Traceback" not in err, err
    (line,) = err.strip().splitlines()
    assert line.startswith("nurcrm-doctor: could not see everything on app.nurcrm.test: the probe ran as deploy")
    assert "/etc/nurcrm/app.env" in line and "ansible_become: true" in line
    results = json.loads(out)["results"]
    assert not [r for r in results if r["status"] == "fail"], "unread facts must not pass for broken layers"
    assert [r for r in results if r["status"] == "skip" and "the probe ran as deploy" in r["evidence"]]


def test_the_deploy_user_reaches_nothing_secret_without_sudo(host):
    unprivileged = host.run("sudo -u deploy cat /etc/nurcrm/app.env")
    assert unprivileged.rc != 0 and "Permission denied" in unprivileged.stderr
