from typing import Any

from django.core.management.base import CommandParser

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from deployments.selectors import get_environment
from deployments.services.releases import rollback
from versions.selectors import get_agent, get_version


class Command(ServiceCommand):
    help = (
        "Move an agent's pointer in an environment back to a version that was active there "
        "before (default: the one active just before the current one)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", help="agent slug, e.g. support-bot")
        parser.add_argument("--environment", required=True, help="environment slug")
        parser.add_argument("--to", type=int, dest="to", help="version number to go back to")
        parser.add_argument("--reason", required=True, help="why (kept in the release log)")

    def handle(self, *args: Any, **options: Any) -> None:
        agent = get_agent(options["agent"])
        environment = get_environment(options["environment"])
        target = get_version(agent, options["to"]) if options["to"] is not None else None
        entry = rollback(
            agent=agent,
            environment=environment,
            to_version=target,
            actor=Actor.cli("rollback"),
            reason=options["reason"],
        )
        before = entry.from_version.label if entry.from_version else "nothing"
        self.stdout.write(
            f"Rolled back {agent.slug} in {environment.slug} from {before} to "
            f"{entry.to_version.label}."
        )
