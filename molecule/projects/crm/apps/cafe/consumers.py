"""The staff screens' socket: wss://<host>/ws/cafe/tables/?token=<JWT>[&branch_id=<id>].

Close codes: 4001 the token is missing, invalid or expired (or its user has no company);
4004 branch_id is not a branch of the user's company.
"""

import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .groups import table_group
from .models import Branch

logger = logging.getLogger(__name__)


class TablesConsumer(AsyncJsonWebsocketConsumer):
    group_name = None

    async def connect(self):
        user = self.scope.get("user")
        # Accept first, then close: browsers see the close code, never a bare handshake error.
        await self.accept()
        if user is None or not user.is_authenticated or user.company_id is None:
            await self.close(code=4001)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        branch_id = query.get("branch_id", [None])[0]
        if branch_id and not await self._branch_of_company(branch_id, user.company_id):
            await self.close(code=4004)
            return
        self.group_name = table_group(user.company_id, branch_id)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.send_json(
            {
                "type": "connection_established",
                "company_id": str(user.company_id),
                "branch_id": branch_id,
                "user": user.username,
            }
        )

    async def disconnect(self, code):
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data or "")
        except ValueError:
            await self.send_json({"type": "error", "message": "Invalid JSON"})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        action = content.get("action") if isinstance(content, dict) else None
        if action == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "message": f"Unknown action: {action}"})

    async def table_status_changed(self, event):
        logger.info(f"Received event: {event}")
        payload = event.get("payload", {})
        await self.send(json.dumps({"type": "table_status_changed", "data": payload}))

    async def order_created(self, event):
        await self.send_json({"type": "order_created", "data": event.get("payload", {})})

    async def order_updated(self, event):
        await self.send_json({"type": "order_updated", "data": event.get("payload", {})})

    @database_sync_to_async
    def _branch_of_company(self, branch_id, company_id):
        return branch_id.isdigit() and Branch.objects.filter(pk=branch_id, company_id=company_id).exists()
