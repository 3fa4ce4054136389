"""Writing audit records: the log of changes to what governs releases (AuditRecord).

Invariants:
- A record is written inside the transaction of the change it describes, by the service
  that makes it: no change without its record, no record of a change that rolled back.
- Records carry who (user and label), why (a reason, required) and before/after as data.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from agentconfig.core.actors import Actor
from agentconfig.models import AuditAction, AuditRecord


def record_audit(
    *,
    action: AuditAction,
    actor: Actor,
    reason: str,
    subject_label: str,
    environment_id: int | None = None,
    subject_user: Any = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditRecord:
    """Record a governance change; call inside the change's own transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("record_audit must run inside the transaction of the change")
    return AuditRecord.objects.create(
        action=action,
        actor=actor.user,
        actor_label=actor.label,
        reason=reason,
        subject_label=subject_label,
        environment_id=environment_id,
        subject_user=subject_user,
        before=before or {},
        after=after or {},
    )
