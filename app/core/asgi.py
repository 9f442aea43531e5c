"""ASGI entry point: `gunicorn core.asgi:application -k uvicorn_worker.UvicornWorker`.

HTTP goes to Django; WebSockets pass the origin check (against ALLOWED_HOSTS, each refusal counted
as a handshake with outcome "origin"), then JWT authentication, then the URL router.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the imports below touch models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator  # noqa: E402

from apps.cafe.routing import websocket_urlpatterns  # noqa: E402
from apps.users.ws_auth import JWTAuthMiddleware  # noqa: E402
from core import logs, metrics  # noqa: E402

logs.install()


class CountedOriginValidator(OriginValidator):
    """channels' Origin check, counting what it refuses."""

    def valid_origin(self, parsed_origin):
        if super().valid_origin(parsed_origin):
            return True
        metrics.HANDSHAKES.labels(outcome="origin").inc()
        return False


def allowed_hosts_origin_validator(application):
    """channels' AllowedHostsOriginValidator (ALLOWED_HOSTS, and its fallback under DEBUG), counted."""
    return CountedOriginValidator(application, AllowedHostsOriginValidator(application).allowed_origins)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": allowed_hosts_origin_validator(JWTAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
