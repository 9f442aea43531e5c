"""Fill an empty database with the first client's data. Safe to run again.

The manager's password is read from the environment (CRM_MANAGER_PASSWORD), never from the command line.
"""

import os
import uuid
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from apps.cafe.models import Branch, Order, Table
from apps.users.models import Company, User

COMPANY_ID = uuid.UUID("f966441f-0938-49ed-97a7-07a503655ebc")


class Command(BaseCommand):
    help = "Create the demo company, its branch, tables, orders and the manager (idempotent)"

    def handle(self, *args, **options):
        password = os.environ.get("CRM_MANAGER_PASSWORD")
        if not password:
            raise CommandError("Set CRM_MANAGER_PASSWORD")
        company, _ = Company.objects.get_or_create(id=COMPANY_ID, defaults={"name": "Nur Cafe"})
        branch, _ = Branch.objects.get_or_create(company=company, name="Центр", defaults={"address": "Чуй 120"})
        for number in range(1, 7):
            # The terrace tables (5, 6) belong to no branch.
            Table.objects.get_or_create(
                company=company, number=number, defaults={"branch": branch if number <= 4 else None}
            )
        if not Order.objects.filter(company=company).exists():
            for number, total in [(1, "540.00"), (2, "1250.00"), (5, "320.00")]:
                Order.objects.create(
                    company=company, table=Table.objects.get(company=company, number=number), total=Decimal(total)
                )
        manager, created = User.objects.get_or_create(username="manager", defaults={"company": company})
        manager.company, manager.is_staff = company, True
        manager.set_password(password)
        manager.save()
        self.stdout.write(
            self.style.SUCCESS(f"Seeded {company.name} ({company.id}); manager {'created' if created else 'updated'}")
        )
