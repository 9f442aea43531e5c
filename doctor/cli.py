"""nurcrm-doctor: find the broken layer of a live deployment.

    nurcrm-doctor -i inventory/prod            a table; exit 0 only when every check passes
    nurcrm-doctor -i inventory/local --json    the same as JSON

It changes nothing on the hosts: it reads configuration, processes and logs, mints a token
(no database write), and sends one table_status_changed event of an unchanged table to the
token user's company through the real sender.
"""

import argparse
import json
import sys
import textwrap
import time
from dataclasses import asdict

from doctor.walk import evaluate, gather, recent_log_lines


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="nurcrm-doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--inventory", default="inventory/local", help="Ansible inventory (default: %(default)s)")
    parser.add_argument("--user", help="user to mint the token for (default: inventory var doctor_user, else demo)")
    parser.add_argument("--origin", help="Origin header clients send (default: https://<server_name>)")
    parser.add_argument("--sudo", action="store_true", help="run host commands with sudo (or set ansible_become)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


def report(results, facts, seconds, inventory):
    first = next((r for r in results if r.status == "fail"), None)
    return {
        "inventory": inventory,
        "url": facts.site.url() if facts.site else None,
        "healthy": all(r.ok for r in results),
        "first_failure": asdict(first) if first else None,
        "recent_errors": recent_log_lines(facts) if first else [],
        "results": [asdict(r) for r in results],
        "seconds": round(seconds, 1),
    }


def table(data):
    out = [f"nurcrm doctor: {data['inventory']} -> {data['url']}", ""]
    out.append(f"{'step':<11} {'check':<34} {'status':<6} evidence")
    for r in data["results"]:
        evidence = textwrap.shorten(r["evidence"], 150, placeholder=" ...")
        out.append(f"{r['step']:<11} {r['check']:<34} {r['status'].upper():<6} {evidence}")
        if r["status"] == "fail":
            out.append(f"{'':<11} {'':<34} {'':<6} fix: {r['fix']}")
    out.append("")
    first = data["first_failure"]
    if first:
        out.append(f"First broken layer: {first['layer']} ({first['step']}: {first['check']})")
        out.append(f"  evidence: {first['evidence']}")
        out.append(f"  fix:      {first['fix']}")
        if data["recent_errors"]:
            out.append("  recent errors (last 10 minutes):")
            out += [f"    {line}" for line in data["recent_errors"][-8:]]
    else:
        out.append(f"All {len(data['results'])} checks pass.")
    out.append(f"({data['seconds']} s)")
    return "\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    _, facts = gather(args.inventory, user=args.user, origin=args.origin, sudo=args.sudo)
    data = report(evaluate(facts), facts, time.monotonic() - started, args.inventory)
    print(json.dumps(data, indent=2) if args.json else table(data))
    return 0 if data["healthy"] else 1


if __name__ == "__main__":
    sys.exit(main())
