"""Tables and orders of a company's cafe, optionally per branch, and the outbox of their events."""

import uuid

from django.db import models
from django.db.models import F

from apps.users.models import Branch, Company


class VersionedQuerySet(models.QuerySet):
    def update(self, **fields):
        """A bulk update is a change too: every row it touches moves to its next version."""
        fields.setdefault("version", F("version") + 1)
        return super().update(**fields)


class Versioned(models.Model):
    """A row whose every change gets the next version: 1 when created, then +1 on each save() or
    QuerySet.update(), computed by the database under the row's lock, so two concurrent writers never
    get the same version and a later commit always has the higher one. Events and snapshots carry it:
    a client drops what is older than what it shows (docs/protocol.md)."""

    # The database's default too: a release before this one, still serving during a roll, inserts rows
    # without it (expand, then contract).
    version = models.PositiveBigIntegerField(default=1, db_default=1, editable=False)

    objects = VersionedQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, update_fields=None, **kwargs):
        if self._state.adding:
            return super().save(*args, update_fields=update_fields, **kwargs)
        self.version = F("version") + 1
        if update_fields is not None:
            update_fields = {*update_fields, "version"}
        super().save(*args, update_fields=update_fields, **kwargs)
        self.refresh_from_db(fields=["version"])


class Table(Versioned):
    class Status(models.TextChoices):
        FREE = "free"
        OCCUPIED = "occupied"
        RESERVED = "reserved"
        CLEANING = "cleaning"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="tables")
    branch = models.ForeignKey(Branch, on_delete=models.CASCADE, related_name="tables", null=True, blank=True)
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.FREE)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["company", "branch", "number"], name="table_number_unique_per_branch")
        ]

    def __str__(self):
        return self.name or f"Table {self.number}"


class Order(Versioned):
    class Status(models.TextChoices):
        NEW = "new"
        PREPARING = "preparing"
        SERVED = "served"
        PAID = "paid"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="orders")
    branch = models.ForeignKey(Branch, on_delete=models.SET_NULL, related_name="orders", null=True, blank=True)
    table = models.ForeignKey(Table, on_delete=models.SET_NULL, related_name="orders", null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    # [{"name": str, "quantity": int, "price": "12.50"}]; prices as strings keep Decimal exact.
    items = models.JSONField(default=list)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Order {self.id}"


class OutboxEvent(models.Model):
    """An event not yet published to the channel layer (the transactional outbox).

    Written in the same transaction as the change it announces, so a change is never committed
    without its event; published after the commit and deleted once every group has it. Whatever
    could not be published (Redis down, a failover under way) stays here, with the groups still to
    reach, until a worker's relay publishes it (apps.cafe.outbox)."""

    id = models.BigAutoField(primary_key=True)
    groups = models.JSONField()  # the channel-layer groups it has yet to reach
    event = models.JSONField()  # {"type": "table.status_changed", "data": {...}}
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_until = models.DateTimeField(null=True, blank=True)  # a relay is publishing it (apps.cafe.outbox)

    def __str__(self):
        return f"{self.event.get('type')} to {', '.join(self.groups)}"
