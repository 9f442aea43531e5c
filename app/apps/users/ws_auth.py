"""JWT authentication for WebSocket connections.

Production clients send the access token as `?token=<JWT>`. Clients that can keep it out
of URLs offer two subprotocols instead, `nurcrm.bearer` and the token; the server then
answers with `nurcrm.bearer` alone, never echoing the token.
"""

import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

logger = logging.getLogger(__name__)


def token_from_scope(scope):
    """The token a client sent, and the subprotocol to answer with (None for a query-string token)."""
    offered = scope.get("subprotocols") or []
    marker = settings.WS_AUTH_SUBPROTOCOL
    if marker in offered:
        others = [protocol for protocol in offered if protocol != marker]
        return (others[0] if others else ""), marker
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    return (query.get("token") or [""])[0], None


@database_sync_to_async
def _active_user(user_id):
    return get_user_model().objects.select_related("company", "branch").filter(pk=user_id, is_active=True).first()


async def authenticate(raw_token):
    """(user, error): the token's active user, or AnonymousUser and why not."""
    if not raw_token:
        return AnonymousUser(), "missing token"
    try:
        token = AccessToken(raw_token)
    except TokenError as exc:
        # simplejwt words it "Token is expired" / "Token is invalid"; the token itself is not in it.
        return AnonymousUser(), str(exc).lower()
    user = await _active_user(token.get(api_settings.USER_ID_CLAIM))
    if user is None:
        return AnonymousUser(), "token user is unknown or inactive"
    return user, None


class JWTAuthMiddleware(BaseMiddleware):
    """Puts `user`, `auth_error` and `auth_subprotocol` into the scope of every WebSocket."""

    async def __call__(self, scope, receive, send):
        raw_token, subprotocol = token_from_scope(scope)
        user, error = await authenticate(raw_token)
        scope = dict(scope, user=user, auth_error=error, auth_subprotocol=subprotocol)
        return await super().__call__(scope, receive, send)
