"""Company-scoped REST endpoints for tables and orders; a user bound to a branch sees that branch only.

The notification senders live in apps.cafe.notifications and are importable from here too,
as operators call them from `manage.py shell`:
    from apps.cafe.views import send_table_status_changed_notification
"""

import uuid

from django.db import transaction
from rest_framework import mixins, permissions, viewsets
from rest_framework.exceptions import ValidationError

from apps.cafe.models import Order, Table
from apps.cafe.notifications import (
    send_order_created_notification,
    send_order_updated_notification,
    send_table_status_changed_notification,
)
from apps.cafe.serializers import OrderSerializer, TableSerializer

__all__ = [
    "OrderViewSet",
    "TableViewSet",
    "send_order_created_notification",
    "send_order_updated_notification",
    "send_table_status_changed_notification",
]


class HasCompany(permissions.BasePermission):
    message = "Your user belongs to no company."

    def has_permission(self, request, view):
        return request.user.company_id is not None


def branch_filter(request):
    """The UUID of ?branch=, or None; anything else is a 400 naming the parameter."""
    raw = request.query_params.get("branch")
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationError({"branch": ["Must be a branch's UUID."]}) from None


class CompanyScoped:
    """Only the requesting user's company's rows exist for these views, and for a user bound to a
    branch only that branch's rows (not the company's rows without a branch either); others are 404.
    Company-wide access needs a user without a branch."""

    permission_classes = [permissions.IsAuthenticated, HasCompany]
    model = None

    def get_queryset(self):
        user = self.request.user
        rows = self.model.objects.filter(company_id=user.company_id)
        if user.branch_id:
            rows = rows.filter(branch_id=user.branch_id)
        branch = branch_filter(self.request)
        return rows.filter(branch_id=branch) if branch else rows


class TableViewSet(
    CompanyScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet
):
    model = Table
    serializer_class = TableSerializer

    # The change and its event commit together (apps.cafe.outbox): the event is published after the commit.
    @transaction.atomic
    def perform_update(self, serializer):
        if serializer.validated_data.get("status", serializer.instance.status) == serializer.instance.status:
            return  # nothing changes: no new version, no event (status is the one field a client may set)
        send_table_status_changed_notification(serializer.save())


class OrderViewSet(
    CompanyScoped,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    model = Order
    serializer_class = OrderSerializer

    @transaction.atomic
    def perform_create(self, serializer):
        send_order_created_notification(serializer.save())

    @transaction.atomic
    def perform_update(self, serializer):
        send_order_updated_notification(serializer.save())
