"""Access tokens: HS256 JWTs signed with SECRET_KEY, holding `user_id` and `exp`."""

from datetime import UTC, datetime

import jwt
from django.conf import settings

from .models import User


def issue_token(user):
    now = datetime.now(UTC)
    claims = {"user_id": user.pk, "iat": now, "exp": now + settings.JWT_ACCESS_LIFETIME}
    return jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256")


def user_from_token(token):
    """The active user the token names, or None (bad signature, expired, unknown user)."""
    try:
        claims = jwt.decode(token, settings.SECRET_KEY, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.InvalidTokenError:
        return None
    return User.objects.filter(pk=claims.get("user_id"), is_active=True).select_related("company").first()
