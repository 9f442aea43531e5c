"""Company-scoped REST endpoints for tables and orders.

The notification senders live in apps.cafe.notifications and are importable from here too,
as operators call them from `manage.py shell`:
    from apps.cafe.views import send_table_status_changed_notification
"""

from rest_framework import mixins, permissions, viewsets

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


class CompanyScoped:
    """Only the requesting user's company's rows exist for these views; others are 404."""

    permission_classes = [permissions.IsAuthenticated, HasCompany]
    model = None

    def get_queryset(self):
        rows = self.model.objects.filter(company_id=self.request.user.company_id)
        branch = self.request.query_params.get("branch")
        return rows.filter(branch_id=branch) if branch else rows


class TableViewSet(
    CompanyScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet
):
    model = Table
    serializer_class = TableSerializer

    def perform_update(self, serializer):
        previous = serializer.instance.status
        table = serializer.save()
        if table.status != previous:
            send_table_status_changed_notification(table)


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

    def perform_create(self, serializer):
        send_order_created_notification(serializer.save())

    def perform_update(self, serializer):
        send_order_updated_notification(serializer.save())
