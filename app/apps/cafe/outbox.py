"""The transactional outbox of table and order events: no committed change goes unannounced.

`record()` writes the event in the caller's transaction (apps.cafe.notifications), so the change
and its event commit together or not at all. After the commit `publish()` sends it to its groups
at once and deletes it; the groups Redis does not take (down, or a failover under way) stay in the
row. Every worker runs `relay()` (core.asgi's lifespan): every OUTBOX_RELAY_INTERVAL seconds it
claims, oldest first, the events left for longer than OUTBOX_RELAY_DELAY seconds (SELECT ... FOR
UPDATE SKIP LOCKED, then a lease of LEASE seconds, so that no two workers send the same one and
no database lock is held while Redis is asked), publishes them and deletes them. A Redis outage is
one warning per worker, and one line when the events that waited have gone out.

An event may reach a client twice (published, then its deletion failed) or after a newer one
(relayed late): each carries its object's version, and a client drops what is older than what it
shows (docs/protocol.md).
"""

import asyncio
import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.cafe.models import OutboxEvent
from nurcrm_realtime import metrics

logger = logging.getLogger(__name__)

BATCH = 100  # events a relay claims at a time
LEASE = 10  # seconds a claim holds: a relay that died meanwhile leaves its events to the others after it


def record(groups, event):
    """Write `event` for `groups` in the current transaction."""
    return OutboxEvent.objects.create(groups=list(groups), event=event)


async def send(pending):
    """Publish `pending` to the groups it has yet to reach, stopping at the first that Redis refuses:
    (the groups left, the error)."""
    layer = get_channel_layer()
    for index, group in enumerate(pending.groups):
        try:
            await layer.group_send(group, pending.event)
        except Exception as error:  # noqa: BLE001 (whatever stops it, the event stays to be sent)
            metrics.REDIS_ERRORS.labels(where="broadcast").inc()
            return pending.groups[index:], error
    return [], None


def settle(pending, left):
    """Delete the event once no group is left; else keep the groups left, for any relay to take."""
    if left:
        OutboxEvent.objects.filter(pk=pending.pk).update(groups=left, claimed_until=None)
        pending.groups = left
        return
    OutboxEvent.objects.filter(pk=pending.pk).delete()
    metrics.EVENTS_BROADCAST.labels(type=str(pending.event.get("type", "")).replace(".", "_")).inc()


def publish(pending):
    """After the commit, in the sender's thread: send now; what fails waits for a relay. Whether it went out."""
    left, error = async_to_sync(send)(pending)
    settle(pending, left)
    if error is not None:
        logger.warning(
            "notification %s to group %s not published (%r): it waits in the outbox, a relay sends it",
            pending.event.get("type"),
            left[0],
            error,
        )
    return not left


@database_sync_to_async
def claim(older_than):
    """Up to BATCH events that have waited for longer than `older_than` seconds and that no other relay
    holds, oldest first, each claimed for LEASE seconds."""
    now = timezone.now()
    with transaction.atomic():
        taken = list(
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .filter(created_at__lte=now - timedelta(seconds=older_than))
            .order_by("id")[:BATCH]
        )
        OutboxEvent.objects.filter(pk__in=[pending.pk for pending in taken]).update(
            claimed_until=now + timedelta(seconds=LEASE)
        )
    return taken


@database_sync_to_async
def release(taken):
    """Back for any relay at once, rather than when the lease ends."""
    OutboxEvent.objects.filter(pk__in=[pending.pk for pending in taken]).update(claimed_until=None)


async def relay_once(older_than):
    """One round: (events published, events still waiting among those claimed, the error that stopped it)."""
    taken, published, error = await claim(older_than), 0, None
    for pending in taken:
        left, error = await send(pending)
        await database_sync_to_async(settle)(pending, left)
        if error is not None:
            await release(taken[published + 1 :])
            break
        published += 1
    if published:
        metrics.EVENTS_RELAYED.inc(published)
    return published, len(taken) - published, error


async def relay():
    """Each worker's relay, from its start to its end: one warning while events wait, one line when out."""
    every = settings.OUTBOX_RELAY_INTERVAL
    stuck = False
    while True:
        await asyncio.sleep(every)
        try:
            published, left, error = await relay_once(settings.OUTBOX_RELAY_DELAY)
        except Exception as exc:  # noqa: BLE001 (the database away: the relay waits for it)
            published, left, error = 0, 1, exc
        if published:
            logger.info("outbox relay: published %d event(s) that had waited", published)
        if left and not stuck:
            logger.warning("outbox relay: events wait to be published (%r); trying every %s s", error, every)
        elif stuck and not left:
            logger.info("outbox relay: no event waits any more")
        stuck = bool(left)
