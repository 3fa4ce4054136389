"""Bearer authentication of the management API with personal access tokens."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from agentconfig.api.models import PersonalAccessToken
from agentconfig.api.services import tokens
from agentconfig.core.actors import Actor
from agentconfig.core.errors import Forbidden

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TokenAuth(HttpBearer):
    """`Authorization: Bearer acp_...`: the request acts as the token's user.

    A read-only token is refused (403) on every method that could change something,
    here, so no endpoint can forget it.
    """

    def authenticate(self, request: HttpRequest, token: str) -> PersonalAccessToken | None:
        found = tokens.authenticate(token)
        if found is not None and found.read_only and request.method not in SAFE_METHODS:
            raise Forbidden(
                f"token {found.name!r} is read-only: it may read but not change anything."
            )
        return found


def actor_of(request: HttpRequest) -> Actor:
    """The actor of an authenticated request: the token's user, as in the browser."""
    token = request.auth  # type: ignore[attr-defined]
    assert isinstance(token, PersonalAccessToken)  # noqa: S101 (auth ran first)
    return Actor.of(token.user)
