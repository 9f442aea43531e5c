"""Who may open a WebSocket, decided before any consumer (and its channel-layer receive) starts.

Production clients send the access token as `?token=<JWT>`. Clients that can keep it out
of URLs offer two subprotocols instead, `nurcrm.bearer` and the token; the server then
answers with `nurcrm.bearer` alone, never echoing the token. `branch_id=<uuid>` scopes the
socket to one branch of the user's company. A user bound to a branch (User.branch) is confined
to it: without branch_id the socket is scoped to that branch, and another branch_id is refused.

A refused socket is accepted, then closed with an application code (a refused handshake
would hide the reason from browsers):
  4400  branch_id is not a UUID
  4401  token missing, malformed, expired, minted before its user's last password change, or
        its user unknown or inactive
  4403  the user has no company, or branch_id names another company's branch, or another
        branch than the user's own
The refusal is answered here, not by a consumer: a consumer starts a blocking channel-layer
receive at once, and channels_redis loses the cancellation of a receive that is only just
starting, so every refused consumer lived on, polling Redis, and held up worker shutdown.

The token is checked here once; nurcrm_realtime.guard keeps checking the open socket (its token's
expiry in `auth_expires`, its user against the database) and closes it when it lapses.
"""

import logging
import uuid
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from apps.users.models import Branch
from nurcrm_realtime import guard, metrics

logger = logging.getLogger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = guard.CLOSE_UNAUTHORIZED  # 4401, also when the guard closes an open socket
CLOSE_FORBIDDEN = 4403


class Refused(Exception):
    def __init__(self, code, reason):
        super().__init__(reason)
        self.code, self.reason = code, reason


def token_from_scope(scope):
    """The token a client sent, and the subprotocol to answer with (None for a query-string token)."""
    offered = scope.get("subprotocols") or []
    marker = settings.WS_AUTH_SUBPROTOCOL
    if marker in offered:
        others = [protocol for protocol in offered if protocol != marker]
        return (others[0] if others else ""), marker
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    return (query.get("token") or [""])[0], None


# What an open socket needs of its user, and every open socket keeps: the company and branch it is
# scoped to, and what nurcrm_realtime.guard compares with the database. The other columns (names,
# e-mail, dates) and the company and branch rows would be read for nothing and held as long.
SOCKET_USER_FIELDS = ("id", "password", "is_active", "company_id", "branch_id")


@database_sync_to_async
def _active_user(user_id):
    return get_user_model().objects.filter(pk=user_id, is_active=True).only(*SOCKET_USER_FIELDS).first()


@database_sync_to_async
def _branch_of_company(branch_id, company_id):
    return Branch.objects.filter(pk=branch_id, company_id=company_id).first()


async def authenticate(raw_token):
    """The token's active user and its expiry (epoch seconds), or Refused(4401) saying why not
    (never quoting the token)."""
    if not raw_token:
        raise Refused(CLOSE_UNAUTHORIZED, "missing token")
    try:
        token = AccessToken(raw_token)
    except TokenError as exc:
        raise Refused(CLOSE_UNAUTHORIZED, str(exc).lower()) from None  # "token is expired" / "token is invalid"
    user = await _active_user(token.get(api_settings.USER_ID_CLAIM))
    if user is None:
        raise Refused(CLOSE_UNAUTHORIZED, "token user is unknown or inactive")
    # As JWTAuthentication does for REST (CHECK_REVOKE_TOKEN): a password change voids older tokens.
    if token.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
        raise Refused(CLOSE_UNAUTHORIZED, "token predates the user's password change")
    if user.company_id is None:
        raise Refused(CLOSE_FORBIDDEN, "user has no company")
    return user, token["exp"]


async def branch_scope(scope, user):
    """The branch the socket is scoped to: the one named by ?branch_id=, which must be the user's
    company's (and the user's own branch, for a user bound to one), else the user's branch, or None."""
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    raw = (query.get("branch_id") or [""])[0]
    if raw:
        try:
            branch_id = uuid.UUID(raw)
        except ValueError:
            raise Refused(CLOSE_BAD_REQUEST, "branch_id is not a UUID") from None
        if user.branch_id and branch_id != user.branch_id:
            raise Refused(CLOSE_FORBIDDEN, "branch_id is not the branch the user is bound to")
    elif user.branch_id:
        branch_id = user.branch_id  # staff of a branch see their branch only
    else:
        return None
    branch = await _branch_of_company(branch_id, user.company_id)
    if branch is None:
        raise Refused(CLOSE_FORBIDDEN, "the branch is not one of the user's company's")
    return branch


async def refuse(receive, send, refusal, subprotocol):
    """Accept, close with the refusal's code, and wait for the disconnect: a complete, short life."""
    logger.info("websocket refused with %s: %s", refusal.code, refusal.reason)
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    await send({"type": "websocket.close", "code": refusal.code, "reason": refusal.reason})
    while (await receive())["type"] != "websocket.disconnect":
        pass


class JWTAuthMiddleware:
    """Lets through only sockets of an active user of a company (and of its branch, if named):
    their scope gets `user`, `auth_expires` (the token's exp, epoch seconds), and `branch` and
    `auth_subprotocol` when there is one. Everyone else is refused here."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        raw_token, subprotocol = token_from_scope(scope)
        try:
            user, expires = await authenticate(raw_token)
            branch = await branch_scope(scope, user)
        except Refused as refusal:
            metrics.HANDSHAKES.labels(outcome=str(refusal.code)).inc()
            return await refuse(receive, send, refusal, subprotocol)
        # This frame lasts as long as the socket: it keeps no copy of the token, and the scope no
        # key it need not have (each socket's scope is copied again by the router).
        del raw_token
        scope = dict(scope, user=user, auth_expires=expires)
        if branch is not None:
            scope["branch"] = branch
        if subprotocol is not None:
            scope["auth_subprotocol"] = subprotocol
        return await self.inner(scope, receive, send)
