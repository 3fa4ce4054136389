"""Personal access tokens: created, revoked and checked only here.

Invariants:
- Stored as a SHA-256 hash only (the runtime keys' `hash_key`); the plaintext is returned
  once, at creation, and compared in constant time.
- A token is `acp_<key_id>_<secret>`; a runtime key is `acfg_...`. Each endpoint parses
  only its own format, so a runtime key is never a token and a token never a runtime key.
- A token belongs to one user and acts as that user (Actor.of): the user's roles apply
  through the services' own checks. People create tokens for themselves only; the
  command line (who holds the database credentials) may create one for anyone.
- A token is refused from the moment it is revoked or expires, or its user is deactivated.
- Creations and revocations are in the token's history (who, why) and the security log.
- `last_used_at` is written at most once a minute per token, so checking stays cheap.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import re

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from agentconfig.api.models import PersonalAccessToken
from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden, NotFound
from agentconfig.core.reasons import validate_reason
from deployments.services.api_keys import clean_secret_name, hash_key, new_secret

PREFIX = "acp_"
TOKEN_FORMAT = re.compile(r"^acp_([0-9a-f]{12})_[A-Za-z0-9_-]{20,100}$")
MAX_EXPIRY_DAYS = 3650
MAX_NAME = 100
LAST_USED_EVERY = dt.timedelta(minutes=1)

logger = logging.getLogger("agentconfig.security")


def token_id_of(raw_token: str) -> str | None:
    """The key id of a well-formed token, or None (anything else, runtime keys included)."""
    match = TOKEN_FORMAT.match(raw_token)
    return match.group(1) if match else None


def get_active_token(user: User, name: str) -> PersonalAccessToken:
    """`user`'s unrevoked token named `name`, or NotFound."""
    active = PersonalAccessToken.objects.filter(user=user, revoked_at__isnull=True)
    token = active.filter(name=name).first()
    if token is None:
        raise NotFound(f"{user.get_username()} has no active token named {name!r}.")
    return token


def create_token(
    *,
    user: User,
    name: str,
    actor: Actor,
    expires_in_days: int | None = None,
    read_only: bool = False,
    reason: str = "",
) -> tuple[PersonalAccessToken, str]:
    """Create a token for `user`; returns the row and the plaintext, shown only once."""
    if actor.user is not None and actor.user.pk != user.pk:
        raise Forbidden(
            f"{actor.label} may not create a token for {user.get_username()}: people create "
            "tokens for themselves only (a service account signs in, or an operator runs "
            "`manage.py create_token`)."
        )
    if not user.is_active:
        raise ValidationError({"user": f"{user.get_username()} is deactivated."})
    name = clean_secret_name(name, example="ci-release-job", max_length=MAX_NAME)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ValidationError(
            {"expires_in_days": f"must be between 1 and {MAX_EXPIRY_DAYS} days (or none)."}
        )
    reason = validate_reason(reason, required=False) or f"created by {actor.label}"
    now = timezone.now()
    key_id, plaintext = new_secret(PREFIX)
    token = PersonalAccessToken(
        user=user,
        name=name,
        key_id=key_id,
        key_hash=hash_key(plaintext),
        read_only=read_only,
        created_at=now,
        expires_at=now + dt.timedelta(days=expires_in_days) if expires_in_days else None,
    )
    _set_history(token, actor, reason)
    try:
        with transaction.atomic():
            token.save()
    except IntegrityError:
        raise ValidationError(
            {"name": f"{user.get_username()} already has an active token named {name!r}."}
        ) from None
    logger.info(
        "access token %s (%s) created for %s by %s",
        key_id,
        name,
        user.get_username(),
        actor.label,
    )
    return token, plaintext


def revoke_token(
    *, token: PersonalAccessToken, actor: Actor, reason: str = ""
) -> PersonalAccessToken:
    """Revoke `token`: refused from its next request on. Its owner, a superuser or the
    command line may revoke it."""
    if actor.user is not None and actor.user.pk != token.user_id and not actor.user.is_superuser:
        raise Forbidden(f"{actor.label} may not revoke another person's token.")
    reason = validate_reason(reason, required=False) or f"revoked by {actor.label}"
    with transaction.atomic():
        token = PersonalAccessToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked_at is not None:
            raise Conflict(
                f"token {token.name!r} was already revoked on {token.revoked_at:%Y-%m-%d}."
            )
        token.revoked_at = timezone.now()
        token.revoked_by_label = actor.label
        _set_history(token, actor, reason)
        token.save()
    logger.info("access token %s (%s) revoked by %s", token.key_id, token.name, actor.label)
    return token


def authenticate(raw_token: str) -> PersonalAccessToken | None:
    """The active token `raw_token` is, with its user; None for anything else."""
    key_id = token_id_of(raw_token)
    if key_id is None:
        return None
    token = PersonalAccessToken.objects.select_related("user").filter(key_id=key_id).first()
    # Hash and compare even when no row matched, so timing tells nothing about key ids.
    expected = token.key_hash if token is not None else hash_key("")
    if not hmac.compare_digest(hash_key(raw_token), expected) or token is None:
        return None
    if not token.is_active or not token.user.is_active:
        return None
    _note_use(token)
    return token


def _note_use(token: PersonalAccessToken) -> None:
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    # One UPDATE, and only if no other request wrote it within the minute.
    PersonalAccessToken.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY), pk=token.pk
    ).update(last_used_at=now)
    token.last_used_at = now


def _set_history(token: PersonalAccessToken, actor: Actor, reason: str) -> None:
    # simple-history reads these two attributes for the history row (not model fields).
    token._history_user = actor.user  # type: ignore[attr-defined]
    token._change_reason = reason[:100]  # type: ignore[attr-defined]
