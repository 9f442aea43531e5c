from django.http import JsonResponse
from django.urls import include, path


def health(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("api/health/", health, name="health"),
    path("api/auth/", include("apps.users.urls")),
    path("api/cafe/", include("apps.cafe.urls")),
]
