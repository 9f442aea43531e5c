from django.urls import path
from rest_framework_simplejwt.views import TokenRefreshView

from apps.users.views import TokenObtainView

urlpatterns = [
    path("token/", TokenObtainView.as_view(), name="token_obtain_pair"),
    path("token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
]
