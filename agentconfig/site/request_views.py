"""Deployment requests in the browser: ask, review, override the gate, apply, withdraw; break glass.

Pages under the agent (AgentAdmin.get_urls):
- …/agent/<id>/request/<env>/            GET the form; POST shows the diff to confirm;
- …/agent/<id>/request/<env>/submit/     POST: deployments.services.requests.create_request;
- …/agent/<id>/breakglass/<env>/         GET the form; POST shows the diff, in red;
- …/agent/<id>/breakglass/<env>/apply/   POST: deploy_version(break_glass=…).
Pages of a request (DeploymentRequestAdmin):
- …/deploymentrequest/<id>/change/       the request: what is asked, the diff against the
  version active now, reviews (and whether each still counts), the evaluation gate, actions;
- …/deploymentrequest/<id>/review/, /override-gate/, /apply/, /withdraw/   POST only.

Invariants:
- Writes only on POST (a GET to an action URL is 405), only through deployments.services.requests,
  deployments.services.releases and evaluations.gate, which check every rule again.
- Each page checks the permission it needs first (a 403 page naming it). A rule the
  service refuses (your own request, too few valid approvals, a refusing gate) is shown
  on the request page with the service's words and its status; nothing is written.
- Reviews and applies carry the version that was active when the page was shown: if it
  moved since, the diff on the page is no longer the real one, so nothing is written and
  the page is shown again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    Refused,
    apply_service_error,
    call_service,
    page_context,
    refusals_as_pages,
)
from agentconfig.core.errors import Forbidden, ServiceError
from agentconfig.core.people import users_granted_by
from deployments.admin.agent_pages import (
    Target,
    agent_page_url,
    load_target,
    release_confirmation_page,
    release_form_page,
    render_agent_page,
    stale_confirmation,
)
from deployments.admin.release_pages import DEPLOY_PERMISSION
from deployments.approvals import BREAK_GLASS_PERMISSION
from deployments.diff_context import build_diff_context
from deployments.forms import version_choices
from deployments.models import (
    CanaryRollout,
    DeploymentRequest,
    ReleaseLogEntry,
    RequestKind,
    RequestReview,
    ReviewDecision,
)
from deployments.request_forms import (
    ApplyRequestForm,
    BreakGlassForm,
    DeploymentRequestForm,
    GateOverrideForm,
    ReviewForm,
)
from deployments.selectors import get_pointer
from deployments.services import requests as request_services
from deployments.services.releases import deploy_version
from deployments.services.requests import ApprovalState
from evaluations.gate import OVERRIDE_PERMISSION, GateResult, check_gate
from evaluations.selectors import build_run_comparison
from evaluations.services.gate_overrides import record_gate_override
from versions.models import AgentVersion

REQUEST_PERMISSION = request_services.REQUEST_PERMISSION
REVIEW_PERMISSION = request_services.REVIEW_PERMISSION
# The forms of the pages about one agent in one environment.
TargetForm = TypeVar("TargetForm", DeploymentRequestForm, BreakGlassForm)
_VERSION_TEXT = ("system_prompt", "guardrails")


def plan_steps(request: DeploymentRequest) -> list[str]:
    """A canary request's percentages as text ("1", "5", …); empty for a stable request."""
    if request.kind != RequestKind.CANARY:
        return []
    return [part.strip() for part in request.canary_plan.split(",") if part.strip()]


@dataclass(frozen=True)
class ReviewRow:
    """One review and where it stands: counts, stale, own, rejection, or closed (recorded)."""

    review: RequestReview
    standing: str
    note: str

    @property
    def approved(self) -> bool:
        return self.review.decision == ReviewDecision.APPROVE


def _review_rows(state: ApprovalState, active: AgentVersion | None = None) -> list[ReviewRow]:
    """Each review of `state.request` and why it counts or not (`active`: releases)."""
    request = state.request
    counting = set(state.approvers) if request.is_open else set()
    # Why an approval that does not count does not: the requester made its reviewer.
    uncounted = {
        r.reviewer_id
        for r in request.reviews.all()
        if request.is_open
        and r.decision == ReviewDecision.APPROVE
        and r.reviewer_id not in counting
    }
    granted = users_granted_by(
        granter_id=request.requested_by_id,
        user_ids=uncounted,
        since=request.created_at,
        permission=REVIEW_PERMISSION,
    )
    return [
        _review_row(request, review, counting, granted, active) for review in request.reviews.all()
    ]


def _review_row(
    request: DeploymentRequest,
    review: RequestReview,
    counting: set[object],
    granted: set[object],
    active: AgentVersion | None,
) -> ReviewRow:
    if review.decision == ReviewDecision.REJECT:
        return ReviewRow(review, "rejection", "a rejection closes the request")
    if request.is_release:
        given = "given while {} was active".format(
            review.active_version.label if review.active_version else "nothing"
        )
        recorded = counts = given
        stale = (
            f"{given} in {request.environment.slug}; "
            f"{active.label if active else 'nothing'} is active now, so it approved a diff "
            "that is no longer the real one"
        )
    else:
        recorded = "given on the state it was asked for"
        counts = "given on the state that is live now"
        stale = "given before what it changes moved, so it approved another change"
    if not request.is_open:
        return ReviewRow(review, "recorded", recorded)
    if review.reviewer_id in counting:
        return ReviewRow(review, "counts", counts)
    if review.reviewer_id == request.requested_by_id:
        return ReviewRow(review, "own", "the requester's own approval never counts")
    if review.reviewer_id in granted:
        return ReviewRow(
            review,
            "own",
            f"does not count: granted by the requester — {request.requested_by_label} "
            "created this reviewer or gave them review rights after opening the "
            "request, so it is the requester's own approval",
        )
    return ReviewRow(review, "stale", stale)


def _load_request(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str
) -> DeploymentRequest:
    reviews = RequestReview.objects.select_related("reviewer", "active_version").defer(
        *(f"active_version__{column}" for column in _VERSION_TEXT)
    )
    queryset = (
        model_admin.get_queryset(http_request)
        .select_related("base_version", "requested_by")
        # The list prefetches plain reviews; the page wants them with their reviewers.
        .prefetch_related(None)
        .prefetch_related(Prefetch("reviews", queryset=reviews.order_by("created_at", "id")))
    )
    found = queryset.filter(pk=object_id).first() if str(object_id).isdigit() else None
    if found is None:
        raise Http404(f"There is no deployment request with id {object_id!r}.")
    if not model_admin.has_view_permission(http_request, found):
        raise Forbidden(
            f"{http_request.user.get_username()} may not view deployment requests: this needs "
            "the permission 'deployments.view_deploymentrequest'. Ask an administrator."
        )
    return found


def render_request_page(
    model_admin: admin.ModelAdmin,
    http_request: HttpRequest,
    request: DeploymentRequest,
    *,
    review_form: ReviewForm | None = None,
    override_form: GateOverrideForm | None = None,
    error: str = "",
    status: int = 200,
) -> TemplateResponse:
    """The request page: what is asked, the diff, reviews, the gate and the actions."""
    if not request.is_release:
        return _render_change_page(
            model_admin, http_request, request, review_form=review_form, error=error, status=status
        )
    # A release request names its agent and version (the release_requests_name_a_version check).
    assert request.agent is not None and request.version is not None  # noqa: S101
    pointer = get_pointer(request.agent, request.environment)
    active = pointer.stable_version if pointer else None
    running: CanaryRollout | None = pointer.canary if pointer else None
    is_open = request.is_open
    # An open request is judged against what is live now; a closed one shows what it asked.
    diff_base = active if is_open else request.base_version
    state = ApprovalState(request, Actor.of(http_request.user), active.pk if active else None)
    gate: GateResult | None = None
    comparison = None
    if is_open:
        gate = check_gate(
            agent=request.agent, environment=request.environment, version=request.version
        )
        if gate.candidate_run is not None and gate.baseline_run is not None:
            comparison = build_run_comparison(gate.candidate_run, gate.baseline_run)
    release = None
    if not is_open:
        release = (
            ReleaseLogEntry.objects.filter(request=request)
            .only("id", "created_at", "kind", "actor_label")
            .first()
        )
    return _request_page(
        model_admin,
        http_request,
        state,
        "detail",
        f"Request #{request.pk}: {request.agent.slug} {request.version.label} to "
        f"{request.environment.name}",
        review_form=review_form,
        seen=str(active.pk) if active else "",
        error=error,
        status=status,
        reviews=_review_rows(state, active),
        active=active,
        running_canary=running,
        plan=plan_steps(request),
        gate=gate,
        comparison=comparison,
        release=release,
        can_override=bool(
            is_open
            and gate is not None
            and not gate.allowed
            and http_request.user.has_perm(OVERRIDE_PERMISSION)
        ),
        ready=is_open and state.enough and (gate is None or gate.allowed) and running is None,
        override_form=override_form or GateOverrideForm(),
        agent_url=reverse("admin:agentconfig_agent_change", args=[request.agent.pk]),
        **build_diff_context(diff_base, request.version),
    )


def _subject_state(request: DeploymentRequest) -> str:
    """The fingerprint of what a non-release request changes, as it is now."""
    with transaction.atomic():
        return request_services.subject_of(request).lock(request)


def _render_change_page(
    model_admin: admin.ModelAdmin,
    http_request: HttpRequest,
    request: DeploymentRequest,
    *,
    review_form: ReviewForm | None,
    error: str,
    status: int,
) -> TemplateResponse:
    """The page of a request that is not a release: what changes for runtimes, in words."""
    is_open = request.is_open
    state_now = _subject_state(request) if is_open else ""
    state = ApprovalState(request, Actor.of(http_request.user), state_now)
    subject = request_services.subject_of(request)
    return _request_page(
        model_admin,
        http_request,
        state,
        "change_detail",
        f"Request #{request.pk}: {request.proposal.get('summary', request.get_kind_display())}",
        review_form=review_form,
        seen=state_now,
        error=error,
        status=status,
        reviews=_review_rows(state),
        what=subject.describe(request) if is_open else [request.proposal.get("summary", "")],
        ready=is_open and state.enough,
    )


def _request_page(
    model_admin: admin.ModelAdmin,
    http_request: HttpRequest,
    state: ApprovalState,
    template: str,
    title: str,
    *,
    review_form: ReviewForm | None,
    seen: str,
    error: str,
    status: int,
    **context: object,
) -> TemplateResponse:
    """A request's page: `state` says what this user may do; `seen` is what the page shows
    (the active version's id, or the subject's state), carried by its review and apply forms."""
    request = state.request
    return TemplateResponse(
        http_request,
        f"admin/deployments/deploymentrequest/{template}.html",
        page_context(
            http_request,
            model_admin,
            title,
            dr=request,
            agent=request.agent,
            environment=request.environment,
            state=state,
            review_form=review_form or ReviewForm(initial={"expected_active": seen}),
            seen_state=seen,
            action_error=error,
            **context,
        ),
        status=status,
    )


@refusals_as_pages
def request_detail_view(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str
) -> HttpResponse:
    """The request page (the admin's change view of a DeploymentRequest)."""
    request = _load_request(model_admin, http_request, object_id)
    return render_request_page(model_admin, http_request, request)


def _detail_url(request: DeploymentRequest) -> str:
    return reverse("admin:deployments_deploymentrequest_change", args=[request.pk])


def _active_pk(request: DeploymentRequest) -> str:
    """What the page showed and the person confirms: the active version, or the state."""
    if not request.is_release:
        return _subject_state(request)
    # A release request names its agent (the release_requests_name_a_version check).
    assert request.agent is not None  # noqa: S101
    pointer = get_pointer(request.agent, request.environment)
    return str(pointer.stable_version_id) if pointer else ""


def _moved(http_request: HttpRequest, request: DeploymentRequest, expected: str) -> bool:
    """Warn and return True if the active version moved since the page was shown."""
    if expected == _active_pk(request):
        return False
    if not request.is_release:
        messages.warning(
            http_request,
            "What this request changes moved while you were reading: the page below shows it "
            "as it is now. Nothing was recorded; read it again before you decide.",
        )
        return True
    # A release request names its agent (the release_requests_name_a_version check).
    assert request.agent is not None  # noqa: S101
    messages.warning(
        http_request,
        f"The active version of {request.agent.slug} in {request.environment.slug} changed "
        "while you were reading: the diff below is the new one. Nothing was recorded; read "
        "it again before you decide.",
    )
    return True


def _record_or_refuse(
    form: forms.Form, page: Callable[..., TemplateResponse], record: Callable[[], object]
) -> TemplateResponse | None:
    """`record()`; None once it is recorded, or `page` with the refusal: a ValidationError
    on `form`, any other refusal in the service's words with its status (nothing written)."""
    try:
        record()
    except ValidationError as exc:
        apply_service_error(form, exc)
        return page()
    except ServiceError as exc:
        return page(error=f"Not recorded: {exc.message}", status=exc.http_status)
    return None


@refusals_as_pages
def review_view(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str
) -> HttpResponse:
    """Approve or reject through deployments.services.requests, with the reviewer's comment."""
    if http_request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    request = _load_request(model_admin, http_request, object_id)
    actor = Actor.of(http_request.user)
    form = ReviewForm(http_request.POST)
    if not form.is_valid():
        return render_request_page(model_admin, http_request, request, review_form=form)
    if _moved(http_request, request, form.cleaned_data["expected_active"]):
        # Keep the comment; the form now carries the version the new diff is against.
        fresh = ReviewForm(
            initial={
                "comment": form.cleaned_data["comment"],
                "expected_active": _active_pk(request),
            }
        )
        return render_request_page(model_admin, http_request, request, review_form=fresh)
    approve = form.cleaned_data["decision"] == ReviewDecision.APPROVE
    service = request_services.approve_request if approve else request_services.reject_request
    seen = form.cleaned_data["expected_active"]
    refused = _record_or_refuse(
        form,
        partial(render_request_page, model_admin, http_request, request, review_form=form),
        partial(
            service,
            request=request,
            actor=actor,
            comment=form.cleaned_data["comment"],
            **({"seen_active_id": seen} if request.is_release else {"seen_state": seen}),
        ),
    )
    if refused is not None:
        # Your own request, reviewed twice, closed meanwhile: the service's words, no write.
        return refused
    if approve:
        messages.success(http_request, f"You approved request #{request.pk}.")
    else:
        messages.success(
            http_request, f"You rejected request #{request.pk}; it is closed and cannot be applied."
        )
    return redirect(_detail_url(request))


@refusals_as_pages
def override_gate_view(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str
) -> HttpResponse:
    """Record an evaluation-gate override for the request's version and environment."""
    if http_request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    request = _load_request(model_admin, http_request, object_id)
    actor = Actor.of(http_request.user)
    actor.require(OVERRIDE_PERMISSION, "override the evaluation gate")
    form = GateOverrideForm(http_request.POST)
    if not form.is_valid():
        return render_request_page(model_admin, http_request, request, override_form=form)
    # The gate, and so its override, only concerns release requests.
    assert request.agent is not None and request.version is not None  # noqa: S101
    refused = _record_or_refuse(
        form,
        partial(render_request_page, model_admin, http_request, request, override_form=form),
        partial(
            record_gate_override,
            agent=request.agent,
            environment=request.environment,
            version=request.version,
            actor=actor,
            reason=form.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(
        http_request,
        f"Recorded your override: {request.version.label} may go into "
        f"{request.environment.slug} despite the evaluation. It is kept in the audit.",
    )
    return redirect(_detail_url(request))


@refusals_as_pages
def apply_view(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str
) -> HttpResponse:
    """Release the approved request through deployments.services.requests.apply_request."""
    if http_request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    request = _load_request(model_admin, http_request, object_id)
    actor = Actor.of(http_request.user)
    ApprovalState(request, actor).require_apply()
    form = ApplyRequestForm(http_request.POST)
    form.is_valid()  # one optional hidden field: always valid
    expected = form.cleaned_data.get("expected_active", "")
    if _moved(http_request, request, expected):
        return render_request_page(model_admin, http_request, request)
    try:
        result = request_services.apply_request(
            request=request,
            actor=actor,
            **(
                {"expected_active_id": expected}
                if request.is_release
                else {"expected_state": expected}
            ),
        )
    except ServiceError as exc:
        return render_request_page(
            model_admin,
            http_request,
            request,
            error=f"Not applied: {exc.message}",
            status=exc.http_status,
        )
    if not request.is_release:
        messages.success(
            http_request,
            f"Applied request #{request.pk}: {request.proposal.get('summary', '')}. Runtimes get "
            "it within a second.",
        )
        return redirect(_detail_url(request))
    # A release request names its agent and version (the release_requests_name_a_version check).
    assert request.agent is not None and request.version is not None  # noqa: S101
    name = f"{request.agent.slug} {request.version.label}"
    agent_url = reverse("admin:agentconfig_agent_change", args=[request.agent.pk])
    if isinstance(result, CanaryRollout):
        messages.success(
            http_request,
            f"Applied request #{request.pk}: a canary of {name} runs in "
            f"{request.environment.slug} at {result.percent:g} %.",
        )
        return redirect(f"{agent_url}#canary-{request.environment.slug}")
    was = result.from_version.label if result.from_version else "nothing"
    messages.success(
        http_request,
        f"Applied request #{request.pk}: {request.environment.slug} now serves {name} (was {was}).",
    )
    return redirect(agent_url)


@refusals_as_pages
def withdraw_view(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str
) -> HttpResponse:
    """Withdraw an open request (its requester) through deployments.services.requests."""
    if http_request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    request = _load_request(model_admin, http_request, object_id)
    try:
        request_services.withdraw_request(request=request, actor=Actor.of(http_request.user))
    except Forbidden:
        raise
    except ServiceError as exc:
        return render_request_page(
            model_admin,
            http_request,
            request,
            error=f"Not withdrawn: {exc.message}",
            status=exc.http_status,
        )
    messages.success(http_request, f"You withdrew request #{request.pk}.")
    return redirect(_detail_url(request))


# --- asking for a deployment ----------------------------------------------------------------


def _target_form(
    form_class: type[TargetForm], http_request: HttpRequest, target: Target
) -> TargetForm:
    """The page's form for `target`, bound to the POST data if there is any."""
    data = http_request.POST if http_request.method == "POST" else None
    return form_class(data, agent=target.agent, active=target.active)


def _request_form_page(
    http_request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    form: DeploymentRequestForm,
    status: int = 200,
) -> TemplateResponse:
    return render_agent_page(
        http_request,
        model_admin,
        "request",
        target,
        f"Request a deployment of {target.agent.slug} to {target.environment.name}",
        status,
        form=form,
        has_versions=version_choices(form).exists(),
    )


def _request_confirmation_page(
    http_request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    form: DeploymentRequestForm,
) -> TemplateResponse:
    version: AgentVersion = form.cleaned_data["version"]
    plan = form.cleaned_data.get("plan") or []
    return render_agent_page(
        http_request,
        model_admin,
        "request_confirmation",
        target,
        f"Ask to release {target.agent.slug} {version.label} to {target.environment.name}?",
        form=form,
        version=version,
        plan=[f"{bp / 100:g}" for bp in plan],
        submit_url=agent_page_url(model_admin, "request_submit", target),
        **build_diff_context(target.active, version),
    )


@refusals_as_pages
def request_view(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Ask for a deployment: the form, then the diff to confirm."""
    target = load_target(
        model_admin, http_request, object_id, environment, REQUEST_PERMISSION, "request deployments"
    )
    form = _target_form(DeploymentRequestForm, http_request, target)
    if form.is_bound and form.is_valid():
        return _request_confirmation_page(http_request, model_admin, target, form)
    return _request_form_page(http_request, model_admin, target, form)


@refusals_as_pages
def request_submit_view(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Open the request through deployments.services.requests.create_request."""
    if http_request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    target = load_target(
        model_admin, http_request, object_id, environment, REQUEST_PERMISSION, "request deployments"
    )
    form = _target_form(DeploymentRequestForm, http_request, target)
    if not form.is_valid():
        return _request_form_page(http_request, model_admin, target, form)
    created = call_service(
        form,
        request_services.create_request,
        agent=target.agent,
        environment=target.environment,
        version=form.cleaned_data["version"],
        actor=Actor.of(http_request.user),
        reason=form.cleaned_data["reason"],
        kind=form.cleaned_data["kind"],
        canary_plan=form.cleaned_data["canary_plan"],
    )
    if isinstance(created, Refused):
        return _request_form_page(http_request, model_admin, target, form, created.status)
    needed = target.environment.required_approvals
    next_step = (
        f"It needs {needed} approval{'s' if needed != 1 else ''} by a reviewer other than you; "
        "send them this page."
        if target.environment.requires_approval
        else f"{target.environment.slug} needs no approval: a deployer can apply it now."
    )
    messages.success(http_request, f"Opened request #{created.pk}. {next_step}")
    return redirect(_detail_url(created))


# --- break glass ----------------------------------------------------------------------------


def _load_break_glass_target(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str, environment: str
) -> Target:
    target = load_target(
        model_admin, http_request, object_id, environment, DEPLOY_PERMISSION, "deploy versions"
    )
    Actor.of(http_request.user).require(BREAK_GLASS_PERMISSION, "break the glass")
    return target


def _break_glass_form_page(
    http_request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    form: BreakGlassForm,
    status: int = 200,
) -> TemplateResponse:
    title = f"Break glass: deploy {target.agent.slug} to {target.environment.name} without review"
    return release_form_page(http_request, model_admin, "break_glass", target, title, form, status)


def _break_glass_confirmation_page(
    http_request: HttpRequest, model_admin: admin.ModelAdmin, target: Target, form: BreakGlassForm
) -> TemplateResponse:
    label = form.cleaned_data["version"].label
    title = f"Break glass: deploy {target.agent.slug} {label} to {target.environment.name}?"
    return release_confirmation_page(
        http_request,
        model_admin,
        "break_glass_confirmation",
        target,
        title,
        form,
        "break_glass_apply",
    )


@refusals_as_pages
def break_glass_view(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """An emergency deploy without review: the form, then the diff to confirm."""
    target = _load_break_glass_target(model_admin, http_request, object_id, environment)
    form = _target_form(BreakGlassForm, http_request, target)
    if form.is_bound and form.is_valid():
        return _break_glass_confirmation_page(http_request, model_admin, target, form)
    return _break_glass_form_page(http_request, model_admin, target, form)


@refusals_as_pages
def break_glass_apply_view(
    model_admin: admin.ModelAdmin, http_request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Deploy through deployments.services.releases.deploy_version with break_glass (recorded)."""
    if http_request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    target = _load_break_glass_target(model_admin, http_request, object_id, environment)
    form = _target_form(BreakGlassForm, http_request, target)
    if not form.is_valid():
        return _break_glass_form_page(http_request, model_admin, target, form)
    if stale_confirmation(http_request, target, form.cleaned_data["expected_active"]):
        return _break_glass_confirmation_page(http_request, model_admin, target, form)
    entry = call_service(
        form,
        deploy_version,
        agent=target.agent,
        environment=target.environment,
        version=form.cleaned_data["version"],
        actor=Actor.of(http_request.user),
        reason=form.cleaned_data["reason"],
        break_glass=form.cleaned_data["emergency"],
        expected_active_id=form.cleaned_data["expected_active"],
    )
    if isinstance(entry, Refused):
        return _break_glass_form_page(http_request, model_admin, target, form, entry.status)
    was = entry.from_version.label if entry.from_version else "nothing"
    messages.warning(
        http_request,
        f"Break glass: deployed {target.agent.slug} {entry.to_version.label} to "
        f"{target.environment.slug} without review (was {was}). The audit shows it in red.",
    )
    return redirect("admin:agentconfig_agent_change", target.agent.pk)
