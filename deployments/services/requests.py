"""Change requests: someone asks, reviewers approve or reject, someone applies.

A request is a release (a version as stable or canary) or another change that reaches
runtimes or governs releases (a flag change, an environment's settings). The mechanics are
the same for all: a reason, N approvals by people other than the requester, approvals that
go stale when what they approved moved, and applying through the one service that writes
the change. What a non-release request changes is its *subject*, registered by the app
that owns it (`register_subject`), so this module never imports a higher app.

Invariants:
- Nobody approves their own request (the service refuses, whatever the permissions).
- A review always carries a comment and what the reviewer saw: the version active in the
  target environment, or the subject's state fingerprint (deployments.approvals decides
  whether it still counts).
- Applying goes through deploy_version / start_canary / the subject's service with the
  request, so the same locks, checks and log rows apply as for any other change.
- Whatever a person confirmed (the active version, the subject's state) is checked under
  the same lock as the write; if it moved, the call is refused with a Conflict.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden
from agentconfig.core.reasons import validate_reason
from agentconfig.models import Agent
from deployments.approvals import approvals_given, is_rejected, valid_approvals
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
from deployments.services import canaries as canary_services
from deployments.services.releases import check_expected_active, deploy_version, lock_pointer
from versions.models import AgentVersion

DEPLOY_PERMISSION = "deployments.deploy_version"
REQUEST_PERMISSION = "deployments.add_deploymentrequest"
REVIEW_PERMISSION = "deployments.review_deploymentrequest"
# Withdrawing someone else's request is an administrator's call (the Admins group holds
# every permission of the app); the requester may always withdraw their own.
WITHDRAW_ANY_PERMISSION = "deployments.change_deploymentrequest"


class RequestSubject(Protocol):
    """What a kind of non-release request changes; implemented by the app that owns it."""

    def prepare(
        self, *, environment: Environment, proposal: dict[str, Any], actor: Actor
    ) -> tuple[dict[str, Any], Agent | None]:
        """Check the actor may propose it and validate it (nothing written): the proposal
        as it will be applied (with a one-line "summary") and the agent it concerns."""

    def lock(self, request: DeploymentRequest) -> str:
        """Lock the subject's rows for this transaction; its state fingerprint."""

    def apply(self, request: DeploymentRequest, actor: Actor, reason: str) -> Any:
        """Apply the proposal through the subject's own service, with `request`."""

    def describe(self, request: DeploymentRequest) -> list[str]:
        """What applying it changes for runtimes, in words (for the request page)."""


_subjects: dict[str, RequestSubject] = {}


def register_subject(kind: RequestKind, subject: RequestSubject) -> None:
    """Called from the owning app's ready(): requests of `kind` change `subject`."""
    _subjects[kind] = subject


def subject_of(request: DeploymentRequest) -> RequestSubject:
    return _subjects[request.kind]


def propose_change(
    *,
    kind: RequestKind,
    environment: Environment,
    proposal: dict[str, Any],
    actor: Actor,
    reason: str,
) -> DeploymentRequest:
    """Open a request for a change that is not a release (a flag, environment settings)."""
    actor.require(REQUEST_PERMISSION, "ask for changes")
    reason = validate_reason(reason)
    subject = _subjects[kind]
    proposal, agent = subject.prepare(environment=environment, proposal=proposal, actor=actor)
    with transaction.atomic():
        request = _new_request(
            actor, reason, agent=agent, environment=environment, kind=kind, proposal=proposal
        )
        request.base_state = subject.lock(request)
        request.save()
        return request


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
    version.require_of(agent)
    if kind not in (RequestKind.STABLE, RequestKind.CANARY):
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
            request = _new_request(
                actor,
                reason,
                agent=agent,
                environment=environment,
                version=version,
                kind=kind,
                canary_plan=canary_plan,
                base_version=pointer.stable_version if pointer else None,
            )
            request.save()
            return request
    except IntegrityError:
        raise Conflict(
            f"an open request to release {agent.slug} {version.label} to {environment.slug} "
            "already exists; review or withdraw that one."
        ) from None


def approve_request(
    *,
    request: DeploymentRequest,
    actor: Actor,
    comment: str,
    seen_active_id: str | None = None,
    seen_state: str | None = None,
) -> RequestReview:
    """Approve `request`, as a reviewer who is not its requester.

    `seen_active_id` (releases) is the id of the version that was active when the reviewer
    read the diff ("" for none); `seen_state` (other changes) the subject's state
    fingerprint the page showed. If it moved, nothing is recorded (Conflict).
    """
    return _review(request, actor, comment, ReviewDecision.APPROVE, seen_active_id, seen_state)


def reject_request(
    *,
    request: DeploymentRequest,
    actor: Actor,
    comment: str,
    seen_active_id: str | None = None,
    seen_state: str | None = None,
) -> RequestReview:
    """Reject `request`: it is closed and cannot be applied."""
    return _review(request, actor, comment, ReviewDecision.REJECT, seen_active_id, seen_state)


def withdraw_request(*, request: DeploymentRequest, actor: Actor) -> DeploymentRequest:
    """Withdraw an open request: its requester's right, or an administrator's."""
    ApprovalState(request, actor).require_withdraw()
    with transaction.atomic():
        request = _lock_open(request)
        return _close(request, RequestStatus.WITHDRAWN, actor)


def review_permission(request: DeploymentRequest) -> str:
    """The permission reviewing `request` needs (a subject may ask more, e.g. an admin)."""
    if request.is_release:
        return REVIEW_PERMISSION
    return str(getattr(subject_of(request), "review_permission", REVIEW_PERMISSION))


def apply_permission(request: DeploymentRequest) -> tuple[str, str]:
    """The permission applying `request` needs, and the action for the refusal message."""
    if not request.is_release:
        subject = subject_of(request)
        permission = str(getattr(subject, "apply_permission", DEPLOY_PERMISSION))
        return permission, "apply approved change requests"
    if request.kind == RequestKind.CANARY:
        return canary_services.MANAGE_PERMISSION, "start canaries (apply a canary request)"
    return DEPLOY_PERMISSION, "deploy versions (apply a deployment request)"


@dataclass(frozen=True)
class ApprovalState:
    """Who may review, withdraw and apply a request, and how far it is from its approvals.

    The one home of "who may approve a request": the services refuse what it refuses
    (`require_*`) and the pages offer exactly what it allows (`may_*`).
    - Review: a person holding the review permission (a subject may ask more: settings
      changes need an administrator), never the requester, once, while the request is open.
    - Withdraw: the requester, or an administrator (WITHDRAW_ANY_PERMISSION), while open.
    - Apply: the permission of the release or change it makes, while open; whether the
      approvals suffice *now* is checked again by the release (deployments.approvals).
    A system actor (the CLI) holds the database credentials: it may withdraw and apply,
    but reviews are given by people. `actor` None asks only for the counts (a list).

    The counts read `current`, what approvals must have been given on: the id of the
    version active in the target environment now (releases), or the subject's state
    fingerprint (other changes); deployments.approvals.valid_approvals decides which count.
    They are computed when first read (the services' refusals need none of them).
    """

    request: DeploymentRequest
    actor: Actor | None = None
    current: object = None

    # --- who may do what ------------------------------------------------------------------

    @property
    def is_requester(self) -> bool:
        user = self.actor.user if self.actor else None
        return user is not None and user.pk == self.request.requested_by_id

    @property
    def has_reviewed(self) -> bool:
        user = self.actor.user if self.actor else None
        return user is not None and any(
            review.reviewer_id == user.pk for review in self.request.reviews.all()
        )

    @property
    def holds_review_permission(self) -> bool:
        """Whether the actor is a person who may review requests like this one (the
        requester's own included: the page then says another reviewer must approve)."""
        return self._person_holds(review_permission(self.request))

    @property
    def may_review(self) -> bool:
        """Whether the actor may approve or reject the request now."""
        return self.request.is_open and self._review_refusal() is None and not self.has_reviewed

    @property
    def may_withdraw(self) -> bool:
        return self.request.is_open and self._withdraw_refusal() is None

    @property
    def may_apply(self) -> bool:
        return self.request.is_open and self._apply_refusal() is None

    def require_review(self) -> None:
        """Refuse (Forbidden) unless the actor may review requests like this one."""
        _raise(self._review_refusal())

    def require_withdraw(self) -> None:
        _raise(self._withdraw_refusal())

    def require_apply(self) -> None:
        _raise(self._apply_refusal())

    # --- how far it is from its approvals -------------------------------------------------

    @property
    def needed(self) -> int:
        return self.request.environment.required_approvals

    @cached_property
    def approvers(self) -> list[Any]:
        """The reviewers whose approvals count (given on `current`, not the requester's)."""
        return valid_approvals(self.request, self.current)

    @property
    def valid(self) -> int:
        return len(self.approvers)

    @cached_property
    def stale(self) -> int:
        """Approvals given that no longer count."""
        return approvals_given(self.request) - self.valid

    @cached_property
    def rejected(self) -> bool:
        return is_rejected(self.request)

    @property
    def enough(self) -> bool:
        return not self.rejected and self.valid >= self.needed

    @property
    def missing(self) -> int:
        return max(self.needed - self.valid, 0)

    # --- the rules, once --------------------------------------------------------------------

    def _person_holds(self, permission: str) -> bool:
        user = self.actor.user if self.actor else None
        return user is not None and bool(user.is_active and user.has_perm(permission))

    def _review_refusal(self) -> Forbidden | None:
        if self.actor is None:
            return Forbidden("reviews are given by people: sign in to review a request.")
        try:
            self.actor.require(review_permission(self.request), "review this request")
        except Forbidden as refusal:
            return refusal
        if self.actor.user is None:
            return Forbidden("reviews are given by people: sign in to review a request.")
        if self.is_requester:
            return Forbidden(
                "you cannot review your own request: another reviewer must approve it."
            )
        return None

    def _withdraw_refusal(self) -> Forbidden | None:
        if self.actor is None:
            return Forbidden("withdrawing a request needs someone who withdraws it.")
        if self.actor.user is None or (self.actor.user.is_active and self.is_requester):
            return None
        if self._person_holds(WITHDRAW_ANY_PERMISSION):
            return None
        return Forbidden(
            f"{self.actor.label} may not withdraw request #{self.request.pk}: only its "
            f"requester ({self.request.requested_by_label}) or an administrator can."
        )

    def _apply_refusal(self) -> Forbidden | None:
        if self.actor is None:
            return Forbidden("applying a request needs someone who applies it.")
        try:
            self.actor.require(*apply_permission(self.request))
        except Forbidden as refusal:
            return refusal
        return None


def _raise(refusal: Forbidden | None) -> None:
    if refusal is not None:
        raise refusal


def apply_request(
    *,
    request: DeploymentRequest,
    actor: Actor,
    reason: str = "",
    expected_active_id: str | None = None,
    expected_state: str | None = None,
) -> Any:
    """Apply an approved request through the service that writes its change.

    `expected_active_id` (releases) / `expected_state` (other changes) is what the person
    confirmed; it is checked under the same lock as the write.
    """
    with transaction.atomic():
        request = _lock_open(request)
        ApprovalState(request, actor).require_apply()
        reason = reason.strip() or f"Request #{request.pk}: {request.reason}"
        if not request.is_release:
            _check_seen_state(
                request,
                expected_state,
                f"what request #{request.pk} changes moved while you were reviewing it; "
                "read the request again before you apply it.",
            )
            applied = subject_of(request).apply(request, actor, reason)
            _close(request, RequestStatus.APPLIED, actor)
            return applied
        # A release request names its agent and version (the release_requests_name_a_version
        # check).
        assert request.agent is not None and request.version is not None  # noqa: S101
        if expected_active_id is not None:
            pointer = lock_pointer(request.agent, request.environment)
            check_expected_active(pointer, request.environment, expected_active_id)
        if request.kind == RequestKind.CANARY:
            plan = request.canary_plan
            result: ReleaseLogEntry | CanaryRollout = canary_services.start_canary(
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
    seen_state: str | None,
) -> RequestReview:
    ApprovalState(request, actor).require_review()
    assert actor.user is not None  # noqa: S101 - require_review refuses system actors
    comment = (comment or "").strip()
    if not comment:
        raise ValidationError({"comment": "is required: say what you checked, or what is wrong."})
    with transaction.atomic():
        request = _lock_open(request)
        if ApprovalState(request, actor).has_reviewed:
            raise Conflict(f"you already reviewed request #{request.pk}.")
        # The lock keeps what it changes still while the review records what was seen.
        seen: dict[str, Any]
        if request.is_release:
            seen = {"active_version": _check_seen_active(request, seen_active_id)}
        else:
            moved = (
                f"what request #{request.pk} changes moved while you were reading: read it "
                "again before you decide."
            )
            seen = {"base_state": _check_seen_state(request, seen_state, moved)}
        review = RequestReview.objects.create(
            request=request, reviewer=actor.user, decision=decision, comment=comment, **seen
        )
        if decision == ReviewDecision.REJECT:
            _close(request, RequestStatus.REJECTED, actor)
        return review


def _check_seen_active(
    request: DeploymentRequest, seen_active_id: str | None
) -> AgentVersion | None:
    """Lock the release's pointer; the version active now, refused if not the one seen."""
    assert request.agent is not None  # noqa: S101 - a release request names its agent
    pointer = lock_pointer(request.agent, request.environment)
    active = pointer.stable_version if pointer else None
    if seen_active_id is not None and seen_active_id != (str(active.pk) if active else ""):
        now = active.label if active else "nothing"
        raise Conflict(
            f"the version active in {request.environment.slug} changed while you were "
            f"reading (now {now}): read the new diff before you decide."
        )
    return active


def _check_seen_state(request: DeploymentRequest, seen_state: str | None, moved: str) -> str:
    """Lock the subject's rows; its state now, refused (`moved`) if not the one seen."""
    state = subject_of(request).lock(request)
    if seen_state is not None and seen_state != state:
        raise Conflict(moved)
    return state


def _new_request(actor: Actor, reason: str, **fields: Any) -> DeploymentRequest:
    """A request (not saved yet) asked by `actor` for `reason`."""
    return DeploymentRequest(
        reason=reason, requested_by=actor.user, requested_by_label=actor.label, **fields
    )


def _lock_open(request: DeploymentRequest) -> DeploymentRequest:
    locked = (
        DeploymentRequest.objects.select_for_update(of=("self",))
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
        canary_services.parse_steps(plan, "canary_plan")
    else:
        canary_services.parse_percent(plan, "canary_plan")
