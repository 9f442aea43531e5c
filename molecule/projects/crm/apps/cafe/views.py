import json
from decimal import Decimal, InvalidOperation

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.text import get_valid_filename
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.users.auth import jwt_required

from .groups import table_group
from .models import Order, Table


def table_to_dict(table):
    return {
        "id": table.id,
        "number": table.number,
        "seats": table.seats,
        "status": table.status,
        "branch": table.branch_id,
    }


def order_to_dict(order):
    return {
        "id": order.id,
        "table": order.table_id,
        "status": order.status,
        "total": str(order.total),
        "created_at": order.created_at.isoformat(),
    }


def notify(company_id, branch_id, event_type, payload):
    """Send an event to the company's screens and, for a table of a branch, to that branch's screens."""
    channel_layer = get_channel_layer()
    groups = [table_group(company_id)] + ([table_group(company_id, branch_id)] if branch_id else [])
    for group_name in groups:
        async_to_sync(channel_layer.group_send)(group_name, {"type": event_type, "payload": payload})


def send_table_status_changed_notification(table):
    notify(table.company_id, table.branch_id, "table_status_changed", table_to_dict(table))


def send_order_notification(order, event_type):
    branch_id = order.table.branch_id if order.table else None
    notify(order.company_id, branch_id, event_type, order_to_dict(order))


def read_json(request):
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@jwt_required
@require_http_methods(["GET"])
def table_list(request):
    tables = Table.objects.filter(company=request.user.company)
    return JsonResponse([table_to_dict(t) for t in tables], safe=False)


@csrf_exempt
@jwt_required
@require_http_methods(["GET", "PATCH"])
def table_detail(request, pk):
    table = get_object_or_404(Table, pk=pk, company=request.user.company)
    if request.method == "PATCH":
        body = read_json(request)
        if body is None or body.get("status") not in Table.Status.values:
            return JsonResponse({"detail": f"status must be one of {Table.Status.values}"}, status=400)
        table.status = body["status"]
        table.save(update_fields=["status"])
        send_table_status_changed_notification(table)
    return JsonResponse(table_to_dict(table))


def apply_order_fields(order, body, company):
    """Copy the posted fields onto the order; an error message, or None."""
    if "table" in body:
        order.table = Table.objects.filter(pk=body["table"], company=company).first() if body["table"] else None
        if body["table"] and order.table is None:
            return "unknown table"
    if "status" in body:
        if body["status"] not in Order.Status.values:
            return f"status must be one of {Order.Status.values}"
        order.status = body["status"]
    if "total" in body:
        try:
            order.total = Decimal(str(body["total"]))
        except InvalidOperation:
            return "total must be a number"
    return None


@csrf_exempt
@jwt_required
@require_http_methods(["GET", "POST"])
def order_list(request):
    if request.method == "GET":
        orders = Order.objects.filter(company=request.user.company)[:100]
        return JsonResponse([order_to_dict(o) for o in orders], safe=False)
    body = read_json(request)
    order = Order(company=request.user.company)
    error = "Invalid JSON" if body is None else apply_order_fields(order, body, request.user.company)
    if error:
        return JsonResponse({"detail": error}, status=400)
    order.save()
    send_order_notification(order, "order_created")
    return JsonResponse(order_to_dict(order), status=201)


@csrf_exempt
@jwt_required
@require_http_methods(["GET", "PATCH"])
def order_detail(request, pk):
    order = get_object_or_404(Order, pk=pk, company=request.user.company)
    if request.method == "PATCH":
        body = read_json(request)
        error = "Invalid JSON" if body is None else apply_order_fields(order, body, request.user.company)
        if error:
            return JsonResponse({"detail": error}, status=400)
        order.save()
        send_order_notification(order, "order_updated")
    return JsonResponse(order_to_dict(order))


@jwt_required
@require_http_methods(["GET"])
def stats(request):
    """The company's counts, kept in the cache for a minute (Redis on a deployed server, memory by hand)."""
    company = request.user.company

    def count():
        tables, orders = Table.objects.filter(company=company), Order.objects.filter(company=company)
        return {"tables": tables.count(), "orders": orders.count()}

    return JsonResponse(cache.get_or_set(f"stats:{company.pk}", count, 60))


@csrf_exempt
@jwt_required
@require_http_methods(["POST"])
def menu_image(request):
    """Upload a menu picture (multipart field `image`) into MEDIA_ROOT/menu/; its URL under MEDIA_URL."""
    image = request.FILES.get("image")
    if image is None:
        return JsonResponse({"detail": "send the picture as the multipart field `image`"}, status=400)
    name = default_storage.save(f"menu/{get_valid_filename(image.name)}", image)
    return JsonResponse({"url": default_storage.url(name)}, status=201)
