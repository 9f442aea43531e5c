"""Send a real table_status_changed event and say which groups it went to and who listens."""

import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.cafe.group_state import group_state
from apps.cafe.models import Table
from apps.cafe.views import send_table_status_changed_notification
from apps.users.models import Branch, Company


def _uuid(option, value):
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CommandError(f"{option} {value!r} is not a UUID") from None


class Command(BaseCommand):
    help = "Send table_status_changed for a table of --company (optionally --branch / --table) through the real sender."

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True, help="company UUID")
        parser.add_argument("--branch", help="branch UUID: pick the table from this branch")
        parser.add_argument("--table", help="table UUID (default: the company's or branch's first table)")

    def handle(self, *args, company, branch=None, table=None, **options):
        company_id = _uuid("--company", company)
        if not Company.objects.filter(pk=company_id).exists():
            raise CommandError(f"no company with id {company_id}")
        tables = Table.objects.filter(company_id=company_id)
        if branch:
            branch_id = _uuid("--branch", branch)
            if not Branch.objects.filter(pk=branch_id, company_id=company_id).exists():
                raise CommandError(f"no branch {branch_id} in company {company_id}")
            tables = tables.filter(branch_id=branch_id)
        if table:
            tables = tables.filter(pk=_uuid("--table", table))
        target = tables.first()
        if target is None:
            raise CommandError("no such table" if table else "no table to send about: create one first (seed_demo)")

        groups = send_table_status_changed_notification(target)
        layer = settings.CHANNEL_LAYER
        self.stdout.write(f"sent table_status_changed for {target} ({target.pk}, {target.status}) via {layer} layer")
        for group in groups:
            state = group_state(group)
            count = "?" if state.members is None else state.members
            self.stdout.write(f"  {group}: {count} {state.unit}  [{state.how}]")
