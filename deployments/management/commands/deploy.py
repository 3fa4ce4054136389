from typing import Any

from django.core.management.base import CommandParser

from agentconfig.actors import Actor
from agentconfig.cli import ServiceCommand
from deployments.selectors import get_environment
from deployments.services import deploy_version
from versions.selectors import get_agent, get_version


class Command(ServiceCommand):
    help = "Make a version of an agent the active one in an environment."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", help="agent slug, e.g. support-bot")
        parser.add_argument("version_number", type=int, help="version number, e.g. 3")
        parser.add_argument("--environment", required=True, help="environment slug")
        parser.add_argument("--reason", required=True, help="why (kept in the release log)")

    def handle(self, *args: Any, **options: Any) -> None:
        agent = get_agent(options["agent"])
        environment = get_environment(options["environment"])
        version = get_version(agent, options["version_number"])
        entry = deploy_version(
            agent=agent,
            environment=environment,
            version=version,
            actor=Actor.cli("deploy"),
            reason=options["reason"],
        )
        before = entry.from_version.label if entry.from_version else "nothing"
        self.stdout.write(
            f"Deployed {agent.slug} {version.label} to {environment.slug} (was {before})."
        )
