"""ASGI entry point: `gunicorn core.asgi:application -k uvicorn_worker.UvicornWorker`.

HTTP goes to Django; WebSockets pass the origin check (against ALLOWED_HOSTS, each refusal counted
as a handshake with outcome "origin"), then JWT authentication, then the URL router. The lifespan
protocol runs each worker's background tasks (WORKER_TASKS) from its start to its end.
"""

import asyncio
import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the imports below touch models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator  # noqa: E402

from apps.cafe import outbox  # noqa: E402
from apps.cafe.routing import websocket_urlpatterns  # noqa: E402
from apps.users.ws_auth import JWTAuthMiddleware  # noqa: E402
from core import balance, logs, metrics  # noqa: E402

logs.install()
logger = logging.getLogger(__name__)

# What every worker runs beside its requests: the outbox's relay, and its part in spreading sockets over
# the app hosts.
WORKER_TASKS = (outbox.relay, balance.run)


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


async def lifespan(scope, receive, send):
    """ASGI's lifespan: WORKER_TASKS start with the worker and are cancelled as it stops. One that ends
    by an error is logged; the worker goes on serving."""
    tasks = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            tasks = [asyncio.create_task(_logged(task)) for task in WORKER_TASKS]
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _logged(task):
    try:
        await task()
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("worker task %s stopped", task.__qualname__)


application = ProtocolTypeRouter(
    {
        "lifespan": lifespan,
        "http": django_asgi_app,
        "websocket": allowed_hosts_origin_validator(JWTAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
