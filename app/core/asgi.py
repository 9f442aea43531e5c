"""ASGI entry point: `gunicorn core.asgi:application -k uvicorn_worker.UvicornWorker`.

The realtime app (nurcrm_realtime.asgi) puts it together: HTTP to Django; WebSockets through the
Origin check, then JWT authentication, then the URL router; each worker runs the outbox's relay beside
its requests.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the imports below touch models

from channels.routing import URLRouter  # noqa: E402

from apps.cafe import outbox  # noqa: E402
from apps.cafe.routing import websocket_urlpatterns  # noqa: E402
from apps.users.ws_auth import JWTAuthMiddleware  # noqa: E402
from core import logs  # noqa: E402
from nurcrm_realtime import asgi as realtime  # noqa: E402

logs.install()

application = realtime.application(
    django_asgi_app, JWTAuthMiddleware(URLRouter(websocket_urlpatterns)), tasks=(outbox.relay,)
)
