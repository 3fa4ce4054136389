"""Change a person's roles from the command line, through the same service as the admin."""

from __future__ import annotations

from argparse import BooleanOptionalAction
from typing import Any

from django.core.management.base import CommandParser

from agentconfig.core import people
from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand


class Command(ServiceCommand):
    help = (
        "Set a person's groups and staff/superuser status (recorded in the audit with the "
        "reason). What you leave out stays as it is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--groups",
            help="exactly these groups, comma-separated (e.g. Editors,Reviewers; '' for none)",
        )
        parser.add_argument("--staff", action=BooleanOptionalAction, default=None)
        parser.add_argument("--superuser", action=BooleanOptionalAction, default=None)
        parser.add_argument("--reason", required=True, help="why (kept in the audit)")

    def handle(self, *args: Any, **options: Any) -> None:
        user = people.get_person(options["username"])
        current = people.roles_of(user)
        groups = (
            current.groups
            if options["groups"] is None
            else [name.strip() for name in options["groups"].split(",") if name.strip()]
        )
        updated = people.set_roles(
            user=user,
            groups=groups,
            is_staff=current.is_staff if options["staff"] is None else options["staff"],
            is_superuser=(
                current.is_superuser if options["superuser"] is None else options["superuser"]
            ),
            actor=Actor.cli("set_roles"),
            reason=options["reason"],
        )
        after = people.roles_of(updated)
        self.stdout.write(
            f"{updated.get_username()}: groups {', '.join(after.groups) or 'none'}; "
            f"staff {'yes' if after.is_staff else 'no'}; "
            f"superuser {'yes' if after.is_superuser else 'no'}."
        )
