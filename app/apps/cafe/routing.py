from django.urls import re_path

from apps.cafe.consumers import NoRouteConsumer, TableStatusConsumer

websocket_urlpatterns = [
    re_path(r"^ws/cafe/tables/$", TableStatusConsumer.as_asgi()),
    re_path(r"", NoRouteConsumer.as_asgi()),
]
