from typing import Any

from django.core.management.base import CommandParser

from agentconfig.api.services.tokens import MAX_EXPIRY_DAYS, create_token
from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from agentconfig.core.people import get_person


class Command(ServiceCommand):
    help = (
        "Create a personal access token for the management API (/api/v1/manage/); it acts "
        "as the user, with the user's roles. The token is printed once, alone on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="the username the token acts as")
        parser.add_argument("--name", required=True, help="what uses it, e.g. 'ci-release-job'")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            metavar="N",
            help=f"refused after N days (1-{MAX_EXPIRY_DAYS}); default: no expiry",
        )
        parser.add_argument(
            "--read-only", action="store_true", help="the token may read but never change"
        )
        parser.add_argument("--reason", default="", help="why (kept in the token's history)")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_person(options["user"])
        token, plaintext = create_token(
            user=user,
            name=options["name"],
            actor=Actor.cli("create_token"),
            expires_in_days=options["expires_in_days"],
            read_only=options["read_only"],
            reason=options["reason"],
        )
        until = f"until {token.expires_at:%Y-%m-%d %H:%M %Z}" if token.expires_at else "no expiry"
        mode = "read-only, " if token.read_only else ""
        self.stderr.write(
            f"Created token {token.name!r} for {user.get_username()} ({mode}{until}). "
            "Store it now: it is kept only as a hash and cannot be shown again."
        )
        self.stdout.write(plaintext)
