"""Deployment requests: an editor asks, reviewers approve or reject, a deployer applies.

Invariants:
- Nobody approves their own request (the service refuses, whatever the permissions).
- A review always carries a comment and the version active in the target environment
  at that moment (deployments.approvals decides whether it still counts).
- Applying goes through deploy_version / start_canary with the request, so the same
  locks, checks and release-log rows apply as for any other release.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentconfig.actors import Actor
from agentconfig.errors import Conflict, Forbidden
from agentconfig.models import Agent
from agentconfig.reasons import validate_reason
from deployments import canary
from deployments.models import (
    CanaryRollout,
    DeploymentRequest,
    Environment,
    ReleaseLogEntry,
    RequestKind,
    RequestReview,
    RequestStatus,
    ReviewDecision,
)
from deployments.selectors import get_pointer
from deployments.services import deploy_version, lock_pointer
from versions.models import AgentVersion

REQUEST_PERMISSION = "deployments.add_deploymentrequest"
REVIEW_PERMISSION = "deployments.review_deploymentrequest"


def create_request(
    *,
    agent: Agent,
    environment: Environment,
    version: AgentVersion,
    actor: Actor,
    reason: str,
    kind: RequestKind | str = RequestKind.STABLE,
    canary_plan: str = "",
) -> DeploymentRequest:
    """Ask for `version` to be deployed (or canaried) in `environment`."""
    actor.require(REQUEST_PERMISSION, "request deployments")
    reason = validate_reason(reason)
    if version.agent_id != agent.pk:
        raise ValidationError({"version": f"{version} is not a version of {agent.slug}."})
    if kind not in RequestKind.values:
        raise ValidationError({"kind": f"unknown kind {kind!r}: use stable or canary."})
    canary_plan = canary_plan.strip()
    if kind == RequestKind.CANARY:
        _validate_plan(canary_plan)
    elif canary_plan:
        raise ValidationError({"canary_plan": "only a canary request takes a percentage or steps."})
    pointer = get_pointer(agent, environment)
    if pointer is not None and pointer.stable_version_id == version.pk:
        raise Conflict(f"{version.label} is already active in {environment.slug}.")
    try:
        with transaction.atomic():
            return DeploymentRequest.objects.create(
                agent=agent,
                environment=environment,
                version=version,
                kind=kind,
                canary_plan=canary_plan,
                reason=reason,
                base_version=pointer.stable_version if pointer else None,
                requested_by=actor.user,
                requested_by_label=actor.label,
            )
    except IntegrityError:
        raise Conflict(
            f"an open request to release {agent.slug} {version.label} to {environment.slug} "
            "already exists; review or withdraw that one."
        ) from None


def approve_request(
    *, request: DeploymentRequest, actor: Actor, comment: str, seen_active_id: str | None = None
) -> RequestReview:
    """Approve `request`, as a reviewer who is not its requester.

    `seen_active_id` is the id of the version that was active when the reviewer read the
    diff ("" for none); if it is no longer active, nothing is recorded (Conflict).
    """
    return _review(request, actor, comment, ReviewDecision.APPROVE, seen_active_id)


def reject_request(
    *, request: DeploymentRequest, actor: Actor, comment: str, seen_active_id: str | None = None
) -> RequestReview:
    """Reject `request`: it is closed and cannot be applied."""
    return _review(request, actor, comment, ReviewDecision.REJECT, seen_active_id)


def withdraw_request(*, request: DeploymentRequest, actor: Actor) -> DeploymentRequest:
    """Withdraw an open request (its requester, or someone who may review requests)."""
    is_requester = actor.user is not None and actor.user.pk == request.requested_by_id
    if not is_requester:
        actor.require(REVIEW_PERMISSION, "withdraw someone else's request")
    with transaction.atomic():
        request = _lock_open(request)
        return _close(request, RequestStatus.WITHDRAWN, actor)


def apply_request(
    *, request: DeploymentRequest, actor: Actor, reason: str = ""
) -> ReleaseLogEntry | CanaryRollout:
    """Release an approved request through the deploy or canary service."""
    with transaction.atomic():
        request = _lock_open(request)
        reason = reason.strip() or f"Request #{request.pk}: {request.reason}"
        if request.kind == RequestKind.CANARY:
            plan = request.canary_plan
            result: ReleaseLogEntry | CanaryRollout = canary.start_canary(
                agent=request.agent,
                environment=request.environment,
                version=request.version,
                actor=actor,
                reason=reason,
                percent=plan if "," not in plan else None,
                steps=plan if "," in plan else None,
                request=request,
            )
        else:
            result = deploy_version(
                agent=request.agent,
                environment=request.environment,
                version=request.version,
                actor=actor,
                reason=reason,
                request=request,
            )
        _close(request, RequestStatus.APPLIED, actor)
        return result


def _review(
    request: DeploymentRequest,
    actor: Actor,
    comment: str,
    decision: ReviewDecision,
    seen_active_id: str | None,
) -> RequestReview:
    actor.require(REVIEW_PERMISSION, "review deployment requests")
    if actor.user is None:
        raise Forbidden("reviews are given by people: sign in to review a request.")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationError({"comment": "is required: say what you checked, or what is wrong."})
    if actor.user.pk == request.requested_by_id:
        raise Forbidden("you cannot review your own request: another reviewer must approve it.")
    with transaction.atomic():
        request = _lock_open(request)
        if request.reviews.filter(reviewer=actor.user).exists():
            raise Conflict(f"you already reviewed request #{request.pk}.")
        # The agent row lock keeps the pointer still while the review records it.
        pointer = lock_pointer(request.agent, request.environment)
        active = pointer.stable_version if pointer else None
        if seen_active_id is not None and seen_active_id != (str(active.pk) if active else ""):
            now = active.label if active else "nothing"
            raise Conflict(
                f"the version active in {request.environment.slug} changed while you were "
                f"reading (now {now}): read the new diff before you decide."
            )
        review = RequestReview.objects.create(
            request=request,
            reviewer=actor.user,
            decision=decision,
            comment=comment,
            active_version=active,
        )
        if decision == ReviewDecision.REJECT:
            _close(request, RequestStatus.REJECTED, actor)
        return review


def _lock_open(request: DeploymentRequest) -> DeploymentRequest:
    locked = (
        DeploymentRequest.objects.select_for_update()
        .select_related("agent", "environment", "version")
        .get(pk=request.pk)
    )
    if locked.status != RequestStatus.OPEN:
        raise Conflict(f"request #{locked.pk} is {locked.get_status_display().lower()}.")
    return locked


def _close(request: DeploymentRequest, status: RequestStatus, actor: Actor) -> DeploymentRequest:
    request.status = status
    request.closed_at = timezone.now()
    request.closed_by_label = actor.label
    request.save()
    return request


def _validate_plan(plan: str) -> None:
    if not plan:
        raise ValidationError(
            {"canary_plan": "give a percentage (e.g. 5) or steps (e.g. 1,5,25,50)."}
        )
    if "," in plan:
        canary.parse_steps(plan, "canary_plan")
    else:
        canary.parse_percent(plan, "canary_plan")
