"""The pages under one flag: edit rules, turn on, kill switch, evaluate for a user.

Each state change is POST-only behind a page that says what will change, like Django's
delete confirmation: GET shows the page, POST applies it through flags.services.flags (which
checks the permission again) and redirects to the flag with a message. Any other method
is refused with 405 and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    AdminPageView,
    get_object_for_page,
    page_context,
    refusals_as_pages,
    show_refusal,
)
from agentconfig.core.errors import Conflict, NotFound, ServiceError
from deployments.models import Environment
from deployments.selectors import get_environment
from flags import evaluation
from flags import rules as schema
from flags.approvals import KILL_SWITCH_PERMISSION, ApprovalRequired
from flags.forms import EvaluateForm, FlagRulesForm, ReasonForm, pretty_json
from flags.models import Flag, FlagEnvironment
from flags.selectors import get_flag_state
from flags.services.flags import (
    CHANGE_PERMISSION,
    kill_flag,
    set_flag_enabled,
    set_flag_rules,
)
from flags.services.requests import propose_flag_change

ALLOWED = ("GET", "HEAD", "POST")


@dataclass(frozen=True)
class Target:
    """The flag and environment a page acts on, with the flag's state there (None: no row)."""

    flag: Flag
    environment: Environment
    state: FlagEnvironment | None

    @property
    def enabled(self) -> bool:
        return bool(self.state and self.state.enabled)

    @property
    def off_variant(self) -> str:
        return self.state.off_variant if self.state else self.flag.initial_variants[1]

    @property
    def off_value(self) -> str:
        return json.dumps(self.flag.variant_value(self.off_variant), ensure_ascii=False)


def get_flag_for_page(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str) -> Flag:
    """The flag a page is about (get_object_for_page)."""
    flag: Flag = get_object_for_page(model_admin, request, object_id)
    return flag


TargetPage = Callable[[admin.ModelAdmin, HttpRequest, Target], HttpResponse]


def target_page(permission: str, action: str) -> Callable[[TargetPage], AdminPageView]:
    """A page that changes a flag in one environment (URL parts object_id, environment):
    GET, HEAD or POST only; 404 for an unknown flag or environment; Forbidden (the 403
    page) unless the user may view flags and holds `permission`."""

    def decorate(view: TargetPage) -> AdminPageView:
        @refusals_as_pages
        @wraps(view)
        def page(
            model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
        ) -> HttpResponse:
            if request.method not in ALLOWED:
                return HttpResponseNotAllowed(ALLOWED)
            flag = get_flag_for_page(model_admin, request, object_id)
            Actor.of(request.user).require(permission, action)
            try:
                env = get_environment(environment)
            except NotFound as exc:
                raise Http404(exc.message) from None
            state = FlagEnvironment.objects.filter(flag=flag, environment=env).first()
            return view(model_admin, request, Target(flag, env, state))

        return page

    return decorate


def _flag_url(model_admin: admin.ModelAdmin, flag: Flag) -> str:
    return reverse(f"{model_admin.admin_site.name}:flags_flag_change", args=[flag.pk])


def _render(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    template: str,
    title: str,
    target: Target,
    **extra: Any,
) -> TemplateResponse:
    context = page_context(
        request,
        model_admin,
        title,
        flag=target.flag,
        environment=target.environment,
        state=target.state,
        target=target,
        **extra,
    )
    return TemplateResponse(request, f"admin/flags/flag/{template}.html", context)


def propose_instead(request: HttpRequest, refusal: ApprovalRequired, reason: str) -> HttpResponse:
    """Where a change needs approval: open its change request with the form's reason and
    go to it. Without a reason, a ValidationError on "reason" says why one is needed."""
    environment = refusal.environment
    if not reason:
        raise ValidationError(
            {
                "reason": f"{environment.slug} needs an approved change request for this: say "
                "why, and saving opens the request for a reviewer."
            }
        )
    change_request = propose_flag_change(
        required=refusal, actor=Actor.of(request.user), reason=reason
    )
    approvals = environment.required_approvals
    messages.success(
        request,
        f"{environment.slug} needs {approvals} approval{'s' if approvals != 1 else ''}: "
        f"change request #{change_request.pk} is open. Runtimes keep their current answers "
        "until it is approved and applied.",
    )
    return HttpResponseRedirect(
        reverse("admin:deployments_deploymentrequest_change", args=[change_request.pk])
    )


def _apply(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    form: Any,
    target: Target,
    success: str,
    service: Callable[..., object],
    *,
    warn_on_conflict: bool,
    **fields: Any,
) -> HttpResponse | None:
    """Apply a page's change, `service(flag, environment, actor, the form's reason, **fields)`:
    the flag page with `success`, or the change request opened with the form's reason where
    the environment needs approval (propose_instead).

    A refusal is shown on `form` (None: show the page again). With `warn_on_conflict`, a
    Conflict (the flag is already in that state) is a warning on the flag page instead.
    """
    try:
        service(
            flag=target.flag,
            environment=target.environment,
            actor=Actor.of(request.user),
            reason=form.cleaned_data["reason"],
            **fields,
        )
    except ApprovalRequired as exc:
        try:
            return propose_instead(request, exc, form.cleaned_data["reason"])
        except (ValidationError, ServiceError) as refusal:
            show_refusal(form, refusal)
            return None
    except Conflict as exc:
        if not warn_on_conflict:
            show_refusal(form, exc)
            return None
        messages.warning(request, exc.message)
    except ValidationError as exc:
        show_refusal(form, exc)
        return None
    else:
        messages.success(request, success)
    return HttpResponseRedirect(_flag_url(model_admin, target.flag))


# --- rules ------------------------------------------------------------------------------


@target_page(CHANGE_PERMISSION, "change flag rules")
def rules_view(model_admin: admin.ModelAdmin, request: HttpRequest, target: Target) -> HttpResponse:
    """Edit a flag's rules and default/off variants in one environment."""
    flag, state = target.flag, target.state
    initial = {
        "default_variant": state.default_variant if state else flag.initial_variants[0],
        "off_variant": target.off_variant,
        "rules": pretty_json(state.rules if state else []),
        "revision": state.revision if state else 0,
    }
    form = FlagRulesForm(
        request.POST if request.method == "POST" else None, flag=flag, initial=initial
    )
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        applied = _apply(
            request,
            model_admin,
            form,
            target,
            f"Saved the rules of {flag.key} in {target.environment.slug}; runtimes use them "
            "from their next request.",
            set_flag_rules,
            warn_on_conflict=False,
            rules=data["rules"],
            default_variant=data["default_variant"],
            off_variant=data["off_variant"],
            expected_revision=data["revision"],
        )
        if applied is not None:
            return applied
    return _render(
        request,
        model_admin,
        "rules",
        f"Rules of {flag.key} in {target.environment.name}",
        target,
        form=form,
        variants=[(v["name"], json.dumps(v["value"], ensure_ascii=False)) for v in flag.variants],
        operators=schema.OPERATORS,
    )


# --- on / off ---------------------------------------------------------------------------


def _turn(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    *,
    reason_required: bool,
    success: str,
    service: Callable[..., object],
    fields: dict[str, Any],
    page: str,
    title: str,
    **extra: Any,
) -> HttpResponse:
    """Turning a flag on or off: confirm with a reason on GET, `service` on POST (through
    _apply; the flag already in that state is a warning)."""
    form = ReasonForm(request.POST if request.method == "POST" else None, required=reason_required)
    if form.is_bound and form.is_valid():
        applied = _apply(
            request, model_admin, form, target, success, service, warn_on_conflict=True, **fields
        )
        if applied is not None:
            return applied
    return _render(request, model_admin, page, title, target, form=form, **extra)


@target_page(CHANGE_PERMISSION, "turn flags on")
def enable_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, target: Target
) -> HttpResponse:
    """Confirm on GET, turn the flag on in the environment on POST."""
    return _turn(
        request,
        model_admin,
        target,
        reason_required=False,
        success=f"Turned {target.flag.key} on in {target.environment.slug}.",
        service=set_flag_enabled,
        fields={"enabled": True},
        page="enable_confirmation",
        title=f"Turn {target.flag.key} on in {target.environment.name}?",
        rule_count=len(target.state.rules) if target.state else 0,
    )


@target_page(KILL_SWITCH_PERMISSION, "use the kill switch")
def kill_view(model_admin: admin.ModelAdmin, request: HttpRequest, target: Target) -> HttpResponse:
    """The kill switch: confirm with a reason on GET, turn the flag off on POST."""
    return _turn(
        request,
        model_admin,
        target,
        reason_required=True,
        success=f"Kill switch: {target.flag.key} is off in {target.environment.slug}; everyone "
        f"gets {target.off_variant} from their next request.",
        service=kill_flag,
        fields={},
        page="kill_confirmation",
        title=f"Kill switch: turn {target.flag.key} off in {target.environment.name}?",
    )


# --- evaluate for a user ----------------------------------------------------------------


@refusals_as_pages
def evaluate_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    """What a user gets from the flag in an environment, and which rule decided it."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    flag = get_flag_for_page(model_admin, request, object_id)
    form = EvaluateForm(request.GET if "environment" in request.GET else None)
    resolution = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        state = get_flag_state(flag, data["environment"].pk)
        resolution = evaluation.evaluate(state, data["targeting_key"] or None, data["context"])
    context = page_context(
        request,
        model_admin,
        f"Evaluate {flag.key} for a user",
        flag=flag,
        form=form,
        resolution=resolution,
        value_text=(
            json.dumps(resolution.value, ensure_ascii=False)
            if resolution and not resolution.is_error
            else ""
        ),
    )
    return TemplateResponse(request, "admin/flags/flag/evaluate.html", context)
