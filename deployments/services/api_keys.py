"""API keys: the credentials runtimes present. Created and revoked only here.

Invariants:
- Stored as a SHA-256 hash only; the plaintext is returned once, at creation. Checked in
  constant time by delivery.snapshot (`hash_key`, `key_id_of`).
- Creating or revoking a key needs a reason and an administrator's permission
  (add_apikey / change_apikey), and writes its AuditRecord in the same transaction.
- A key's scope (agents, can_read, can_report) is set only here, at creation: a new
  scope is a new key and a revocation (rotation), each with its own feed row.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentconfig.core.actors import Actor
from agentconfig.core.audit_records import record_audit
from agentconfig.core.change_feed import record_change
from agentconfig.core.errors import Conflict
from agentconfig.core.reasons import validate_reason
from agentconfig.models import Agent, AuditAction, ChangeTopic
from deployments.models import ApiKey, Environment

KEY_FORMAT = re.compile(r"^acfg_([0-9a-f]{12})_[A-Za-z0-9_-]{20,100}$")


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def key_id_of(raw_key: str) -> str | None:
    match = KEY_FORMAT.match(raw_key)
    return match.group(1) if match else None


def clean_secret_name(name: str, *, example: str, max_length: int = 100) -> str:
    """A credential's name, stripped: required and at most `max_length` characters. One rule
    for runtime keys and personal access tokens (agentconfig.api), `example` aside."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": f"is required, e.g. {example!r}."})
    if len(name) > max_length:
        raise ValidationError({"name": f"is longer than {max_length} characters."})
    return name


def new_secret(prefix: str) -> tuple[str, str]:
    """A new credential's key id and plaintext `<prefix><key id>_<secret>` (KEY_FORMAT and the
    tokens' TOKEN_FORMAT); only `hash_key(plaintext)` is ever stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"{prefix}{key_id}_{secrets.token_urlsafe(32)}"


def create_api_key(
    *,
    environment: Environment,
    name: str,
    actor: Actor,
    reason: str,
    agents: Iterable[Agent] = (),
    can_read: bool = True,
    can_report: bool = True,
) -> tuple[ApiKey, str]:
    """Create a key for `environment`, limited to `agents` (none: every agent) and to
    reading configs and/or reporting outcomes; returns the row and the plaintext, shown
    only once."""
    actor.require("deployments.add_apikey", "create API keys")
    reason = validate_reason(reason)
    name = clean_secret_name(name, example="support-bot-prod-eu")
    if not (can_read or can_report):
        raise ValidationError(
            {
                "can_read": "a key must be able to read configurations, report outcomes, or "
                "both; a key that can do neither would only be a credential to leak."
            }
        )
    agents = sorted(set(agents), key=lambda agent: agent.slug)
    key_id, plaintext = new_secret("acfg_")
    key = ApiKey(
        name=name,
        environment=environment,
        key_id=key_id,
        key_hash=hash_key(plaintext),
        created_by_label=actor.label,
        can_read=can_read,
        can_report=can_report,
    )
    try:
        with transaction.atomic():
            key.save()
            # In the key's own transaction: no process can ever load the key without its
            # agents, which would read as "every agent".
            key.agents.set(agents)
            _record(key, AuditAction.API_KEY_CREATED, actor, reason, before={})
    except IntegrityError:
        raise ValidationError(
            {"name": f"an active API key named {name!r} already exists; pick another name."}
        ) from None
    return key, plaintext


def revoke_api_key(*, key: ApiKey, actor: Actor, reason: str) -> ApiKey:
    """Revoke `key`: refused at once by this process, within the refresh interval by all."""
    actor.require("deployments.change_apikey", "revoke API keys")
    reason = validate_reason(reason)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().select_related("environment").get(pk=key.pk)
        if key.revoked_at is not None:
            raise Conflict(
                f"API key {key.name!r} was already revoked on {key.revoked_at:%Y-%m-%d}."
            )
        before = _key_record(key)
        key.revoked_at = timezone.now()
        key.revoked_by_label = actor.label
        key.save()
        _record(key, AuditAction.API_KEY_REVOKED, actor, reason, before=before)
    return key


def _record(
    key: ApiKey, action: AuditAction, actor: Actor, reason: str, *, before: dict[str, Any]
) -> None:
    """A key's change-feed row (every process reloads it) and its audit record, in the
    transaction of the change."""
    record_change(topic=ChangeTopic.API_KEY, api_key_id=key.key_id)
    record_audit(
        action=action,
        actor=actor,
        reason=reason,
        subject_label=f"key {key.name}",
        environment_id=key.environment_id,
        before=before,
        after=_key_record(key),
    )


def _key_record(key: ApiKey) -> dict[str, Any]:
    # Never the hash: the audit is read by more people than the keys' owners.
    agents = sorted(key.agents.values_list("slug", flat=True))
    return {
        "name": key.name,
        "key_id": key.key_id,
        "environment": key.environment.slug,
        "active": key.is_active,
        "agents": agents or "all",
        "can_read": key.can_read,
        "can_report": key.can_report,
    }
