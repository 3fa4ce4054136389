"""Options the releasing commands (deploy, canary) share: --request and --break-glass."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from agentconfig.models import Agent
from deployments.models import DeploymentRequest, Environment, RequestKind
from versions.models import AgentVersion


def add_release_options(parser: CommandParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--request", type=int, help="apply this approved deployment request (its id)"
    )
    group.add_argument(
        "--break-glass",
        metavar="REASON",
        help="release without approval in an emergency; recorded and shown in the audit",
    )


def approved_request(
    options: dict[str, Any],
    agent: Agent,
    environment: Environment,
    version: AgentVersion,
    kind: RequestKind,
) -> DeploymentRequest | None:
    """The request named by --request, if it is for exactly this release (else an error)."""
    if options.get("request") is None:
        return None
    request = DeploymentRequest.objects.filter(pk=options["request"]).first()
    if request is None:
        raise CommandError(f"there is no deployment request #{options['request']}.")
    if (request.agent_id, request.environment_id, request.version_id, request.kind) != (
        agent.pk,
        environment.pk,
        version.pk,
        kind,
    ):
        raise CommandError(f"request #{request.pk} is for {request}, not for this release.")
    return request
