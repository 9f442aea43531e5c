"""The benchmark's sender (bench/, `python -m bench fanout`): table_status_changed events at a fixed
rate through the real sending path, each stamped with its wall-clock send time and a sequence number.

Clients compute latency = receive time - sent_at (the sender and the clients share one clock).
The last line of the output is a JSON summary the benchmark reads: how many events went out.
"""

import json
import statistics
import time
import uuid

from django.core.management.base import BaseCommand, CommandError

from apps.cafe.group_state import group_state
from apps.cafe.groups import company_group
from apps.cafe.models import Table
from apps.cafe.notifications import TABLE_STATUS_CHANGED, _broadcast, table_payload


class Command(BaseCommand):
    help = "Broadcast table_status_changed to --company at --rate per second for --duration seconds (benchmark)."

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True, help="company UUID")
        parser.add_argument("--rate", type=float, default=5.0, help="events a second (default 5)")
        parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending (default 10)")
        parser.add_argument("--run", default="", help="an id the benchmark puts in every payload, to tell runs apart")

    def handle(self, *args, company, rate, duration, run, **options):
        try:
            company_id = uuid.UUID(company)
        except ValueError:
            raise CommandError(f"--company {company!r} is not a UUID") from None
        if rate <= 0 or duration <= 0:
            raise CommandError("--rate and --duration must be positive")
        table = Table.objects.filter(company_id=company_id).order_by("branch_id", "number").first()
        if table is None:
            raise CommandError(f"company {company_id} has no table to send about (seed_demo makes some)")
        group = company_group(company_id)
        members = group_state(group).members
        base = table_payload(table)

        count = max(1, round(rate * duration))
        send_ms, late_ms = [], []
        start = time.monotonic() + 0.05
        for seq in range(count):
            due = start + seq / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            late_ms.append(max(0.0, -delay) * 1000)
            began = time.monotonic()
            # Exactly what send_table_status_changed_notification(table) does, with a stamped payload.
            payload = dict(base, sent_at=time.time(), seq=seq, run=run)
            _broadcast(TABLE_STATUS_CHANGED, table.company_id, table.branch_id, payload)
            send_ms.append((time.monotonic() - began) * 1000)

        summary = {
            "run": run,
            "sent": count,
            "rate": rate,
            "duration": duration,
            "company_id": str(company_id),
            "table_id": str(table.pk),
            "group": group,
            "members_before": members,
            "send_ms_median": round(statistics.median(send_ms), 3),
            "send_ms_max": round(max(send_ms), 3),
            "late_ms_max": round(max(late_ms), 3),
        }
        self.stdout.write(json.dumps(summary))
