from django.contrib import admin

from .models import Branch, Order, Table


@admin.register(Branch)
class BranchAdmin(admin.ModelAdmin):
    list_display = ["name", "company"]


@admin.register(Table)
class TableAdmin(admin.ModelAdmin):
    list_display = ["number", "branch", "status", "company"]
    list_filter = ["status", "branch"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "table", "status", "total", "created_at"]
    list_filter = ["status"]
