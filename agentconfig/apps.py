from django.apps import AppConfig


class AgentconfigConfig(AppConfig):
    name = "agentconfig"
    verbose_name = "Agents"
