"""The staff screens' socket: table and order events of one company, or one branch of it.

Only authorised sockets get here: apps.users.ws_auth refuses the others (4400/4401/4403)
before a consumer starts. Every bad frame gets {"type": "error", "code": ..., "message": ...}
and the socket stays open.
"""

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from apps.cafe.groups import socket_group
from apps.cafe.models import Table
from apps.cafe.notifications import table_payload

logger = logging.getLogger(__name__)


class TableStatusConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        user, branch = self.scope["user"], self.scope.get("branch")
        self.company_id, self.branch_id = user.company_id, branch.pk if branch else None
        self.group = socket_group(self.company_id, self.branch_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(self.scope.get("auth_subprotocol"))
        # Joined before the snapshot is read, so no change falls between the two.
        await self.send_json(
            {
                "type": "connection_established",
                "company_id": str(self.company_id),
                "branch_id": str(self.branch_id) if self.branch_id else None,
                "server_time": timezone.now().isoformat(),
                "tables": await self._snapshot(),
            }
        )

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    # --- Frames from the client -------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            return await self.send_error("binary_not_supported", "binary frames are not supported; send JSON text")
        if len(text_data.encode("utf-8", "surrogatepass")) > settings.WS_MAX_MESSAGE_BYTES:
            return await self.send_error(
                "message_too_large", f"messages are limited to {settings.WS_MAX_MESSAGE_BYTES} bytes"
            )
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            return await self.send_error("invalid_json", "the message is not valid JSON")
        if not isinstance(message, dict):
            return await self.send_error("invalid_message", "the message must be a JSON object")
        action = message.get("action")
        if action == "ping":
            return await self.send_json({"type": "pong", "server_time": timezone.now().isoformat()})
        return await self.send_error("unknown_action", "unknown action; supported: ping")

    async def send_error(self, code, message):
        await self.send_json({"type": "error", "code": code, "message": message})

    async def send_json(self, content):
        await self.send(text_data=json.dumps(content))

    # --- Events from the channel layer (see apps.cafe.notifications) -----------------
    async def table_status_changed(self, event):
        await self.send_json({"type": "table_status_changed", "data": event["data"]})

    async def order_created(self, event):
        await self.send_json({"type": "order_created", "data": event["data"]})

    async def order_updated(self, event):
        await self.send_json({"type": "order_updated", "data": event["data"]})

    # --- Database ----------------------------------------------------------------------
    @database_sync_to_async
    def _snapshot(self):
        tables = Table.objects.filter(company_id=self.company_id)
        if self.branch_id:
            tables = tables.filter(branch_id=self.branch_id)
        return [table_payload(table) for table in tables]


class NoRouteConsumer(AsyncWebsocketConsumer):
    """Any other path under the WebSocket router: refuse the handshake (HTTP 403), say why in the log."""

    async def connect(self):
        logger.warning("no WebSocket route for path %s", self.scope.get("path"))
        await self.close()
