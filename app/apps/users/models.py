"""Tenants: a company, its branches, and the staff who belong to them."""

import uuid

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models


class Company(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)

    class Meta:
        verbose_name_plural = "companies"

    def __str__(self):
        return self.name


class Branch(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="branches")
    name = models.CharField(max_length=200)

    class Meta:
        verbose_name_plural = "branches"
        constraints = [models.UniqueConstraint(fields=["company", "name"], name="branch_name_unique_per_company")]

    def __str__(self):
        return f"{self.company}: {self.name}"


class User(AbstractUser):
    """A staff member. Without a company a user can sign in but sees no cafe data."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="users", null=True, blank=True)
    # A user with a branch sees that branch only; without one, the whole company. So deleting a
    # branch must not quietly widen its staff's view: it is refused while users are bound to it
    # (RESTRICT; deleting the whole company still takes its users and branches with it).
    branch = models.ForeignKey(Branch, on_delete=models.RESTRICT, related_name="users", null=True, blank=True)

    def clean(self):
        super().clean()
        if self.branch_id and self.branch.company_id != self.company_id:
            raise ValidationError({"branch": "The branch belongs to another company."})
