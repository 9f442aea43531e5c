"""A demo company with two branches, their tables and a staff user, for a local run; and the watchdog.

The watchdog (user `watchdog`) is the monitoring doctor's: a company of its own with one table, so that
the test notifications the doctor sends every minute reach no demo screen.

The ids are fixed so that docs and scripts can name them; a second run changes nothing.
"""

import uuid

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.cafe.models import Table
from apps.users.models import Branch, Company

DEMO_COMPANY_ID = uuid.UUID("5eed0000-0000-4000-8000-000000000001")
DEMO_BRANCHES = {
    "Main hall": (uuid.UUID("5eed0000-0000-4000-8000-0000000000b1"), 6),
    "Terrace": (uuid.UUID("5eed0000-0000-4000-8000-0000000000b2"), 3),
}
DEMO_USER = "demo"
WATCHDOG_COMPANY_ID = uuid.UUID("5eed0000-0000-4000-8000-0000000000dc")
WATCHDOG_USER = "watchdog"


class Command(BaseCommand):
    help = "Create the demo company, branches, tables and user (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--password", help="set the demo user's password (without it the user has none; use issue_token)"
        )

    @transaction.atomic
    def handle(self, *args, password=None, **options):
        created = []
        company, new = Company.objects.get_or_create(id=DEMO_COMPANY_ID, defaults={"name": "Demo Cafe"})
        created += ["company"] if new else []
        for name, (branch_id, table_count) in DEMO_BRANCHES.items():
            branch, new = Branch.objects.get_or_create(id=branch_id, defaults={"company": company, "name": name})
            created += [f"branch {name}"] if new else []
            for number in range(1, table_count + 1):
                _, new = Table.objects.get_or_create(company=company, branch=branch, number=number)
                created += [f"table {name} #{number}"] if new else []
        user = self.user(DEMO_USER, company, created)
        if password and not user.check_password(password):
            user.set_password(password)
            user.save()
            created.append(f"password of {DEMO_USER}")

        watchdog, new = Company.objects.get_or_create(id=WATCHDOG_COMPANY_ID, defaults={"name": "Watchdog"})
        created += ["company Watchdog"] if new else []
        _, new = Table.objects.get_or_create(company=watchdog, branch=None, number=1)
        created += ["table Watchdog #1"] if new else []
        self.user(WATCHDOG_USER, watchdog, created)

        self.stdout.write(f"company {company.id} ({company.name})")
        for name, (branch_id, _) in DEMO_BRANCHES.items():
            self.stdout.write(f"branch {branch_id} ({name})")
        self.stdout.write(f"user {DEMO_USER}")
        self.stdout.write(f"company {watchdog.id} ({watchdog.name}), user {WATCHDOG_USER}")
        self.stdout.write(("changed: " + ", ".join(created)) if created else "unchanged")

    @staticmethod
    def user(username, company, created):
        """The user, made without a password (issue_token gives it tokens) when missing."""
        user, new = get_user_model().objects.get_or_create(username=username, defaults={"company": company})
        if new:
            created.append(f"user {username}")
            user.set_unusable_password()
            user.save()
        return user
