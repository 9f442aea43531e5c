"""The command as a new user runs it: exit statuses, one clear line when it cannot look, --fix's report."""

import os
import re
import subprocess
import sys
from pathlib import Path

from doctor.cli import changes
from doctor.fix import summary
from doctor.registry import REGISTRY, ROOT

DOCTOR = Path(sys.executable).parent / "nurcrm-doctor"  # the console script `make setup` installs
BARE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # no .venv/bin: Ansible's tools must be found beside the doctor


def doctor(*args, cwd=ROOT):
    done = subprocess.run(
        [str(DOCTOR), *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ, PATH=BARE_PATH), timeout=120
    )
    return done.returncode, done.stdout, done.stderr


def one_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_a_misspelled_inventory_is_one_line_and_exit_status_2():
    code, out, err = doctor("-i", "inventory/prd")
    assert (code, out) == (2, "")
    assert one_line(err) == "nurcrm-doctor: inventory inventory/prd: no such file or directory"


def test_an_inventory_without_the_stacks_groups_is_one_line(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    db:\n      hosts:\n        db1:\n")
    code, _, err = doctor("-i", str(tmp_path / "hosts.yml"))
    assert code == 2
    assert one_line(err).startswith("nurcrm-doctor: inventory ") and "no host in group(s) web, app, redis" in err


def test_an_unreachable_host_is_one_line_naming_it(tmp_path):
    """Found with PATH lacking the virtualenv: ansible-inventory ran, the host did not answer."""
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    ghost.example:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n"
        "      ansible_user: deploy\n"
        "  children:\n    web: {hosts: {ghost.example: }}\n    app: {hosts: {ghost.example: }}\n"
        "    redis: {hosts: {ghost.example: }}\n"
    )
    code, _, err = doctor("-i", str(tmp_path / "hosts.yml"))
    assert code == 2
    assert one_line(err).startswith("nurcrm-doctor: host ghost.example is unreachable: "), err


def test_watch_runs_no_command_when_the_doctor_cannot_look(tmp_path):
    """The takeover's measure: a host that does not answer is one line, and the command is not run unmeasured."""
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    ghost.example:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n"
        "  children:\n    web: {hosts: {ghost.example: }}\n    app: {hosts: {ghost.example: }}\n"
        "    redis: {hosts: {ghost.example: }}\n"
    )
    ran = tmp_path / "ran"
    code, out, err = doctor("-i", str(tmp_path / "hosts.yml"), "--watch", "--", "touch", str(ran))
    assert (code, out) == (2, "") and not ran.exists()
    assert one_line(err).endswith("; touch was not run"), err


def test_watch_needs_a_command_that_is_there_and_a_command_needs_watch():
    assert doctor("--watch")[0] == 2 and "--watch needs the command to run after --" in doctor("--watch")[2]
    code, _, err = doctor("--watch", "--", "no-such-command-here")
    assert code == 2 and one_line(err) == "nurcrm-doctor: --watch: no command no-such-command-here here"
    code, _, err = doctor("--", "true")
    assert code == 2 and "a command to run goes with --watch" in err


def test_check_goes_with_fix():
    code, _, err = doctor("--check")
    assert code == 2 and "--check goes with --fix" in err


def test_the_help_states_the_exit_statuses():
    code, out, _ = doctor("--help")
    assert code == 0 and "0 every check passes, 1 a check fails, 2 the doctor could not look" in " ".join(out.split())


PLAYBOOK_OUTPUT = """
PLAY [Nginx] *******************************************************************

TASK [nginx : Install nginx] ***************************************************
ok: [nurcrm-local]

TASK [nginx : Write the site configuration] ************************************
--- before: /etc/nginx/conf.d/nurcrm.conf
+++ after: /root/.ansible/tmp/nurcrm.conf.j2
@@ -90,7 +90,7 @@
-        proxy_set_header Connection "close";
+        proxy_set_header Connection $connection_upgrade;
changed: [nurcrm-local]

TASK [nginx : Validate the whole configuration with nginx -t] ******************
ok: [nurcrm-local]

RUNNING HANDLER [nginx : Reload nginx] *****************************************
changed: [nurcrm-local]

PLAY RECAP *********************************************************************
nurcrm-local               : ok=14   changed=2    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
"""


def test_the_reruns_report_is_its_changed_tasks_with_their_diffs_and_the_recap():
    changed, recap = summary(PLAYBOOK_OUTPUT)
    assert changed == [
        [
            "TASK [nginx : Write the site configuration]",
            "--- before: /etc/nginx/conf.d/nurcrm.conf",
            "+++ after: /root/.ansible/tmp/nurcrm.conf.j2",
            "@@ -90,7 +90,7 @@",
            '-        proxy_set_header Connection "close";',
            "+        proxy_set_header Connection $connection_upgrade;",
            "changed: [nurcrm-local]",
        ],
        ["RUNNING HANDLER [nginx : Reload nginx]", "changed: [nurcrm-local]"],
    ]
    assert recap[0].startswith("PLAY RECAP") and "changed=2" in recap[1]


def test_a_looped_task_counts_as_changed_when_any_item_changed():
    output = """
TASK [redis : Enable and start redis-server (and redis-sentinel)] **************
ok: [redis2] => (item=redis-server)
changed: [redis2] => (item=redis-sentinel)

PLAY RECAP *********************************************************************
redis2                     : ok=13   changed=1    unreachable=0    failed=0    skipped=4    rescued=0    ignored=0
"""
    changed, _ = summary(output)
    assert changed == [
        [
            "TASK [redis : Enable and start redis-server (and redis-sentinel)]",
            "ok: [redis2] => (item=redis-server)",
            "changed: [redis2] => (item=redis-sentinel)",
        ]
    ]


def test_before_and_after_lists_each_check_that_changed():
    before = {"results": [{"check": "a", "host": "h", "status": "fail"}, {"check": "b", "host": "h", "status": "pass"}]}
    after = {"results": [{"check": "a", "host": "h", "status": "pass"}, {"check": "b", "host": "h", "status": "pass"}]}
    assert changes(before, after) == ["a on h: FAIL -> PASS"]


def test_the_list_names_every_registered_check_in_walk_order_and_walks_nothing():
    """--list prints each check once, in walk order, with what it proves and what fixes it; it needs no inventory."""
    code, out, err = doctor("--list", "-i", "inventory/none")
    assert (code, err) == (0, ""), err
    listed = re.findall(r"^  (\w+): (.+)$", out, flags=re.M)
    assert [name for name, _ in listed] == [c.name for c in REGISTRY]
    assert all(proves.endswith(".") for _, proves in listed), listed
    assert out.count("fixed by") == len(REGISTRY)


def test_every_check_says_in_one_line_what_it_proves():
    """A check's docstring opens with one short paragraph: --list and docs/doctor.md print it."""
    long = {c.name: c.proves for c in REGISTRY if not c.proves or len(c.proves) > 120}
    assert not long, f"give these checks a first paragraph of at most 120 characters: {long}"


def test_docs_show_the_list_as_the_registry_prints_it():
    """docs/doctor.md holds `nurcrm-doctor --list`'s output between two markers; a check added, renamed or
    described anew without the docs fails here (the fix: paste the command's output between them)."""
    page = (ROOT / "docs" / "doctor.md").read_text()
    shown = re.search(r"<!-- nurcrm-doctor --list -->\n```\n(.*?)\n```\n<!-- end nurcrm-doctor --list -->", page, re.S)
    assert shown, "docs/doctor.md lost the markers around the list of checks"
    code, out, err = doctor("--list")
    assert code == 0, err
    assert shown.group(1) == out.rstrip("\n"), "docs/doctor.md differs from `nurcrm-doctor --list`: paste its output"
