"""Who performs an operation: a signed-in user, or a named system actor.

System actors are the CLI (whoever runs manage.py already holds the database
credentials), the file import and, later, automation such as canary analysis. Users
are held to their Django permissions; that check lives here so every service asks the
same question the same way.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentconfig.core.errors import Forbidden

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


@dataclass(frozen=True)
class Actor:
    user: User | None
    label: str

    @classmethod
    def of(cls, user: User | AnonymousUser) -> Actor:
        # Every caller sits behind the admin login, so `request.user` is a signed-in User.
        from django.contrib.auth.models import User

        assert isinstance(user, User)  # noqa: S101
        return cls(user=user, label=user.get_username())

    @classmethod
    def system(cls, label: str) -> Actor:
        return cls(user=None, label=label)

    @classmethod
    def cli(cls, command: str) -> Actor:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "unknown"
        return cls(user=None, label=f"{command} (cli, {who})")

    def require(self, permission: str, action: str) -> None:
        """Refuse unless the actor is a system actor or a user holding `permission`."""
        if self.user is None:
            return
        if not (self.user.is_active and self.user.has_perm(permission)):
            raise Forbidden(
                f"{self.label} may not {action}: this needs the permission {permission!r}. "
                "Ask an administrator to grant it."
            )
