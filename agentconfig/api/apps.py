from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "agentconfig.api"
    label = "agentconfig_api"
    verbose_name = "Management API"
    default_auto_field = "django.db.models.BigAutoField"
