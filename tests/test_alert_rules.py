"""The alert rules (roles/monitoring/files/nurcrm.rules.yml), read by Debian's own promtool and amtool
(make setup puts them in .venv/bin): the rules load, each alert fires in its unit tests
(tests/promtool/nurcrm.rules.test.yml) and says what it means and what answers it, the alert table of
docs/monitoring.md ("Watching it") lists exactly these alerts, and Alertmanager accepts the configuration the
monitoring role renders for each kind of receiver."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "roles" / "monitoring" / "files" / "nurcrm.rules.yml"
UNIT_TESTS = ROOT / "tests" / "promtool" / "nurcrm.rules.test.yml"
ALERTMANAGER_TEMPLATE = ROOT / "roles" / "monitoring" / "templates" / "alertmanager.yml.j2"
MONITORING_DEFAULTS = ROOT / "roles" / "monitoring" / "defaults" / "main.yml"
MONITORING_PAGE = ROOT / "docs" / "monitoring.md"

ALERTS = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]
ALERT_NAMES = [rule["alert"] for rule in ALERTS]


def tool(name):
    path = Path(sys.executable).parent / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make setup` (it extracts promtool and amtool from Debian's packages)")
    return str(path)


def run(*command, cwd=ROOT):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_promtool_accepts_the_rules():
    rc, output = run(tool("promtool"), "check", "rules", str(RULES))
    assert rc == 0, output


def test_promtool_unit_tests_pass():
    """Run from the unit tests' folder: their rule_files are relative to it."""
    rc, output = run(tool("promtool"), "test", "rules", UNIT_TESTS.name, cwd=UNIT_TESTS.parent)
    assert rc == 0, output


def firing_cases():
    """(alertname, eval_time) of every unit test case that expects the alert to fire."""
    for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                yield case["alertname"], case["eval_time"]


def test_the_unit_tests_name_only_alerts_of_the_rules():
    unknown = {name for name, _ in firing_cases()} - set(ALERT_NAMES)
    assert not unknown, f"{UNIT_TESTS.name} tests alerts that {RULES.name} does not have: {sorted(unknown)}"


@pytest.mark.parametrize("alert", ALERT_NAMES)
def test_every_alert_is_shown_firing(alert):
    assert alert in {name for name, _ in firing_cases()}, f"{UNIT_TESTS.name} has no case where {alert} fires"


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_every_alert_says_how_urgent_what_it_means_and_what_answers_it(rule):
    assert rule.get("labels", {}).get("severity") in ("page", "ticket"), f"{rule['alert']}: severity page or ticket"
    missing = {"summary", "description", "runbook"} - set(rule.get("annotations", {}))
    assert not missing, f"{rule['alert']}: no {sorted(missing)} annotation"


def cells(row):
    return [cell.strip().strip("`") for cell in row.strip().strip("|").split("|")]


def monitoring_page_alert_table():
    """The first column of the table headed | alert | ... in docs/monitoring.md, in order."""
    if not MONITORING_PAGE.is_file():
        pytest.fail(f"docs/monitoring.md is missing: it must list every alert of {RULES.name} in a table")
    text = MONITORING_PAGE.read_text()
    for table in re.findall(r"(?:^\|.*\n?)+", text, flags=re.MULTILINE):
        header, _, *rows = table.splitlines()
        if cells(header)[0] == "alert":
            return [cells(row)[0] for row in rows]
    pytest.fail("docs/monitoring.md has no table | alert | what it means | what answers it |")


def test_the_monitoring_page_lists_the_alerts_of_the_rules_in_their_order():
    listed = monitoring_page_alert_table()
    assert listed == ALERT_NAMES, (
        f"docs/monitoring.md's alert table differs from {RULES.name}: "
        f"not on the page {[a for a in ALERT_NAMES if a not in listed]}, "
        f"not in the rules {[a for a in listed if a not in ALERT_NAMES]}, "
        f"page order {listed}, rules order {ALERT_NAMES}"
    )


# The receivers' variables, as an inventory sets them (roles/monitoring/defaults/main.yml says each one).
WEBHOOK = {"monitoring_webhook_url": "http://127.0.0.1:9095/alerts"}
EMAIL = {
    "monitoring_email_to": "ops@example.com",
    "monitoring_smtp_smarthost": "smtp.example.com:587",
    "monitoring_smtp_from": "alertmanager@example.com",
}


def render_alertmanager_config(overrides):
    """The template as the role's template task renders it: Ansible's templar with the role's defaults."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    loader = DataLoader()
    variables = {
        **(loader.load_from_file(str(MONITORING_DEFAULTS)) or {}),
        "inventory_hostname": "mon",
        "ansible_managed": "Ansible managed",
        **overrides,
    }
    return Templar(loader=loader, variables=variables).template(trust_as_template(ALERTMANAGER_TEMPLATE.read_text()))


@pytest.mark.parametrize(
    "overrides", [WEBHOOK, EMAIL, {**WEBHOOK, **EMAIL}], ids=["webhook", "email", "webhook and email"]
)
def test_amtool_accepts_the_alertmanager_config_for_each_receiver(overrides, tmp_path):
    if not ALERTMANAGER_TEMPLATE.is_file():
        pytest.skip(f"{ALERTMANAGER_TEMPLATE.relative_to(ROOT)} does not exist yet (the monitoring role writes it)")
    amtool = tool("amtool")
    config = tmp_path / "alertmanager.yml"
    config.write_text(render_alertmanager_config(overrides))
    rc, output = run(amtool, "check-config", str(config))
    assert rc == 0, f"{output}\n{config.read_text()}"
    receivers = {r["name"]: r for r in yaml.safe_load(config.read_text()).get("receivers", [])}
    configs = [key for receiver in receivers.values() for key in receiver if key.endswith("_configs")]
    expected = {"webhook_configs"} if "monitoring_webhook_url" in overrides else set()
    expected |= {"email_configs"} if "monitoring_email_to" in overrides else set()
    assert set(configs) == expected, f"receivers {receivers}: expected {sorted(expected)} for {overrides}"
