"""The JWT endpoints: simplejwt's views, the login one limited per user name (apps.users.login_attempts)."""

import logging

from django.conf import settings
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenObtainPairView

from apps.users import login_attempts

logger = logging.getLogger(__name__)


# Django's error reports (a 500 with ADMINS set) show the password as stars.
@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class TokenObtainView(TokenObtainPairView):
    """POST /api/auth/token/: past LOGIN_MAX_FAILURES failed attempts at one user name within
    LOGIN_FAILURE_WINDOW seconds, 429 with Retry-After, until the window ends. Nothing here logs
    the request body: a refusal is logged with the user name alone."""

    def post(self, request, *args, **kwargs):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        if not isinstance(username, str) or not username:
            return super().post(request, *args, **kwargs)  # a 400 naming the field; no password checked
        attempt = login_attempts.take(username)
        if not attempt.allowed:
            logger.warning(
                "login refused (429) for user name %r: %d failed attempts within the window, retry in %d s",
                username[:150],
                settings.LOGIN_MAX_FAILURES,
                attempt.retry_after,
            )
            return Response(
                {"detail": "Too many failed logins for this user name; try again later.", "code": "login_throttled"},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(attempt.retry_after)},
            )
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            raise  # a failed attempt: it stays counted
        except Exception:
            login_attempts.give_back(attempt)
            raise
        login_attempts.clear(attempt)
        return response
