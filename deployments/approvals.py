"""Whether a release to an environment may go ahead: approvals, or breaking the glass.

Invariants:
- An environment that requires approval (`Environment.requires_approval`) takes a deploy
  or a canary only with a request approved for exactly that change, or with break glass
  (its own permission and a reason, recorded in the release log and shown prominently in
  the audit). Who may review, withdraw or apply a request: deployments.services.requests
  (ApprovalState).
- An approval counts only if it was given while the version now active in the target
  environment was active (otherwise the reviewer saw a diff that is no longer the real
  one), by a reviewer other than the requester, and the request has no rejection.
- Where the environment requires evaluation, the version must pass the evaluation gate
  (evaluations.gate, registered in deployments.release_checks) or carry a reviewer's
  override; break glass skips both.
- Rollbacks never pass through here: they only return to what already served there.
"""

from __future__ import annotations

from typing import Any

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden, ServiceError
from agentconfig.core.people import users_granted_by
from deployments.models import (
    DeploymentRequest,
    Environment,
    RequestKind,
    RequestStatus,
    ReviewDecision,
)
from deployments.release_checks import run_release_checks
from versions.models import AgentVersion

BREAK_GLASS_PERMISSION = "deployments.break_glass"


def valid_approvals(request: DeploymentRequest, current: object) -> list[Any]:
    """The approvals that still count: reviewers other than the requester, same base.

    `current` is what the reviewers must have seen: the id of the version active in the
    target environment for a release, the subject's state fingerprint for other changes.
    A reviewer whom the requester created, or gave review rights, at or after opening the
    request does not count either: that is the requester approving under a second name
    (read from the audit records in one query, whatever the number of reviews).
    """
    reviewers = []
    for review in request.reviews.all():
        if review.decision != ReviewDecision.APPROVE:
            continue
        if request.requested_by_id is not None and review.reviewer_id == request.requested_by_id:
            continue
        seen = review.active_version_id if request.is_release else review.base_state
        if seen != current:
            continue
        if review.reviewer_id not in reviewers:
            reviewers.append(review.reviewer_id)
    # A list that annotated `requester_made_grants` (people.made_grants_since) knows
    # without a query per row that most requesters granted nothing since.
    if not getattr(request, "requester_made_grants", True):
        return reviewers
    granted = users_granted_by(
        granter_id=request.requested_by_id,
        user_ids=reviewers,
        since=request.created_at,
        permission="deployments.review_deploymentrequest",
    )
    return [reviewer for reviewer in reviewers if reviewer not in granted]


def approvals_given(request: DeploymentRequest) -> int:
    """Approvals given on `request`, whether they still count or not."""
    return sum(review.decision == ReviewDecision.APPROVE for review in request.reviews.all())


def is_rejected(request: DeploymentRequest) -> bool:
    """Whether a reviewer rejected `request` (a rejection closes it)."""
    return any(review.decision == ReviewDecision.REJECT for review in request.reviews.all())


def clear_release(
    *,
    environment: Environment,
    version: AgentVersion,
    kind: RequestKind,
    actor: Actor,
    active_version_id: object,
    request: DeploymentRequest | None = None,
    break_glass: str = "",
) -> dict[str, Any]:
    """Refuse unless this release may go ahead; the release-log details that say why it may
    (the request itself is recorded as the release's `request`)."""
    if break_glass.strip():
        # An emergency skips review and the evaluation gate; the audit shows it in red.
        actor.require(BREAK_GLASS_PERMISSION, "break the glass")
        return {"break_glass": break_glass.strip()}
    details = run_release_checks(environment, version)
    if request is not None:
        _check_request(request, environment, version, kind, active_version_id)
        return details
    if not environment.requires_approval:
        return details
    needed = environment.required_approvals
    approvals = "1 approval" if needed == 1 else f"{needed} approvals"
    raise Forbidden(
        f"{environment.slug} requires {approvals}: open a deployment request (admin: Request "
        "deployment…; CLI: sync_agents --request), have it approved, then apply it with "
        "--request ID. In an emergency: --break-glass REASON (recorded in the audit)."
    )


def check_change_request(
    request: DeploymentRequest, *, kind: RequestKind, environment: Environment, state: str
) -> None:
    """Refuse unless `request` is an open, approved request of `kind` in `environment`
    whose approvals were given on the subject's current `state` (caller holds its lock)."""
    if (request.kind, request.environment_id) != (kind, environment.pk):
        raise ServiceError(
            f"request #{request.pk} is for {request} — not for this change; apply it as it is."
        )
    _check_open_and_approved(request, environment, state, "the state it changes")


def _check_request(
    request: DeploymentRequest,
    environment: Environment,
    version: AgentVersion,
    kind: RequestKind,
    active_version_id: object,
) -> None:
    if (request.environment_id, request.version_id, request.kind) != (
        environment.pk,
        version.pk,
        kind,
    ):
        raise ServiceError(
            f"request #{request.pk} is for {request} — not for this change; apply it as it is."
        )
    _check_open_and_approved(
        request, environment, active_version_id, f"the active version in {environment.slug}"
    )


def _check_open_and_approved(
    request: DeploymentRequest, environment: Environment, current: object, what: str
) -> None:
    if request.status != RequestStatus.OPEN:
        raise Conflict(f"request #{request.pk} is {request.get_status_display().lower()}.")
    if is_rejected(request):
        raise Conflict(f"request #{request.pk} was rejected.")
    have = len(valid_approvals(request, current))
    needed = environment.required_approvals
    if have < needed:
        stale = approvals_given(request) - have
        note = (
            f" ({stale} approval(s) no longer count: {what} changed after they were given, "
            "so they approved another diff)"
            if stale
            else ""
        )
        raise Forbidden(
            f"request #{request.pk} has {have} of the {needed} approval(s) "
            f"{environment.slug} requires{note}."
        )
