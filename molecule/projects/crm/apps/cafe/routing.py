from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/cafe/tables/", consumers.TablesConsumer.as_asgi()),
]
