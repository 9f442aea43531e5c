"""Table and order events: recorded with the change, published to the channel layer once it commits.

Every sender goes through `_broadcast`, which targets `recipient_groups()`: the company's
group and, for an object with a branch, that branch's group too. The event is written to the
outbox (apps.cafe.outbox) in the caller's transaction, so a committed change always has its
event, and published after the commit; what Redis does not take then is published by a relay
when it answers again. Payloads hold only JSON/msgpack-safe values (UUIDs, Decimals and
datetimes as strings) and the object's `version`, which orders them (docs/protocol.md).
"""

from django.db import transaction

from apps.cafe import outbox
from apps.cafe.groups import recipient_groups

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
        "version": table.version,
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
        "version": order.version,
    }


def _broadcast(event_type, company_id, branch_id, payload):
    """Record the event in the caller's transaction; publish it once that commits. The groups.

    Publishing never fails the caller: an event Redis does not take stays in the outbox."""
    groups = recipient_groups(company_id, branch_id)
    # Each worker's layer encodes the frame once for all its sockets (nurcrm_realtime.fanout).
    pending = outbox.record(groups, {"type": event_type, "data": payload})
    transaction.on_commit(lambda: outbox.publish(pending), robust=True)
    return groups


def send_table_status_changed_notification(table):
    """Tell every screen of the table's company (and branch) its current status. Returns the groups."""
    return _broadcast(TABLE_STATUS_CHANGED, table.company_id, table.branch_id, table_payload(table))


def send_order_created_notification(order):
    return _broadcast(ORDER_CREATED, order.company_id, order.branch_id, order_payload(order))


def send_order_updated_notification(order):
    return _broadcast(ORDER_UPDATED, order.company_id, order.branch_id, order_payload(order))
