import json

from django.contrib.auth import authenticate
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .tokens import issue_token


@csrf_exempt
@require_POST
def token(request):
    try:
        body = json.loads(request.body)
    except ValueError:
        return JsonResponse({"detail": "Invalid JSON"}, status=400)
    user = authenticate(request, username=body.get("username"), password=body.get("password"))
    if user is None:
        return JsonResponse({"detail": "Invalid credentials"}, status=401)
    return JsonResponse({"access": issue_token(user)})
