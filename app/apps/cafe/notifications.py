"""Table and order events, sent to the channel layer after the database commits.

Every sender goes through `_broadcast`, which targets `recipient_groups()`: the company's
group and, for an object with a branch, that branch's group too. Payloads hold only
JSON/msgpack-safe values (UUIDs, Decimals and datetimes as strings).
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from apps.cafe.groups import recipient_groups
from core import metrics

logger = logging.getLogger(__name__)

# Channel-layer event type -> consumer handler `table_status_changed` etc.
TABLE_STATUS_CHANGED = "table.status_changed"
ORDER_CREATED = "order.created"
ORDER_UPDATED = "order.updated"


def _iso(value):
    return value.isoformat() if value else None


def _str_or_none(value):
    return str(value) if value is not None else None


def table_payload(table):
    return {
        "id": str(table.pk),
        "number": table.number,
        "name": str(table),
        "status": table.status,
        "company_id": str(table.company_id),
        "branch_id": _str_or_none(table.branch_id),
        "updated_at": _iso(table.updated_at),
    }


def order_payload(order):
    return {
        "id": str(order.pk),
        "status": order.status,
        "table_id": _str_or_none(order.table_id),
        "items": order.items,
        "total": str(order.total),
        "company_id": str(order.company_id),
        "branch_id": _str_or_none(order.branch_id),
        "created_at": _iso(order.created_at),
        "updated_at": _iso(order.updated_at),
    }


def _broadcast(event_type, company_id, branch_id, payload):
    """Send after commit; a failed send is logged and never fails the caller's request."""
    groups = recipient_groups(company_id, branch_id)
    # Each worker's layer encodes the frame once for all its sockets (core.fanout).
    message = {"type": event_type, "data": payload}

    def send():
        layer, sent = get_channel_layer(), False
        for group in groups:
            try:
                async_to_sync(layer.group_send)(group, message)
                sent = True
            except Exception:
                metrics.REDIS_ERRORS.labels(where="broadcast").inc()
                logger.exception("notification %s to group %s failed", event_type, group)
        if sent:  # one event, whatever the number of its groups
            metrics.EVENTS_BROADCAST.labels(type=event_type.replace(".", "_")).inc()

    transaction.on_commit(send)
    return groups


def send_table_status_changed_notification(table):
    """Tell every screen of the table's company (and branch) its current status. Returns the groups."""
    return _broadcast(TABLE_STATUS_CHANGED, table.company_id, table.branch_id, table_payload(table))


def send_order_created_notification(order):
    return _broadcast(ORDER_CREATED, order.company_id, order.branch_id, order_payload(order))


def send_order_updated_notification(order):
    return _broadcast(ORDER_UPDATED, order.company_id, order.branch_id, order_payload(order))
