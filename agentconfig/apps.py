from django.apps import AppConfig


class AgentconfigConfig(AppConfig):
    name = "agentconfig"
    verbose_name = "Agents"

    def ready(self) -> None:
        from agentconfig.core import checks  # noqa: F401  (registers the system checks)
