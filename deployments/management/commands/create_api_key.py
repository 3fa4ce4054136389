from typing import Any

from django.core.management.base import CommandError, CommandParser

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from deployments.selectors import get_environment
from deployments.services.api_keys import create_api_key
from versions.selectors import get_agent


class Command(ServiceCommand):
    help = (
        "Create a runtime API key for one environment, optionally limited to some agents and "
        "to reading or reporting; the key is printed once, on the last line. A key's scope "
        "never changes: to change it, create a new key and revoke the old one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--environment", required=True, help="environment slug")
        parser.add_argument("--name", required=True, help="a name that says who uses the key")
        parser.add_argument(
            "--reason", required=True, help="why the key is created (kept in the audit)"
        )
        parser.add_argument(
            "--agent",
            action="append",
            default=[],
            metavar="SLUG",
            dest="agents",
            help="limit the key to this agent (repeat for several); default: every agent",
        )
        capability = parser.add_mutually_exclusive_group()
        capability.add_argument(
            "--read-only",
            action="store_true",
            help="the key reads configs (config endpoint, OFREP) but cannot report outcomes",
        )
        capability.add_argument(
            "--report-only",
            action="store_true",
            help="the key reports outcomes but cannot read configs",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["read_only"] and options["report_only"]:
            # call_command() skips argparse's mutual exclusion.
            raise CommandError("--read-only and --report-only exclude each other.")
        environment = get_environment(options["environment"])
        agents = [get_agent(slug) for slug in options["agents"]]
        key, plaintext = create_api_key(
            environment=environment,
            name=options["name"],
            actor=Actor.cli("create_api_key"),
            reason=options["reason"],
            agents=agents,
            can_read=not options["report_only"],
            can_report=not options["read_only"],
        )
        scope = ", ".join(sorted(a.slug for a in agents)) or "every agent"
        does = "reads" if key.can_read and not key.can_report else "reports"
        capability = "" if key.can_read and key.can_report else f"; it only {does}"
        self.stderr.write(
            f"Created API key {key.name!r} for {environment.slug} ({scope}{capability}). "
            "Store it now: it is kept only as a hash and cannot be shown again."
        )
        self.stdout.write(plaintext)
