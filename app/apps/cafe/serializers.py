from decimal import Decimal

from django.conf import settings
from rest_framework import serializers

from apps.cafe.models import Order, Table


class TableSerializer(serializers.ModelSerializer):
    class Meta:
        model = Table
        fields = ["id", "number", "name", "status", "branch", "updated_at", "version"]
        read_only_fields = ["id", "number", "name", "branch", "updated_at", "version"]


# An order's total must fit its column (max_digits=12, decimal_places=2).
MAX_TOTAL = Decimal("9999999999.99")


class OrderItemSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    quantity = serializers.IntegerField(min_value=1, max_value=settings.ORDER_MAX_QUANTITY)
    price = serializers.DecimalField(
        max_digits=10, decimal_places=2, min_value=Decimal("0"), max_value=Decimal(settings.ORDER_MAX_PRICE)
    )


class OrderSerializer(serializers.ModelSerializer):
    items = OrderItemSerializer(many=True, allow_empty=True, required=False, max_length=settings.ORDER_MAX_ITEMS)
    table = serializers.PrimaryKeyRelatedField(queryset=Table.objects.none(), allow_null=True, required=False)

    class Meta:
        model = Order
        fields = ["id", "table", "branch", "status", "items", "total", "created_at", "updated_at", "version"]
        read_only_fields = ["id", "branch", "total", "created_at", "updated_at", "version"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        user = getattr(self.context.get("request"), "user", None)
        # Only the user's own company's tables resolve (and only its branch's, for a user bound to
        # one); any other id is "does not exist".
        tables = Table.objects.filter(company_id=getattr(user, "company_id", None))
        branch_id = getattr(user, "branch_id", None)
        self.fields["table"].queryset = tables.filter(branch_id=branch_id) if branch_id else tables

    def validate_items(self, items):
        total = sum((item["price"] * item["quantity"] for item in items), Decimal("0"))
        if total > MAX_TOTAL:
            raise serializers.ValidationError(f"The order's total ({total}) is over {MAX_TOTAL}.")
        return [{"name": item["name"], "quantity": item["quantity"], "price": str(item["price"])} for item in items]

    def _derive(self, validated_data):
        """The total from the items; the branch from the table (an order follows its table)."""
        if "items" in validated_data:
            validated_data["total"] = sum(
                (Decimal(item["price"]) * item["quantity"] for item in validated_data["items"]), Decimal("0")
            )
        table = validated_data.get("table")
        if table is not None:
            validated_data["branch"] = table.branch
        return validated_data

    def create(self, validated_data):
        user = self.context["request"].user
        validated_data = self._derive(validated_data)
        validated_data.setdefault("branch", user.branch)
        return super().create({**validated_data, "company_id": user.company_id})

    def update(self, instance, validated_data):
        return super().update(instance, self._derive(validated_data))
