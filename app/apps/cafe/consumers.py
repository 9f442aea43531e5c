"""The staff screens' socket: table and order events of one company, or one branch of it.

Only authorised sockets get here: apps.users.ws_auth refuses the others (4400/4401/4403) before a
consumer starts. Everything a socket needs beside its company's tables (the per-user cap and the
guard's closes, the 1013 shedding, the frame rate, the error replies, ping, the resync after Redis lost
the groups, the 1012 close) is the realtime app's (nurcrm_realtime.consumer), which this project uses
as any other project would.
"""

import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from apps.cafe.groups import socket_group
from apps.cafe.models import Table
from apps.cafe.notifications import table_payload
from nurcrm_realtime import metrics
from nurcrm_realtime.consumer import RealtimeConsumer

logger = logging.getLogger(__name__)


class TableStatusConsumer(RealtimeConsumer):
    # Each sends {"type": "<handler>", "data": payload} (apps.cafe.notifications).
    forward_events = ("table_status_changed", "order_created", "order_updated")
    tables = 0  # the company's tables, as its hello read them

    def group_name(self):
        user, branch = self.scope["user"], self.scope.get("branch")
        self.company_id, self.branch_id = user.company_id, branch.pk if branch else None
        return socket_group(self.company_id, self.branch_id)

    async def hello(self):
        tables = await self._snapshot()
        # The company's size, in the open sockets' metric: a company-wide snapshot holds all its tables.
        self.tables = await self._company_tables() if self.branch_id else len(tables)
        return self.tables_message(
            "connection_established",
            tables,
            release=settings.RELEASE,
            company_id=str(self.company_id),
            branch_id=str(self.branch_id) if self.branch_id else None,
        )

    async def tenant_size(self):
        return metrics.company_size(self.tables)

    async def resync(self):
        return self.tables_message("tables_snapshot", await self._snapshot(), reason="channel_layer_reset")

    @staticmethod
    def tables_message(kind, tables, **fields):
        """A snapshot frame; read `tables` only after joining the group."""
        return {"type": kind, **fields, "server_time": timezone.now().isoformat(), "tables": tables}

    # --- Database ----------------------------------------------------------------------
    @database_sync_to_async
    def _snapshot(self):
        tables = Table.objects.filter(company_id=self.company_id)
        if self.branch_id:
            tables = tables.filter(branch_id=self.branch_id)
        return [table_payload(table) for table in tables]

    @database_sync_to_async
    def _company_tables(self):
        return Table.objects.filter(company_id=self.company_id).count()


class NoRouteConsumer(AsyncWebsocketConsumer):
    """Any other path under the WebSocket router: refuse the handshake (HTTP 403), say why in the log."""

    async def connect(self):
        logger.warning("no WebSocket route for path %s", self.scope.get("path"))
        await self.close()
