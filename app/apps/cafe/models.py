"""Tables and orders of a company's cafe, optionally per branch."""

import uuid

from django.db import models

from apps.users.models import Branch, Company


class Table(models.Model):
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


class Order(models.Model):
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
