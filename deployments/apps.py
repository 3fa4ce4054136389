from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        # Lowering an environment's required approvals goes through a SETTINGS request.
        from deployments.models import RequestKind
        from deployments.services.environments import SettingsSubject
        from deployments.services.requests import register_subject

        register_subject(RequestKind.SETTINGS, SettingsSubject())
