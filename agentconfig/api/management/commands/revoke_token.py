from typing import Any

from django.core.management.base import CommandParser

from agentconfig.api.services.tokens import get_active_token, revoke_token
from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from agentconfig.core.people import get_person


class Command(ServiceCommand):
    help = "Revoke a user's active personal access token by name; its next request is refused."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="the username the token acts as")
        parser.add_argument("--name", required=True, help="the token's name")
        parser.add_argument("--reason", default="", help="why (kept in the token's history)")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_person(options["user"])
        token = get_active_token(user, options["name"])
        revoke_token(token=token, actor=Actor.cli("revoke_token"), reason=options["reason"])
        self.stdout.write(f"Revoked token {token.name!r} of {user.get_username()}.")
