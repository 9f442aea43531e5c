from django.db import models

from apps.users.models import Company


class Branch(models.Model):
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="branches")
    name = models.CharField(max_length=255)
    address = models.CharField(max_length=255, blank=True)

    def __str__(self):
        return self.name


class Table(models.Model):
    class Status(models.TextChoices):
        FREE = "free", "Свободен"
        OCCUPIED = "occupied", "Занят"
        RESERVED = "reserved", "Забронирован"

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="tables")
    branch = models.ForeignKey(Branch, on_delete=models.SET_NULL, null=True, blank=True, related_name="tables")
    number = models.PositiveIntegerField()
    seats = models.PositiveSmallIntegerField(default=4)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.FREE)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["company", "number"], name="unique_table_number")]

    def __str__(self):
        return f"Стол {self.number}"


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "Новый"
        COOKING = "cooking", "Готовится"
        SERVED = "served", "Подан"
        PAID = "paid", "Оплачен"
        CANCELLED = "cancelled", "Отменён"

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="orders")
    table = models.ForeignKey(Table, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Заказ #{self.pk}"
