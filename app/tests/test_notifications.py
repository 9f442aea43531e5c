"""The senders (checklist item 7): one group-name builder, the outbox (an event commits with its change and is
published after, or later by a relay), versions, msgpack-safe payloads."""

import asyncio
import logging
import uuid
from decimal import Decimal

import msgpack
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import DatabaseError, transaction

from apps.cafe import consumers, notifications, outbox
from apps.cafe.groups import branch_group, company_group, recipient_groups, socket_group
from apps.cafe.models import Order, OutboxEvent, Table
from apps.cafe.views import send_table_status_changed_notification
from nurcrm_realtime.layers import channel_layers

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


class Layer:
    """A channel layer that records what it is given, refusing the groups in `down`."""

    def __init__(self, down=()):
        self.sent, self.down = [], set(down)

    async def group_send(self, group, message):
        if group in self.down:
            raise ConnectionError("redis is down")
        self.sent.append((group, message))


@pytest.fixture
def layer(monkeypatch):
    fake = Layer()
    monkeypatch.setattr(outbox, "get_channel_layer", lambda: fake)
    return fake


@pytest.mark.django_db(transaction=True)
def test_sent_only_after_commit_and_never_on_rollback(tenant, layer):
    """Inside a transaction nothing is sent until it commits; a rolled-back change sends nothing and leaves
    nothing in the outbox."""
    table = Table.objects.filter(company=tenant[0]).first()
    with transaction.atomic():
        send_table_status_changed_notification(table)
        assert layer.sent == []
    assert [group for group, _ in layer.sent] == recipient_groups(table.company_id, table.branch_id)
    assert not OutboxEvent.objects.exists()
    layer.sent.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        send_table_status_changed_notification(table)
        raise RuntimeError("roll back")
    assert layer.sent == [] and not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_change_and_its_event_commit_together(tenant, api, monkeypatch):
    """The event is written in the change's transaction: when recording it fails, the change is not saved."""
    company, (main, _), user = tenant
    table = Table.objects.filter(branch=main).first()

    def broken(groups, event):
        raise DatabaseError("outbox unwritable")

    monkeypatch.setattr(outbox, "record", broken)
    with pytest.raises(DatabaseError):
        api(user).patch(f"/api/cafe/tables/{table.id}/", {"status": "occupied"}, format="json")
    table.refresh_from_db()
    assert (table.status, table.version) == ("free", 1)


@pytest.mark.django_db(transaction=True)
def test_a_failed_send_waits_in_the_outbox_and_is_logged_not_raised(tenant, layer, caplog):
    """With Redis down the caller (a REST request) still succeeds; the event waits, with the groups it has
    yet to reach, and the failure is logged once, as waiting."""
    table = Table.objects.filter(company=tenant[0]).first()
    groups = recipient_groups(table.company_id, table.branch_id)
    layer.down = {groups[1]}
    with caplog.at_level(logging.WARNING, logger="apps.cafe.outbox"):
        send_table_status_changed_notification(table)
    (waiting,) = OutboxEvent.objects.all()
    assert waiting.groups == groups[1:] and waiting.event["data"] == notifications.table_payload(table)
    assert [group for group, _ in layer.sent] == groups[:1]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"notification table.status_changed to group {groups[1]} not published"), warning
    layer.down.clear()
    assert async_to_sync(outbox.relay_once)(0)[:2] == (1, 0)
    assert [group for group, _ in layer.sent] == groups and not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_relay_takes_an_event_only_once_it_has_waited_and_no_other_holds_it(tenant, layer):
    """The sender's own publish is not raced (OUTBOX_RELAY_DELAY), and a claimed event is left to its relay
    until the lease ends; one Redis refuses is back for every relay at once."""
    table = Table.objects.filter(company=tenant[0]).first()
    layer.down = set(recipient_groups(table.company_id, table.branch_id))
    send_table_status_changed_notification(table)
    send_table_status_changed_notification(table)
    assert async_to_sync(outbox.relay_once)(60)[:2] == (0, 0), "taken before it waited"
    first, second = async_to_sync(outbox.claim)(0)[:1], async_to_sync(outbox.claim)(0)
    assert len(first) == 1 and second == [], "two relays took the same events"
    OutboxEvent.objects.update(claimed_until=None)
    published, left, error = async_to_sync(outbox.relay_once)(0)
    assert (published, left) == (0, 2) and isinstance(error, ConnectionError)
    assert not OutboxEvent.objects.exclude(claimed_until=None).exists(), "a refused event stays claimed"
    layer.down.clear()
    assert async_to_sync(outbox.relay_once)(0)[:2] == (2, 0)
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_every_change_gets_the_next_version_from_the_database(tenant):
    """Two writers holding the same row each get their own, higher version (F() under the row's lock), and a
    bulk update moves every row it touches on too."""
    table = Table.objects.filter(company=tenant[0]).first()
    assert table.version == 1
    mine, theirs = Table.objects.get(pk=table.pk), Table.objects.get(pk=table.pk)
    mine.status = Table.Status.OCCUPIED
    mine.save()
    theirs.status = Table.Status.RESERVED
    theirs.save(update_fields=["status"])
    assert (mine.version, theirs.version) == (2, 3)
    Table.objects.filter(pk=table.pk).update(status=Table.Status.FREE)
    table.refresh_from_db()
    assert (table.status, table.version) == ("free", 4)
    assert notifications.table_payload(table)["version"] == 4


@pytest.mark.django_db(transaction=True)
def test_the_rest_answer_and_the_event_carry_the_same_version(tenant, api, layer):
    company, (main, _), user = tenant
    table = Table.objects.filter(branch=main).first()
    answer = api(user).patch(f"/api/cafe/tables/{table.id}/", {"status": "occupied"}, format="json").json()
    events = [message["data"] for _, message in layer.sent]
    assert answer["version"] == 2 and {event["version"] for event in events} == {2}, (answer, events)
    again = api(user).patch(f"/api/cafe/tables/{table.id}/", {"status": "occupied"}, format="json").json()
    assert again["version"] == 2 and len(layer.sent) == len(events), "the same status again is no change"
    order = api(user).post("/api/cafe/orders/", {"table": str(table.id), "items": []}, format="json").json()
    changed = api(user).patch(f"/api/cafe/orders/{order['id']}/", {"status": "served"}, format="json").json()
    assert (order["version"], changed["version"]) == (1, 2)
    assert [m["data"]["version"] for _, m in layer.sent if m["type"].startswith("order.")][-1] == 2


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_an_order_created_while_redis_is_stopped_reaches_its_group_once_redis_is_back(
    settings, restartable_redis, api, tenant, caplog
):
    """A real redis-server, stopped: POST /api/cafe/orders/ still answers 201 (connect is refused at once; the
    layer retries 3 times), the event waits in the outbox, and once Redis answers the relay publishes it to
    the group's members."""
    settings.CHANNEL_LAYER = "redis"
    settings.CHANNEL_LAYERS = channel_layers("redis", restartable_redis.url)
    restartable_redis.stop()
    company, (main, _), user = tenant
    table = await database_sync_to_async(Table.objects.filter(branch=main).first)()
    with caplog.at_level(logging.WARNING, logger="apps.cafe.outbox"):
        response = await database_sync_to_async(api(user).post)(
            "/api/cafe/orders/", {"table": str(table.id), "items": []}, format="json"
        )
    assert response.status_code == 201, response.content
    assert ["order.created"] == [e["type"] async for e in OutboxEvent.objects.values_list("event", flat=True)]
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"notification order.created to group {company_group(company.id)} not published"
    ]
    restartable_redis.start()
    layer = get_channel_layer()
    screen = await layer.new_channel()
    await layer.group_add(branch_group(company.id, main.id), screen)
    assert (await outbox.relay_once(0))[:2] == (1, 0)
    event = await asyncio.wait_for(layer.receive(screen), 5)
    assert (event["type"], event["data"]["id"]) == ("order.created", response.json()["id"])
    assert not await OutboxEvent.objects.aexists()
