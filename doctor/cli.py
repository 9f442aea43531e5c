"""nurcrm-doctor: find the broken layer of a live deployment, and rerun it with --fix.

    nurcrm-doctor -i inventory/prod                a table; exit status 0: every check passes
    nurcrm-doctor -i inventory/prod --json         the same as JSON
    nurcrm-doctor -i inventory/prod --fix          rerun the first broken layer's playbook, walk again
    nurcrm-doctor -i inventory/prod --fix --check  what that rerun would change, changing nothing
    nurcrm-doctor -i inventory/prod --metrics F.prom  also write the run as metrics for node-exporter (not with --fix)
    nurcrm-doctor --list                           every check: its step, what it proves, where, what fixes it
    nurcrm-doctor -i inventory/prod --watch -- ansible-playbook site.yml -i inventory/prod -e takeover=true
                                                   run a command while trying the site's front page and a
                                                   WebSocket handshake 4 times a second; how long each failed
    nurcrm-doctor -i inventory/crm --token-command 'python manage.py shell -c "..."'
                                                   a server the bundle did not deploy, with its own token

A server the bundle did not deploy (no /etc/nurcrm) is read as it runs: gunicorn's unit or process, its command
line and config file, the app's settings through its own interpreter, nginx -T through crossplane. Its checks
say what to change by hand; --fix refuses there (taking it over is `site.yml --check --diff` first).

Exit status: 0 every check passes (after --fix: the second walk), 1 a check fails (a host that does not
answer while others do fails too), 2 the doctor could not look (a missing tool, an unreadable inventory,
no host that answers, a host seen without root: one line on stderr; --metrics then writes
nurcrm_doctor_up 0), the metrics file cannot be written, or --fix refuses a host the bundle did not deploy.

The walk changes nothing on the hosts: it reads configuration, processes and logs, mints a token
(no database write), and sends one table_status_changed event of an unchanged table to the token
user's company through the real sender. Only --fix changes anything, and only by a playbook.

A token never goes on a command line: give one in the environment (NURCRM_DOCTOR_TOKEN), or a command that
prints one on the app host (--token-command, or doctor_token_command in the inventory).
"""

import argparse
import json
import os
import shutil
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

from doctor import metrics
from doctor.fix import rerun
from doctor.hosts import DoctorError, use_own_tools
from doctor.registry import TAKEOVER, first_failure, listing
from doctor.site import WS_PATH
from doctor.walk import SERVICE, gather, measured, recent_log_lines, walk
from doctor.watch import LIMIT_S, describe, watch_command

HEALTHY, BROKEN, CANNOT_LOOK = 0, 1, 2


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="nurcrm-doctor",
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 every check passes, 1 a check fails, 2 the doctor could not look (--metrics writes "
        "nurcrm_doctor_up 0) or cannot write the --metrics file.",
    )
    parser.add_argument("-i", "--inventory", default="inventory/local", help="Ansible inventory (default: %(default)s)")
    parser.add_argument("--user", help="user to mint the token for (default: inventory var doctor_user, else demo)")
    parser.add_argument("--origin", help="Origin header clients send (default: https://<server_name>)")
    parser.add_argument("--sudo", action="store_true", help="run host commands with sudo (or set ansible_become)")
    parser.add_argument(
        "--ws-path", help=f"the WebSocket path clients open (default: inventory var doctor_ws_path, else {WS_PATH})"
    )
    parser.add_argument(
        "--unit",
        help=f"gunicorn's systemd unit, or its supervisor program's name (default: doctor_unit, else {SERVICE})",
    )
    parser.add_argument(
        "--token-command",
        metavar="COMMAND",
        help="a command run on the first app host, as the app's user in its directory, that prints a token "
        "(default: doctor_token_command; the bundle's own hosts mint one). A token itself: NURCRM_DOCTOR_TOKEN",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--list", action="store_true", help="print every check and what fixes it; no walk")
    parser.add_argument("--fix", action="store_true", help="rerun the first broken layer's playbook, then walk again")
    parser.add_argument("--check", action="store_true", help="with --fix: show what the rerun would change, only")
    parser.add_argument(
        "--metrics",
        metavar="FILE",
        type=Path,
        help="also write the run as Prometheus metrics to FILE (*.prom, for node-exporter's textfile collector), "
        "replacing it at once; nurcrm_doctor_up 0 when the doctor could not look. Not with --fix",
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="run the command after -- while trying the site's front page and a WebSocket handshake (signed in "
        f"with the doctor's token, when it has one); how long each failed. Exit status: the command's, else 1 "
        f"when either failed for {LIMIT_S:g} s or more",
    )
    parser.add_argument("command", nargs="*", help="with --watch: the command to run (after --)")
    args = parser.parse_args(argv)
    if args.watch and not args.command:
        parser.exit(CANNOT_LOOK, "nurcrm-doctor: --watch needs the command to run after --\n")
    if args.command and not args.watch:
        parser.error(f"unrecognized arguments: {' '.join(args.command)} (a command to run goes with --watch)")
    if args.watch and not shutil.which(args.command[0]):
        parser.exit(CANNOT_LOOK, f"nurcrm-doctor: --watch: no command {args.command[0]} here\n")
    if args.watch and (args.fix or args.metrics):
        parser.exit(CANNOT_LOOK, "nurcrm-doctor: --watch goes without --fix and --metrics\n")
    if args.check and not args.fix:
        parser.error("--check goes with --fix")
    if args.metrics:
        # One line, before the walk: a watcher's file must not end up where nothing reads it.
        if args.fix:
            parser.exit(CANNOT_LOOK, "nurcrm-doctor: --metrics goes without --fix: the watcher only looks\n")
        if args.metrics.suffix != ".prom":
            parser.exit(CANNOT_LOOK, f"nurcrm-doctor: --metrics {args.metrics}: node-exporter reads only *.prom\n")
        if not args.metrics.parent.is_dir():
            parser.exit(CANNOT_LOOK, f"nurcrm-doctor: --metrics {args.metrics}: no directory {args.metrics.parent}\n")
    return args


def report(results, facts, seconds):
    first = first_failure(results, facts)
    return {
        "inventory": facts.inventory,
        "url": facts.site.url() if facts.site else None,
        "hosts": {group: names for group, names in facts.groups.items() if names},
        # Hosts that did not answer, and why: the first check of each fails, the rest on it are skipped.
        "unreachable": facts.silent(*facts.groups),
        # Hosts the probe could not see for want of root: their checks are skipped, the walk is incomplete.
        "blind": {h.name: h.blind for h in facts.of(*facts.groups) if h.blind},
        # Hosts the bundle did not deploy: no playbook is offered for them, and --fix refuses.
        "unmanaged": [h.name for h in facts.answering(*facts.groups) if not h.managed],
        "healthy": all(r.ok for r in results),
        "first_failure": asdict(first) if first else None,
        "recent_errors": recent_log_lines(facts) if first else [],
        "results": [asdict(r) for r in results],
        "measured": measured(facts),
        "seconds": round(seconds, 1),
    }


def table(data):
    width = max([len(r["check"]) for r in data["results"]] + [5]) + 1
    hosts = max([len(r["host"]) for r in data["results"]] + [4]) + 1
    out = [f"nurcrm doctor: {data['inventory']} -> {data['url']}", ""]
    out.append(f"{'step':<10} {'check':<{width}} {'host':<{hosts}} {'status':<6} evidence")
    for r in data["results"]:
        evidence = textwrap.shorten(r["evidence"], 150, placeholder=" ...")
        out.append(f"{r['step']:<10} {r['check']:<{width}} {r['host']:<{hosts}} {r['status'].upper():<6} {evidence}")
        if r["status"] == "fail":
            out.append(f"{'':<10} {'':<{width}} {'':<{hosts}} {'':<6} fix: {r['fix']}")
    out.append("")
    first = data["first_failure"]
    if first:
        where = first["rerun"]["limit"] if first["rerun"] else first["host"]
        out.append(f"First broken layer: {first['layer']} on {where} ({first['step']}: {first['check']})")
        out.append(f"  evidence: {first['evidence']}")
        out.append(f"  fix:      {first['fix']}")
        if data["recent_errors"]:
            out.append("  recent errors (last 10 minutes):")
            out += [f"    {line}" for line in data["recent_errors"][-8:]]
    else:
        out.append(f"All {len(data['results'])} checks pass.")
    out.append(f"({data['seconds']} s)")
    return "\n".join(out)


def status(data):
    return HEALTHY if data["healthy"] else BROKEN


def look(args):
    started = time.monotonic()
    options = {"ws_path": args.ws_path, "unit": args.unit, "token_command": args.token_command}
    token = os.environ.get("NURCRM_DOCTOR_TOKEN") or None
    facts, results = walk(args.inventory, user=args.user, origin=args.origin, sudo=args.sudo, token=token, **options)
    return report(results, facts, time.monotonic() - started)


def changes(before, after):
    """Each result whose status differs between two walks."""
    was = {(r["check"], r["host"]): r["status"] for r in before["results"]}
    return [
        f"{r['check']} on {r['host']}: {was.get((r['check'], r['host']), 'absent').upper()} -> {r['status'].upper()}"
        for r in after["results"]
        if was.get((r["check"], r["host"])) != r["status"]
    ]


def fix(args, before, say):
    """--fix: rerun the first broken layer, walk again; what to print and the exit status."""
    first = before["first_failure"]
    if before["unmanaged"]:
        strangers = ", ".join(before["unmanaged"])
        raise DoctorError(
            f"--fix refused: {strangers} {'was' if len(before['unmanaged']) == 1 else 'were'} not deployed by the "
            f"bundle (no /etc/nurcrm), and its playbooks would replace what is there; "
            f"{TAKEOVER.replace('<inventory>', before['inventory'])} (docs/doctor.md)"
        )
    if not first:
        return {"before": before, "rerun": None, "after": None}, HEALTHY, ["Nothing to fix: every check passes."]
    if not first["rerun"]:
        lines = [f"No playbook restores the first broken layer ({first['layer']} on {first['host']}): {first['fix']}"]
        return {"before": before, "rerun": None, "after": None}, BROKEN, lines
    say(f"Rerunning the {first['layer']} layer on {first['rerun']['limit']}" + (" (--check)" if args.check else ""))
    outcome = rerun(first, check_mode=args.check)
    lines = [f"$ {outcome.command}"]
    for task in outcome.changed:
        lines += [f"  {line}" for line in task]
    lines += [f"  {line}" for line in outcome.recap]
    done = {"before": before, "rerun": asdict(outcome), "after": None}
    if args.check:
        lines.append("--check: nothing was changed, so the walk is not repeated.")
        return done, BROKEN, lines
    if outcome.rc != 0:
        lines.append(f"The playbook failed (exit status {outcome.rc}); walking again to show where things stand.")
    done["after"] = look(args)
    return done, status(done["after"]), lines


def run(args):
    """Walk (and with --fix, rerun and walk again), printing as it goes: the exit status, and the first walk's
    report (None when the doctor could not look)."""
    try:
        before = look(args)
        if not args.fix or before["blind"]:
            print(json.dumps(before, indent=2) if args.json else table(before))
            if before["blind"]:
                raise DoctorError(
                    f"could not see everything on {', '.join(before['blind'])}: "
                    + "; ".join(before["blind"].values())
                    + ". Give the doctor root: ansible_become: true in the inventory, or --sudo"
                )
            return status(before), before
        if not args.json:
            print("Before:\n" + table(before) + "\n")
        done, code, lines = fix(args, before, say=(lambda _: None) if args.json else print)
    except DoctorError as exc:
        print(f"nurcrm-doctor: {exc}", file=sys.stderr)
        return CANNOT_LOOK, None
    if args.json:
        print(json.dumps(done, indent=2))
    else:
        print("\n".join(lines))
        if done["after"]:
            print("\nAfter:\n" + table(done["after"]))
            print("\nBefore -> after:")
            print("\n".join(f"  {line}" for line in changes(before, done["after"])) or "  (no check changed)")
    return code, before


def watched(args):
    """--watch: the site as the walk finds it (and its token), then the command run under a watch of it. The
    command does not run when the doctor cannot look: its interruption would go unmeasured."""
    token = os.environ.get("NURCRM_DOCTOR_TOKEN") or None
    options = {"ws_path": args.ws_path, "unit": args.unit, "token_command": args.token_command}
    try:
        facts = gather(args.inventory, user=args.user, origin=args.origin, sudo=args.sudo, token=token, **options)
    except DoctorError as exc:
        print(f"nurcrm-doctor: {exc}; {args.command[0]} was not run", file=sys.stderr)
        return CANNOT_LOOK
    token = token or facts.on(facts.session_host).probe.get("token")
    status, found, seconds = watch_command(facts.site, token, args.command)
    over = [name for name, each in found.items() if each["longest_s"] >= LIMIT_S]
    if args.json:
        data = {"command": args.command, "status": status, "seconds": seconds, "url": facts.site.url(),
                "limit_s": LIMIT_S, "over_limit": over, "interruption": found}  # fmt: skip
        print(json.dumps(data, indent=2))
    else:
        print(describe(args.command, status, found, seconds))
    return status or (BROKEN if over else HEALTHY)


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        print(listing())
        return HEALTHY
    use_own_tools()
    if args.watch:
        return watched(args)
    code, seen = run(args)
    if args.metrics:
        try:
            metrics.write(args.metrics, metrics.collect(seen, now=time.time()))
        except OSError as exc:
            print(f"nurcrm-doctor: cannot write the metrics to {args.metrics}: {exc.strerror or exc}", file=sys.stderr)
            return CANNOT_LOOK
    return code


if __name__ == "__main__":
    sys.exit(main())
