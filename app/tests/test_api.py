"""REST: JWT endpoints, company-scoped tables and orders, and the events they send (checklist item 8)."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.cafe.groups import branch_group, company_group
from apps.cafe.models import Order, Table

pytestmark = pytest.mark.django_db(transaction=True)


class Listener:
    """A channel-layer member of one group, to see what the REST views send."""

    def __init__(self, group):
        self.layer = get_channel_layer()
        self.group = group
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(group, self.channel)

    def next(self):
        return async_to_sync(self.layer.receive)(self.channel)


def test_token_endpoint_returns_access_and_refresh_and_refresh_works(client, tenant):
    """POST /api/auth/token/ gives both tokens; the refresh endpoint mints a new access token."""
    response = client.post("/api/auth/token/", {"username": "staff", "password": "pw-staff-1"})
    assert response.status_code == 200
    assert set(response.json()) >= {"access", "refresh"}
    refreshed = client.post("/api/auth/token/refresh/", {"refresh": response.json()["refresh"]})
    assert refreshed.status_code == 200 and refreshed.json()["access"]


def test_wrong_password_gets_no_token(client, tenant):
    assert client.post("/api/auth/token/", {"username": "staff", "password": "nope"}).status_code == 401


def test_api_needs_a_token(client, tenant):
    assert client.get("/api/cafe/orders/").status_code == 401


def test_order_create_computes_total_and_notifies_company_and_branch(api, tenant):
    """POST /api/cafe/orders/ saves the order and sends order.created to both of its groups."""
    company, (main, _), user = tenant
    table = Table.objects.filter(branch=main).first()
    company_listener, branch_listener = Listener(company_group(company.id)), Listener(branch_group(company.id, main.id))
    response = api(user).post(
        "/api/cafe/orders/",
        {"table": str(table.id), "items": [{"name": "Plov", "quantity": 2, "price": "350.50"}]},
        format="json",
    )
    assert response.status_code == 201, response.content
    order = Order.objects.get()
    assert (order.total, order.branch_id, order.company_id) == (701, main.id, company.id)
    for listener in (company_listener, branch_listener):
        event = listener.next()
        assert event["type"] == "order.created"
        assert event["data"]["id"] == str(order.id)
        assert event["data"]["total"] == "701.00"


def test_order_update_notifies(api, tenant):
    """PATCH /api/cafe/orders/<id>/ sends order.updated with the new status."""
    company, _, user = tenant
    client = api(user)
    order_id = client.post("/api/cafe/orders/", {"items": []}, format="json").json()["id"]
    listener = Listener(company_group(company.id))
    response = client.patch(f"/api/cafe/orders/{order_id}/", {"status": "preparing"}, format="json")
    assert response.status_code == 200
    event = listener.next()
    assert (event["type"], event["data"]["status"]) == ("order.updated", "preparing")


def test_table_status_change_notifies_and_a_same_status_write_does_not(api, tenant):
    """PATCH /api/cafe/tables/<id>/ with a new status sends table.status_changed; only status is writable."""
    company, (main, _), user = tenant
    table = Table.objects.filter(branch=main).first()
    listener = Listener(company_group(company.id))
    client = api(user)
    response = client.patch(f"/api/cafe/tables/{table.id}/", {"status": "occupied", "number": 99}, format="json")
    assert response.status_code == 200
    table.refresh_from_db()
    assert (table.status, table.number) == ("occupied", 1)
    assert listener.next()["data"]["status"] == "occupied"
    client.patch(f"/api/cafe/tables/{table.id}/", {"status": "occupied"}, format="json")
    layer = get_channel_layer()
    assert layer.channels.get(listener.channel) is None or layer.channels[listener.channel].empty()


def test_invalid_status_is_a_400_naming_the_field(api, tenant):
    table = Table.objects.filter(company=tenant[0]).first()
    response = api(tenant[2]).patch(f"/api/cafe/tables/{table.id}/", {"status": "on-fire"}, format="json")
    assert response.status_code == 400 and "status" in response.json()


def test_bad_items_are_a_400(api, tenant):
    response = api(tenant[2]).post(
        "/api/cafe/orders/", {"items": [{"name": "x", "quantity": 0, "price": "-1"}]}, format="json"
    )
    assert response.status_code == 400 and "items" in response.json()


def test_users_never_see_another_companys_orders_or_tables(api, tenant, other_tenant):
    """Lists hold only the own company's rows; another company's rows are 404 to read and to change."""
    rival_client = api(other_tenant[2])
    foreign_order = rival_client.post("/api/cafe/orders/", {"items": []}, format="json").json()["id"]
    foreign_table = Table.objects.filter(company=other_tenant[0]).first()
    client = api(tenant[2])
    assert client.get("/api/cafe/orders/").json()["results"] == []
    assert {t["id"] for t in client.get("/api/cafe/tables/").json()["results"]} == {
        str(t.id) for t in Table.objects.filter(company=tenant[0])
    }
    assert client.get(f"/api/cafe/orders/{foreign_order}/").status_code == 404
    assert client.patch(f"/api/cafe/orders/{foreign_order}/", {"status": "paid"}, format="json").status_code == 404
    assert (
        client.patch(f"/api/cafe/tables/{foreign_table.id}/", {"status": "cleaning"}, format="json").status_code == 404
    )
    assert Order.objects.get(pk=foreign_order).status == "new"
    foreign_table.refresh_from_db()
    assert foreign_table.status == "free"


def test_an_order_cannot_be_placed_on_another_companys_table(api, tenant, other_tenant):
    foreign_table = Table.objects.filter(company=other_tenant[0]).first()
    response = api(tenant[2]).post("/api/cafe/orders/", {"table": str(foreign_table.id), "items": []}, format="json")
    assert response.status_code == 400 and "table" in response.json()
    assert not Order.objects.exists()


def test_user_without_company_is_forbidden(api, db):
    from apps.users.models import User

    loner = User.objects.create_user("loner", password="pw-loner-1")
    assert api(loner).get("/api/cafe/orders/").status_code == 403


def test_health_needs_no_token(client):
    assert client.get("/api/health/").json() == {"status": "ok"}
