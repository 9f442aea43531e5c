from django.apps import AppConfig


class CafeConfig(AppConfig):
    name = "apps.cafe"
    label = "cafe"
    default_auto_field = "django.db.models.BigAutoField"
