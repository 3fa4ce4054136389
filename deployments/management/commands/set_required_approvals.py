from typing import Any

from django.core.management.base import CommandError, CommandParser

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from deployments.models import DeploymentRequest, RequestKind
from deployments.selectors import get_environment
from deployments.services import environments
from deployments.services.requests import apply_request, propose_change


class Command(ServiceCommand):
    help = (
        "Set how many approvals releases to an environment need. Raising applies at once; "
        "lowering opens a settings request that administrators approve, applied with --request."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("environment", help="environment slug")
        parser.add_argument("approvals", type=int, help="approvals releases will need, e.g. 2")
        parser.add_argument("--reason", required=True, help="why (kept in the audit)")
        parser.add_argument(
            "--request", type=int, help="apply this approved settings request (its id)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        environment = get_environment(options["environment"])
        actor = Actor.cli("set_required_approvals")
        wanted = options["approvals"]
        if options["request"] is not None:
            request = DeploymentRequest.objects.filter(
                pk=options["request"], kind=RequestKind.SETTINGS, environment=environment
            ).first()
            if request is None:
                raise CommandError(
                    f"there is no settings request #{options['request']} for {environment.slug}."
                )
            if request.proposal.get("required_approvals") != wanted:
                raise CommandError(f"request #{request.pk} is for {request}, not for {wanted}.")
            apply_request(request=request, actor=actor, reason=options["reason"])
            self.stdout.write(f"{environment.slug} now requires {wanted} approval(s).")
            return
        try:
            environments.update_environment(
                environment=environment,
                actor=actor,
                reason=options["reason"],
                required_approvals=wanted,
            )
        except environments.SettingsApprovalRequired as refusal:
            request = propose_change(
                kind=RequestKind.SETTINGS,
                environment=environment,
                proposal=refusal.proposal,
                actor=actor,
                reason=options["reason"],
            )
            self.stdout.write(
                f"Not lowered yet: request #{request.pk} ({request}) is open. When "
                "administrators have approved it, apply it with "
                f"set_required_approvals {environment.slug} {wanted} --request {request.pk} "
                "--reason ..."
            )
            return
        self.stdout.write(f"{environment.slug} now requires {wanted} approval(s).")
