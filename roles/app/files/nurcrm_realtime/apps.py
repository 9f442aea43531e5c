from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "nurcrm_realtime"
    verbose_name = "nurcrm realtime"

    def ready(self):
        from nurcrm_realtime import checks  # noqa: F401 (registers them)
