from typing import Any

from django.core.management.base import CommandError, CommandParser

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from agentconfig.models import Agent
from deployments.cli import add_release_options, approved_request
from deployments.models import Environment, RequestKind
from deployments.selectors import get_environment
from deployments.services import canaries
from deployments.services.requests import apply_request
from versions.selectors import get_agent, get_version


class Command(ServiceCommand):
    help = (
        "Start a canary (AGENT VERSION_NUMBER with --percent P or --steps 1,5,25,50), or change "
        "the running one (AGENT with --percent P, --advance, --promote or --abort), or show "
        "what the analysis sees now (AGENT --status)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", help="agent slug, e.g. support-bot")
        parser.add_argument("version_number", type=int, nargs="?", help="version to start")
        parser.add_argument("--environment", required=True, help="environment slug")
        parser.add_argument(
            "--reason", help="why (kept in the release log); required for every change"
        )
        parser.add_argument("--percent", help="share of users, 0.01-99.99")
        parser.add_argument("--steps", help="percentages of the ramp, e.g. 1,5,25,50")
        parser.add_argument("--bake-minutes", type=int, help="minimum minutes per step")
        add_release_options(parser)
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--advance", action="store_true", help="go to the next step")
        action.add_argument("--promote", action="store_true", help="make it stable now")
        action.add_argument("--abort", action="store_true", help="end it; stable for everyone")
        action.add_argument(
            "--status", action="store_true", help="print the analysis of the running canary"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        agent = get_agent(options["agent"])
        environment = get_environment(options["environment"])
        actor = Actor.cli("canary")
        common: dict[str, Any] = {"agent": agent, "environment": environment, "actor": actor}
        if options["status"]:
            if options["version_number"] is not None:
                raise CommandError("--status takes no VERSION_NUMBER.")
            self._print_status(agent, environment)
            return
        reason = options["reason"]
        if reason is None:
            raise CommandError("--reason is required: say why (it is kept in the release log).")
        if options["version_number"] is not None:
            if options["advance"] or options["promote"] or options["abort"]:
                raise CommandError("--advance, --promote and --abort take no VERSION_NUMBER.")
            version = get_version(agent, options["version_number"])
            request = approved_request(options, agent, environment, version, RequestKind.CANARY)
            if request is not None:
                if options["percent"] or options["steps"]:
                    raise CommandError(
                        f"request #{request.pk} fixes the plan ({request.canary_plan}); "
                        "leave out --percent and --steps."
                    )
                rollout = apply_request(request=request, actor=actor, reason=reason)
            else:
                rollout = canaries.start_canary(
                    **common,
                    version=version,
                    reason=reason,
                    percent=options["percent"],
                    steps=options["steps"],
                    bake_minutes=options["bake_minutes"],
                    break_glass=options["break_glass"] or "",
                )
            ramp = ", ".join(f"{bp / 100:g} %" for bp, _ in rollout.steps)
            self.stdout.write(
                f"Started canary of {agent.slug} {version.label} in {environment.slug} at "
                f"{rollout.percent:g} % (steps: {ramp}; salt {rollout.salt})."
            )
            return
        if options["request"] is not None or options["break_glass"]:
            raise CommandError("--request and --break-glass only apply when starting a canaries.")
        if options["steps"] or options["bake_minutes"] is not None:
            raise CommandError("--steps and --bake-minutes only apply when starting a canaries.")
        if options["advance"]:
            rollout = canaries.advance_canary(**common, reason=reason)
            self.stdout.write(f"Canary of {agent.slug} advanced to {rollout.percent:g} %.")
        elif options["promote"]:
            entry = canaries.promote_canary(**common, reason=reason)
            self.stdout.write(
                f"Promoted {entry.to_version.label}: now stable in {environment.slug}."
            )
        elif options["abort"]:
            canaries.abort_canary(**common, reason=reason)
            self.stdout.write(f"Aborted the canary of {agent.slug} in {environment.slug}.")
        elif options["percent"] is not None:
            rollout = canaries.set_canary_percent(
                **common, percent=options["percent"], reason=reason
            )
            self.stdout.write(f"Canary of {agent.slug} now at {rollout.percent:g} %.")
        else:
            raise CommandError(
                "give VERSION_NUMBER to start a canary, or one of --percent, --advance, "
                "--promote, --abort to change the running one."
            )

    def _print_status(self, agent: Agent, environment: Environment) -> None:
        """The same facts the agent page's canary panel shows, as text."""
        status = canaries.canary_status(agent, environment)
        if status is None:
            self.stdout.write(f"No canary of {agent.slug} is running in {environment.slug}.")
            return
        rollout, decision, deadline = status
        ramp = ", ".join(
            f"[{bp / 100:g} %]" if i == rollout.step_index else f"{bp / 100:g} %"
            for i, (bp, _) in enumerate(rollout.steps)
        )
        self.stdout.write(
            f"Canary of {agent.slug} {rollout.canary_version.label} against stable "
            f"{rollout.stable_version.label} in {environment.slug}: step "
            f"{rollout.step_index + 1} of {len(rollout.steps)} ({ramp}, then promotion), "
            f"started {rollout.started_at:%Y-%m-%d %H:%M} UTC, deadline "
            f"{deadline:%Y-%m-%d %H:%M} UTC."
        )
        self.stdout.write(f"Now: {decision.verdict}. {decision.explanation}")
        for line in decision.status:
            self.stdout.write(f"  {line}")
