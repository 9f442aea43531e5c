"""Staff bound to a branch (User.branch) are confined to it, on the socket and over REST; company-wide
access needs a user without a branch. A malformed ?branch= is a 400."""

import pytest
from channels.db import database_sync_to_async
from django.db.models import RestrictedError

from apps.cafe.models import Order, Table
from apps.cafe.views import send_table_status_changed_notification
from apps.users.models import Branch, Company, User
from tests.conftest import close_code, connect_ok, socket_to, token_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def branches(tenant):
    """The tenant's company-wide user, a user bound to Main, the two branches, and a table of each."""
    company, (main, terrace), boss = tenant
    waiter = User.objects.create_user("waiter", password="pw-waiter-1", company=company, branch=main)
    tables = {branch: Table.objects.filter(branch=branch).first() for branch in (main, terrace)}
    return boss, waiter, main, terrace, tables


# --- The socket --------------------------------------------------------------------------------------------


async def test_a_branch_users_socket_without_branch_id_is_scoped_to_the_users_branch(branches):
    """No branch_id: the snapshot holds Main's tables alone and Terrace's events never arrive."""
    boss, waiter, main, terrace, tables = branches
    async with socket_to(token=token_for(waiter)) as ws:
        hello = await connect_ok(ws)
        assert hello["branch_id"] == str(main.id)
        assert {table["branch_id"] for table in hello["tables"]} == {str(main.id)}
        await database_sync_to_async(send_table_status_changed_notification)(tables[terrace])
        await database_sync_to_async(send_table_status_changed_notification)(tables[main])
        assert (await ws.receive_json_from())["data"]["id"] == str(tables[main].id)
        assert await ws.receive_nothing(timeout=0.2)


async def test_a_branch_user_naming_another_branch_is_closed_with_4403_and_its_own_branch_is_accepted(branches):
    boss, waiter, main, terrace, _ = branches
    async with socket_to(token=token_for(waiter), branch_id=str(terrace.id)) as ws:
        assert await close_code(ws) == 4403
    async with socket_to(token=token_for(waiter), branch_id=str(main.id)) as ws:
        assert (await connect_ok(ws))["branch_id"] == str(main.id)


async def test_a_user_without_a_branch_still_opens_company_wide_and_branch_sockets(branches):
    boss, waiter, main, terrace, _ = branches
    async with socket_to(token=token_for(boss)) as ws:
        hello = await connect_ok(ws)
        assert hello["branch_id"] is None and len(hello["tables"]) == 4
    async with socket_to(token=token_for(boss), branch_id=str(terrace.id)) as ws:
        assert (await connect_ok(ws))["branch_id"] == str(terrace.id)


async def test_a_user_bound_to_another_companys_branch_is_closed_with_4403(branches, other_tenant):
    """A row the model's clean() would refuse, written anyway: the socket is refused, not scoped to it."""
    waiter = branches[1]
    await database_sync_to_async(User.objects.filter(pk=waiter.pk).update)(branch=other_tenant[1][0])
    async with socket_to(token=token_for(waiter)) as ws:
        assert await close_code(ws) == 4403


# --- REST ----------------------------------------------------------------------------------------------------


def test_a_branch_user_lists_only_its_branchs_tables_and_orders(api, branches):
    boss, waiter, main, terrace, tables = branches
    api(boss).post("/api/cafe/orders/", {"table": str(tables[terrace].id), "items": []}, format="json")
    own = api(waiter).post("/api/cafe/orders/", {"table": str(tables[main].id), "items": []}, format="json").json()
    Order.objects.create(company=main.company)  # an order of no branch: the company's
    client = api(waiter)
    assert {t["branch"] for t in client.get("/api/cafe/tables/").json()["results"]} == {str(main.id)}
    assert [o["id"] for o in client.get("/api/cafe/orders/").json()["results"]] == [own["id"]]
    assert client.get(f"/api/cafe/tables/?branch={terrace.id}").json()["results"] == []
    assert len(api(boss).get("/api/cafe/orders/").json()["results"]) == 3


def test_another_branchs_table_and_order_do_not_exist_for_a_branch_user(api, branches):
    """404 to read and to change; nothing changed."""
    boss, waiter, main, terrace, tables = branches
    foreign = api(boss).post("/api/cafe/orders/", {"table": str(tables[terrace].id), "items": []}, format="json")
    order_id, client = foreign.json()["id"], api(waiter)
    assert client.get(f"/api/cafe/tables/{tables[terrace].id}/").status_code == 404
    assert (
        client.patch(f"/api/cafe/tables/{tables[terrace].id}/", {"status": "cleaning"}, format="json").status_code
        == 404
    )
    assert client.get(f"/api/cafe/orders/{order_id}/").status_code == 404
    assert client.patch(f"/api/cafe/orders/{order_id}/", {"status": "paid"}, format="json").status_code == 404
    tables[terrace].refresh_from_db()
    assert (tables[terrace].status, Order.objects.get(pk=order_id).status) == ("free", "new")


def test_a_branch_user_cannot_place_or_move_an_order_onto_another_branchs_table(api, branches):
    boss, waiter, main, terrace, tables = branches
    client = api(waiter)
    placed = client.post("/api/cafe/orders/", {"table": str(tables[terrace].id), "items": []}, format="json")
    assert placed.status_code == 400 and "table" in placed.json()
    own = client.post("/api/cafe/orders/", {"table": str(tables[main].id), "items": []}, format="json").json()
    moved = client.patch(f"/api/cafe/orders/{own['id']}/", {"table": str(tables[terrace].id)}, format="json")
    assert moved.status_code == 400 and "table" in moved.json()
    assert Order.objects.get(pk=own["id"]).branch_id == main.id
    assert Order.objects.count() == 1


@pytest.mark.parametrize("value", ["garbage", "1", "%00", "5eed0000-0000-4000-8000-00000000000g", "' OR 1=1 --"])
@pytest.mark.parametrize("path", ["/api/cafe/tables/", "/api/cafe/orders/"])
def test_a_malformed_branch_filter_is_a_400_naming_it(api, branches, path, value):
    response = api(branches[0]).get(path, {"branch": value})
    assert response.status_code == 400 and "branch" in response.json()


def test_a_branch_with_staff_cannot_be_deleted_but_its_company_can(branches):
    """Deleting Main would have set its staff's branch to NULL: company-wide. It is refused while staff are
    bound to it; deleting the company takes branches and users alike."""
    boss, waiter, main, terrace, _ = branches
    with pytest.raises(RestrictedError):
        main.delete()
    waiter.refresh_from_db()
    assert waiter.branch_id == main.id
    terrace.delete()  # no staff bound to it
    Company.objects.get(pk=main.company_id).delete()
    assert not User.objects.filter(pk__in=[boss.pk, waiter.pk]).exists() and not Branch.objects.exists()
