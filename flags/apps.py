from django.apps import AppConfig


class FlagsConfig(AppConfig):
    name = "flags"
    verbose_name = "Feature flags"

    def ready(self) -> None:
        # Requests of kind "flag" (deployments.services.requests) change flags through this subject.
        from flags.services.requests import ensure_registered

        ensure_registered()
