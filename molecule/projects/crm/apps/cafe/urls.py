from django.urls import path

from . import views

urlpatterns = [
    path("tables/", views.table_list, name="table-list"),
    path("tables/<int:pk>/", views.table_detail, name="table-detail"),
    path("orders/", views.order_list, name="order-list"),
    path("orders/<int:pk>/", views.order_detail, name="order-detail"),
    path("stats/", views.stats, name="stats"),
    path("menu/images/", views.menu_image, name="menu-image"),
]
