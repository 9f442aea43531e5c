"""ASGI entry point: `gunicorn core.asgi:application -k uvicorn_worker.UvicornWorker`.

HTTP goes to Django; WebSockets pass the origin check (against ALLOWED_HOSTS), then JWT
authentication, then the URL router.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the imports below touch models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.cafe.routing import websocket_urlpatterns  # noqa: E402
from apps.users.ws_auth import JWTAuthMiddleware  # noqa: E402
from core import logs  # noqa: E402

logs.install()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(JWTAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
