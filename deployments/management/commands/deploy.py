from typing import Any

from django.core.management.base import CommandParser

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from deployments.cli import add_release_options, approved_request
from deployments.models import RequestKind
from deployments.selectors import get_environment
from deployments.services.releases import deploy_version
from deployments.services.requests import apply_request
from versions.selectors import get_agent, get_version


class Command(ServiceCommand):
    help = "Make a version of an agent the active one in an environment."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", help="agent slug, e.g. support-bot")
        parser.add_argument("version_number", type=int, help="version number, e.g. 3")
        parser.add_argument("--environment", required=True, help="environment slug")
        parser.add_argument("--reason", required=True, help="why (kept in the release log)")
        add_release_options(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        agent = get_agent(options["agent"])
        environment = get_environment(options["environment"])
        version = get_version(agent, options["version_number"])
        actor = Actor.cli("deploy")
        request = approved_request(options, agent, environment, version, RequestKind.STABLE)
        if request is not None:
            entry = apply_request(request=request, actor=actor, reason=options["reason"])
        else:
            entry = deploy_version(
                agent=agent,
                environment=environment,
                version=version,
                actor=actor,
                reason=options["reason"],
                break_glass=options["break_glass"] or "",
            )
        before = entry.from_version.label if entry.from_version else "nothing"
        self.stdout.write(
            f"Deployed {agent.slug} {version.label} to {environment.slug} (was {before})."
        )
