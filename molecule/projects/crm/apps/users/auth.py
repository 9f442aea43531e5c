"""`Authorization: Bearer <JWT>` for the REST views."""

from functools import wraps

from django.http import JsonResponse

from .tokens import user_from_token


def jwt_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user = user_from_token(token) if scheme == "Bearer" and token else None
        if user is None:
            return JsonResponse({"detail": "Invalid or missing token"}, status=401)
        request.user = user
        return view(request, *args, **kwargs)

    return wrapper
