"""Pointer moves: deploy and rollback. The admin, the CLI, the API and the tests call these.

Invariants:
- A pointer move and its release-log row are written in one transaction, under a
  lock on the agent row, so two concurrent moves of one agent serialise and each
  log row's from_version is the version that was really active before it.
- Every pointer move and key change records its change-feed row in the same transaction
  (agentconfig.core.change_feed): every server process serves it within the refresh interval.
- Rollback only ever moves the pointer to a version that was active in that
  environment before; it never edits or creates a version.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agentconfig.core.actors import Actor
from agentconfig.core.change_feed import record_change
from agentconfig.core.errors import Conflict, NotFound, ServiceError
from agentconfig.core.reasons import validate_reason
from agentconfig.models import Agent, ChangeTopic
from deployments.approvals import clear_release
from deployments.models import (
    STABLE_KINDS,
    CanaryRollout,
    CanaryStatus,
    DeploymentRequest,
    Environment,
    Pointer,
    ReleaseKind,
    ReleaseLogEntry,
    RequestKind,
)
from deployments.selectors import get_pointer
from versions.models import AgentVersion


def deploy_version(
    *,
    agent: Agent,
    environment: Environment,
    version: AgentVersion,
    actor: Actor,
    reason: str,
    request: DeploymentRequest | None = None,
    break_glass: str = "",
    expected_active_id: str | None = None,
) -> ReleaseLogEntry:
    """Make `version` the active version of `agent` in `environment`.

    Where the environment requires approval, only with an approved `request` for exactly
    this change, or with `break_glass` (a reason; needs its own permission).
    """
    actor.require("deployments.deploy_version", "deploy versions")
    reason = validate_reason(reason)
    version.require_of(agent)
    with transaction.atomic():
        pointer = lock_pointer(agent, environment)
        check_expected_active(pointer, environment, expected_active_id)
        if pointer is not None and pointer.canary_id is not None:
            raise Conflict(
                f"a canary of {agent.slug} is running in {environment.slug}; promote or abort it "
                "before deploying another version."
            )
        if pointer is not None and pointer.stable_version_id == version.pk:
            raise Conflict(f"{version.label} is already active in {environment.slug}.")
        details = clear_release(
            environment=environment,
            version=version,
            kind=RequestKind.STABLE,
            actor=actor,
            active_version_id=pointer.stable_version_id if pointer else None,
            request=request,
            break_glass=break_glass,
        )
        return _move_pointer(
            agent,
            environment,
            pointer,
            version,
            ReleaseKind.DEPLOY,
            actor,
            reason,
            details,
            request=request,
        )


def rollback(
    *,
    agent: Agent,
    environment: Environment,
    actor: Actor,
    reason: str,
    to_version: AgentVersion | None = None,
    expected_active_id: str | None = None,
) -> ReleaseLogEntry:
    """Move the pointer back to a version that was active in `environment` before.

    Without `to_version`, the target is the version that was active just before the
    current one. While a canary runs, rolling back first ends the canary (its users go
    back to the stable version); without `to_version` that is all it does.
    """
    actor.require("deployments.rollback_version", "roll back")
    reason = validate_reason(reason)
    with transaction.atomic():
        pointer = lock_pointer(agent, environment)
        if pointer is None:
            raise NotFound(f"{agent.slug} has never been deployed to {environment.slug}.")
        check_expected_active(pointer, environment, expected_active_id)
        if pointer.canary_id is not None:
            ended = end_canary(pointer, CanaryStatus.ROLLED_BACK, actor, reason)
            if to_version is None or to_version.pk == pointer.stable_version_id:
                return ended
        current = pointer.stable_version
        if to_version is None:
            last_move = (
                ReleaseLogEntry.objects.filter(
                    agent=agent, environment=environment, kind__in=STABLE_KINDS
                )
                .select_related("from_version")
                .first()
            )
            to_version = last_move.from_version if last_move else None
            if to_version is None:
                raise ServiceError(
                    f"nothing to roll back to: {current.label} is the only version that has "
                    f"been active in {environment.slug}."
                )
        else:
            to_version.require_of(agent, "to_version")
            if to_version.pk == current.pk:
                raise Conflict(f"{current.label} is already active in {environment.slug}.")
            if not ReleaseLogEntry.objects.filter(
                agent=agent, environment=environment, to_version=to_version, kind__in=STABLE_KINDS
            ).exists():
                raise ServiceError(
                    f"{to_version.label} has never been active in {environment.slug}, so it is "
                    "not a rollback target. Deploy it instead (deploys may need approval)."
                )
        return _move_pointer(
            agent, environment, pointer, to_version, ReleaseKind.ROLLBACK, actor, reason
        )


def lock_pointer(agent: Agent, environment: Environment) -> Pointer | None:
    """Lock the agent's pointers for this transaction; the pointer in `environment`, if any.

    The agent row is locked, not only the pointer: the first deploy has no row to lock.
    FOR NO KEY UPDATE, not FOR UPDATE: releases still exclude each other (and version
    numbering's FOR UPDATE), but rows that merely reference the agent (outcome counts,
    whose foreign-key check takes a key-share lock at commit) never wait for a release.
    """
    Agent.objects.select_for_update(no_key=True).only("pk").get(pk=agent.pk)
    return get_pointer(agent, environment)


def check_expected_active(
    pointer: Pointer | None, environment: Environment, expected_active_id: str | None
) -> None:
    """Refuse if the active version is not the one the person saw ("" for none).

    Confirmation pages show a diff against what is active; a release that landed in the
    meantime would make the confirmed change a different one. Caller holds the lock.
    """
    if expected_active_id is None:
        return
    active = pointer.stable_version if pointer else None
    if expected_active_id != (str(active.pk) if active else ""):
        now = active.label if active else "nothing"
        raise Conflict(
            f"the active version in {environment.slug} changed while you were reviewing "
            f"(now {now}); check the changes again."
        )


def write_release_log(
    pointer: Pointer,
    kind: ReleaseKind,
    from_version: AgentVersion | None,
    to_version: AgentVersion,
    actor: Actor,
    reason: str,
    details: dict[str, Any] | None = None,
    *,
    request: DeploymentRequest | None = None,
    rollout: CanaryRollout | None = None,
) -> ReleaseLogEntry:
    """The release-log row of a pointer change, and its change-feed row (same transaction)."""
    entry = ReleaseLogEntry.objects.create(
        agent=pointer.agent,
        environment=pointer.environment,
        kind=kind,
        from_version=from_version,
        to_version=to_version,
        actor=actor.user,
        actor_label=actor.label,
        reason=reason,
        request=request,
        rollout=rollout,
        details=details or {},
    )
    record_change(
        topic=ChangeTopic.AGENT, agent=pointer.agent_id, environment_id=pointer.environment_id
    )
    return entry


def end_canary(
    pointer: Pointer, status: CanaryStatus, actor: Actor, reason: str
) -> ReleaseLogEntry:
    """End the pointer's running canary without promoting it (caller holds the lock)."""
    rollout = pointer.canary
    if rollout is None:
        raise Conflict(
            f"no canary of {pointer.agent.slug} is running in {pointer.environment.slug}."
        )
    rollout.status = status
    rollout.ended_at = timezone.now()
    rollout.ended_by_label = actor.label
    rollout.end_reason = reason
    rollout.save()
    pointer.canary = None
    pointer.updated_by_label = actor.label
    pointer.save()
    kind = (
        ReleaseKind.CANARY_ROLLBACK
        if status == CanaryStatus.ROLLED_BACK
        else ReleaseKind.CANARY_ABORT
    )
    return write_release_log(
        pointer,
        kind,
        rollout.canary_version,
        pointer.stable_version,
        actor,
        reason,
        {"percent": rollout.percent},
        rollout=rollout,
    )


def _move_pointer(
    agent: Agent,
    environment: Environment,
    pointer: Pointer | None,
    version: AgentVersion,
    kind: ReleaseKind,
    actor: Actor,
    reason: str,
    details: dict[str, Any] | None = None,
    request: DeploymentRequest | None = None,
) -> ReleaseLogEntry:
    previous = pointer.stable_version if pointer else None
    try:
        with transaction.atomic():
            if pointer is None:
                pointer = Pointer(agent=agent, environment=environment)
            pointer.stable_version = version
            pointer.updated_by_label = actor.label
            pointer.save()
            return write_release_log(
                pointer, kind, previous, version, actor, reason, details, request=request
            )
    except IntegrityError:
        # Reached only if another writer created the pointer without taking the agent lock.
        raise Conflict(
            f"the pointer of {agent.slug} in {environment.slug} changed at the same moment; "
            "reload and try again."
        ) from None
