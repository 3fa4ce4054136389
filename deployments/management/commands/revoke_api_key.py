from typing import Any

from django.core.management.base import CommandParser

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from agentconfig.core.errors import NotFound
from deployments.models import ApiKey
from deployments.services.api_keys import revoke_api_key


class Command(ServiceCommand):
    help = "Revoke an active runtime API key by name; the next request with it is refused."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the key's name")
        parser.add_argument(
            "--reason", required=True, help="why the key is revoked (kept in the audit)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key = ApiKey.objects.filter(name=options["name"], revoked_at__isnull=True).first()
        if key is None:
            raise NotFound(f"there is no active API key named {options['name']!r}.")
        revoke_api_key(key=key, actor=Actor.cli("revoke_api_key"), reason=options["reason"])
        self.stdout.write(f"Revoked API key {key.name!r} ({key.environment.slug}).")
