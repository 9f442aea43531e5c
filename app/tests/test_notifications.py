"""The senders (checklist item 7): one group-name builder, after-commit delivery, msgpack-safe payloads."""

import logging
import uuid
from decimal import Decimal

import msgpack
import pytest
from django.db import transaction

from apps.cafe import consumers, notifications
from apps.cafe.groups import branch_group, company_group, recipient_groups, socket_group
from apps.cafe.models import Order, Table
from apps.cafe.views import send_table_status_changed_notification
from core.layers import channel_layers

COMPANY = uuid.UUID("f966441f-0938-49ed-97a7-07a503655ebc")
BRANCH = uuid.UUID("00000000-0000-4000-8000-0000000000b1")


def test_group_names_are_the_production_ones():
    assert company_group(COMPANY) == "cafe_tables_f966441f-0938-49ed-97a7-07a503655ebc"
    assert branch_group(COMPANY, BRANCH) == f"cafe_tables_{COMPANY}_{BRANCH}"
    assert recipient_groups(COMPANY) == [company_group(COMPANY)]
    assert recipient_groups(COMPANY, BRANCH) == [company_group(COMPANY), branch_group(COMPANY, BRANCH)]


def test_every_socket_group_is_a_recipient_group():
    """Whatever scope a socket has, the sender targets its group: they cannot drift apart."""
    assert socket_group(COMPANY) in recipient_groups(COMPANY, BRANCH)
    assert socket_group(COMPANY, BRANCH) in recipient_groups(COMPANY, BRANCH)
    assert consumers.socket_group is socket_group and notifications.recipient_groups is recipient_groups


@pytest.mark.django_db
def test_payloads_survive_msgpack(tenant):
    """UUIDs, Decimals and datetimes travel as strings, so the Redis layer's msgpack can carry them."""
    company, (main, _), _ = tenant
    table = Table.objects.filter(branch=main).first()
    order = Order.objects.create(
        company=company,
        branch=main,
        table=table,
        total=Decimal("10.50"),
        items=[{"name": "Tea", "quantity": 1, "price": "10.50"}],
    )
    order.refresh_from_db()
    for payload in (notifications.table_payload(table), notifications.order_payload(order)):
        assert msgpack.unpackb(msgpack.packb(payload)) == payload
    assert notifications.order_payload(order)["total"] == "10.50"


@pytest.mark.django_db(transaction=True)
def test_sent_only_after_commit_and_never_on_rollback(tenant, monkeypatch):
    """Inside a transaction nothing is sent until it commits; a rolled-back change sends nothing."""
    table = Table.objects.filter(company=tenant[0]).first()
    sent = []
    monkeypatch.setattr(notifications, "async_to_sync", lambda fn: lambda group, message: sent.append(group))
    with transaction.atomic():
        send_table_status_changed_notification(table)
        assert sent == []
    assert sent == recipient_groups(table.company_id, table.branch_id)
    sent.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        send_table_status_changed_notification(table)
        raise RuntimeError("roll back")
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_a_failed_send_is_logged_and_not_raised(tenant, monkeypatch, caplog):
    """With Redis down the caller (a REST request) still succeeds; the failure is logged as such."""
    table = Table.objects.filter(company=tenant[0]).first()

    def broken(fn):
        def send(group, message):
            raise ConnectionError("redis is down")

        return send

    monkeypatch.setattr(notifications, "async_to_sync", broken)
    with caplog.at_level(logging.ERROR, logger="apps.cafe.notifications"):
        send_table_status_changed_notification(table)
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2
    assert "table.status_changed" in failures[0].getMessage()


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_an_order_created_while_redis_is_stopped_is_saved_and_the_failure_logged(
    settings, restartable_redis, api, tenant, caplog
):
    """A real redis-server, stopped: POST /api/cafe/orders/ still answers 201, each group's send is logged
    as failed, and the request is not held up (connect is refused at once; the layer retries 3 times)."""
    settings.CHANNEL_LAYER = "redis"
    settings.CHANNEL_LAYERS = channel_layers("redis", restartable_redis.url)
    restartable_redis.stop()
    company, (main, _), user = tenant
    table = Table.objects.filter(branch=main).first()
    with caplog.at_level(logging.ERROR, logger="apps.cafe.notifications"):
        response = api(user).post("/api/cafe/orders/", {"table": str(table.id), "items": []}, format="json")
    assert response.status_code == 201, response.content
    assert Order.objects.filter(pk=response.json()["id"]).exists()
    failures = [record.getMessage() for record in caplog.records if "failed" in record.getMessage()]
    groups = recipient_groups(company.id, main.id)
    assert failures == [f"notification order.created to group {group} failed" for group in groups]
