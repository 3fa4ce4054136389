from typing import Any

from django.core.management.base import CommandParser

from agentconfig.actors import Actor
from agentconfig.cli import ServiceCommand
from deployments.selectors import get_environment
from deployments.services import create_api_key


class Command(ServiceCommand):
    help = (
        "Create a runtime API key for one environment; the key is printed once, on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--environment", required=True, help="environment slug")
        parser.add_argument("--name", required=True, help="a name that says who uses the key")
        parser.add_argument(
            "--reason", required=True, help="why the key is created (kept in the audit)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        environment = get_environment(options["environment"])
        key, plaintext = create_api_key(
            environment=environment,
            name=options["name"],
            actor=Actor.cli("create_api_key"),
            reason=options["reason"],
        )
        self.stderr.write(
            f"Created API key {key.name!r} for {environment.slug}. Store it now: it is kept "
            "only as a hash and cannot be shown again."
        )
        self.stdout.write(plaintext)
