"""The realtime app's ASGI application: `application(http, websocket, tasks=...)` in the project's asgi.py.

HTTP goes to the project's Django application. WebSockets pass the Origin check (against ALLOWED_HOSTS,
each refusal counted as a handshake with outcome "origin"), then the project's own stack (its
authentication middleware and URL router). The lifespan protocol runs each worker's background tasks
from its start to its end: the spread of sockets over the app hosts (balance), and the project's own.
"""

import asyncio
import logging

from channels.routing import ProtocolTypeRouter
from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator

from nurcrm_realtime import balance, metrics

logger = logging.getLogger(__name__)

# What every worker runs beside its requests, whatever the project adds.
WORKER_TASKS = (balance.run,)


class CountedOriginValidator(OriginValidator):
    """channels' Origin check, counting what it refuses."""

    def valid_origin(self, parsed_origin):
        if super().valid_origin(parsed_origin):
            return True
        metrics.HANDSHAKES.labels(outcome="origin").inc()
        return False


def allowed_hosts_origin_validator(app):
    """channels' AllowedHostsOriginValidator (ALLOWED_HOSTS, and its fallback under DEBUG), counted."""
    return CountedOriginValidator(app, AllowedHostsOriginValidator(app).allowed_origins)


def lifespan(tasks):
    """ASGI's lifespan: `tasks` (coroutine functions) start with the worker and are cancelled as it stops.
    One that ends by an error is logged; the worker goes on serving."""

    async def app(scope, receive, send):
        running = []
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                running = [asyncio.create_task(_logged(task)) for task in tasks]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


async def _logged(task):
    try:
        await task()
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("worker task %s stopped", task.__qualname__)


def application(http, websocket, tasks=()):
    """The project's ASGI application: `http` (Django's), `websocket` behind the Origin check, and
    WORKER_TASKS with the project's own `tasks` in every worker."""
    return ProtocolTypeRouter(
        {
            "lifespan": lifespan((*WORKER_TASKS, *tasks)),
            "http": http,
            "websocket": allowed_hosts_origin_validator(websocket),
        }
    )
