"""Canaries from the browser: start one; advance, promote, abort or re-size the running one.

Each flow has the three steps of deployments.admin.release_pages (Django's delete confirmation):
1. GET  …/canary/<environment>/<action>/        a form (a reason, and what the action needs);
2. POST …/canary/<environment>/<action>/        validates it and shows what will happen;
3. POST …/canary/<environment>/<action>/apply/  calls deployments.services.canaries, then
   redirects to the agent with a message.

Invariants:
- Only step 3 writes, only on POST, only through deployments.services.canaries, which checks the
  permission (deployments.manage_canary) again; every page checks it first (403).
- A refusal (ValidationError, Conflict, NotFound) is shown on the form, never a 500 and
  never a success message; Forbidden renders the 403 page.
- The confirmation carries the state it described (stable version, or the canary's id,
  step and share). If the analysis or a colleague changed it before the apply, nothing
  is applied and the confirmation is shown again for the new state. The step and share
  go to the service too (`expected_step`), which checks them under the lock of its
  write: a change that lands between this view's check and the lock is refused (409,
  the form page with the canary as it is now).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import Refused, apply_step, call_service, refusals_as_pages
from agentconfig.core.errors import Conflict
from deployments.admin.agent_pages import (
    Target,
    agent_page_url,
    load_target,
    render_agent_page,
    stale_confirmation,
)
from deployments.admin.canary_panels import at_last_step, rollout_steps, step_rows
from deployments.diff_context import build_diff_context
from deployments.forms import (
    CanaryActionForm,
    CanaryPercentForm,
    CanaryStartForm,
    version_choices,
)
from deployments.services import canaries as canary_services
from versions.models import AgentVersion

MANAGE_PERMISSION = canary_services.MANAGE_PERMISSION
ACTIONS = ("advance", "promote", "abort", "percent")
ACTION_TITLES = {
    "advance": "Advance the canary",
    "promote": "Promote the canary now",
    "abort": "Abort the canary",
    "percent": "Change the canary's percentage",
}
ACTION_VERBS = {
    "start": "start canaries",
    "advance": "advance canaries",
    "promote": "promote canaries",
    "abort": "abort canaries",
    "percent": "change canaries",
}


def _load_target(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    object_id: str,
    environment: str,
    action: str,
) -> Target:
    return load_target(
        model_admin, request, object_id, environment, MANAGE_PERMISSION, ACTION_VERBS[action]
    )


def _done(request: HttpRequest, target: Target, message: str) -> HttpResponse:
    messages.success(request, message)
    url = reverse("admin:agentconfig_agent_change", args=[target.agent.pk])
    return redirect(f"{url}#canary-{target.environment.slug}")


# --- start ---------------------------------------------------------------------------


def _start_form(request: HttpRequest, target: Target) -> CanaryStartForm | None:
    if target.active is None or target.rollout is not None:
        return None
    data = request.POST if request.method == "POST" else None
    return CanaryStartForm(
        data,
        agent=target.agent,
        stable=target.active,
        policy=canary_services.get_policy(target.environment),
    )


def _start_form_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    form: CanaryStartForm | None,
    status: int = 200,
) -> TemplateResponse:
    if form is None and request.method == "POST":
        status = 409  # nothing to start against, or one is already running
    return render_agent_page(
        request,
        model_admin,
        "canary_start",
        target,
        f"Start a canary of {target.agent.slug} in {target.environment.name}",
        status,
        form=form,
        has_versions=form is not None and version_choices(form).exists(),
    )


def _start_confirmation_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    form: CanaryStartForm,
) -> TemplateResponse:
    version: AgentVersion = form.cleaned_data["version"]
    plan = step_rows([(bp, form.bake_seconds) for bp in form.cleaned_data["plan"]])
    return render_agent_page(
        request,
        model_admin,
        "canary_start_confirmation",
        target,
        f"Start a canary of {target.agent.slug} {version.label} in {target.environment.name}?",
        form=form,
        version=version,
        # The comparison include calls the two sides "active" and "version".
        active=form.stable,
        plan=plan,
        **build_diff_context(form.stable, version),
        apply_url=agent_page_url(model_admin, "canary_start_apply", target),
    )


@refusals_as_pages
def canary_start_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Steps 1 and 2 of starting a canary: the form, then the plan and the comparison."""
    target = _load_target(model_admin, request, object_id, environment, "start")
    form = _start_form(request, target)
    if form is not None and form.is_bound and form.is_valid():
        return _start_confirmation_page(request, model_admin, target, form)
    return _start_form_page(request, model_admin, target, form)


@apply_step
def canary_start_apply_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Step 3: start the canary through deployments.services.canaries.start_canary."""
    target = _load_target(model_admin, request, object_id, environment, "start")
    form = _start_form(request, target)
    if form is None or not form.is_valid():
        return _start_form_page(request, model_admin, target, form)
    if stale_confirmation(
        request,
        target,
        form.cleaned_data["expected_active"],
        version="stable version",
        check="the comparison",
    ):
        return _start_confirmation_page(request, model_admin, target, form)
    rollout = call_service(
        form,
        canary_services.start_canary,
        agent=target.agent,
        environment=target.environment,
        actor=Actor.of(request.user),
        expected_active_id=form.cleaned_data["expected_active"],
        **form.service_arguments(),
    )
    if isinstance(rollout, Refused):
        return _start_form_page(request, model_admin, target, form, rollout.status)
    ramp = ", ".join(f"{bp / 100:g} %" for bp, _ in rollout.steps)
    return _done(
        request,
        target,
        f"Started a canary of {target.agent.slug} {rollout.canary_version.label} in "
        f"{target.environment.slug} at {rollout.percent:g} % (steps: {ramp}).",
    )


# --- advance, promote, abort, change percentage ---------------------------------------


def _action_form(request: HttpRequest, target: Target, action: str) -> CanaryActionForm | None:
    if target.rollout is None:
        return None
    data = request.POST if request.method == "POST" else None
    form_class = CanaryPercentForm if action == "percent" else CanaryActionForm
    return form_class(data, rollout=target.rollout)


def _action_form_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    action: str,
    form: CanaryActionForm | None,
    status: int = 200,
) -> TemplateResponse:
    if form is None:
        status = 404  # no canary runs here (any more)
    return render_agent_page(
        request,
        model_admin,
        "canary_action",
        target,
        f"{ACTION_TITLES[action]} of {target.agent.slug} in {target.environment.name}",
        status,
        action=action,
        form=form,
        steps=rollout_steps(target.rollout) if target.rollout else [],
        at_last_step=at_last_step(target.rollout),
        submit_url=agent_page_url(model_admin, f"canary_{action}", target),
    )


def _check_action(target: Target, action: str, form: CanaryActionForm) -> bool:
    """Refuse on the form, before the confirmation, what the service would refuse for the state."""
    rollout = target.rollout
    if action == "advance" and rollout is not None and at_last_step(rollout):
        form.add_error(
            None,
            f"the canary is at its last step ({rollout.percent:g} %); promote it or abort it.",
        )
        return False
    return True


def _action_confirmation_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    action: str,
    form: CanaryActionForm,
) -> TemplateResponse:
    rollout = form.rollout
    extra: dict[str, Any] = {}
    if action == "advance":
        extra["next_step"] = rollout_steps(rollout)[rollout.step_index + 1]
    elif action == "percent":
        extra["new_percent"] = form.cleaned_data["percent"] / 100
        extra["new_steps"] = step_rows(
            canary_services.steps_after_percent_change(rollout, form.cleaned_data["percent"]),
            rollout.step_index,
        )
    elif action == "promote":
        extra.update(
            active=rollout.stable_version,
            version=rollout.canary_version,
            **build_diff_context(rollout.stable_version, rollout.canary_version),
        )
    return render_agent_page(
        request,
        model_admin,
        "canary_action_confirmation",
        target,
        f"{ACTION_TITLES[action]} of {target.agent.slug} in {target.environment.name}?",
        action=action,
        form=form,
        steps=rollout_steps(rollout),
        canary_state=target.canary_state,
        apply_url=agent_page_url(model_admin, f"canary_{action}_apply", target),
        back_url=agent_page_url(model_admin, f"canary_{action}", target),
        **extra,
    )


@refusals_as_pages
def canary_action_view(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    object_id: str,
    environment: str,
    action: str,
) -> HttpResponse:
    """Steps 1 and 2 of advance / promote / abort / percent: the form, then the confirmation."""
    target = _load_target(model_admin, request, object_id, environment, action)
    form = _action_form(request, target, action)
    if (
        form is not None
        and form.is_bound
        and form.is_valid()
        and _check_action(target, action, form)
    ):
        return _action_confirmation_page(request, model_admin, target, action, form)
    return _action_form_page(request, model_admin, target, action, form)


def expected_step(canary_state: str) -> tuple[int, int] | None:
    """The (step index, basis points) of a confirmation's canary state "<id>:<step>:<bp>"."""
    parts = canary_state.split(":")
    if len(parts) != 3 or not all(part.isdigit() for part in parts[1:]):
        return None
    return int(parts[1]), int(parts[2])


def _apply_action(target: Target, action: str, form: CanaryActionForm, actor: Actor) -> str:
    """Call the service for `action`; the success message."""
    common = {
        "agent": target.agent,
        "environment": target.environment,
        "actor": actor,
        "reason": form.cleaned_data["reason"],
    }
    # The step the confirmation showed, checked again by the service under its lock: the
    # comparison in the view above ran before the lock, so it cannot settle a race.
    step = expected_step(form.cleaned_data["expected_canary"])
    if step is None:
        raise Conflict("the confirmation did not say which step it showed; review it again.")
    rollout = form.rollout
    name = f"{target.agent.slug} {rollout.canary_version.label} in {target.environment.slug}"
    if action == "advance":
        moved = canary_services.advance_canary(**common, expected_step=step)
        return (
            f"The canary of {name} advanced to {moved.percent:g} % "
            f"(step {moved.step_index + 1} of {len(moved.steps)})."
        )
    if action == "promote":
        entry = canary_services.promote_canary(**common, expected_step=step)
        was = entry.from_version.label if entry.from_version else "nothing"
        return f"Promoted {name}: it is the stable version now (was {was})."
    if action == "abort":
        # Aborting from any step ends in the same state: everyone on the stable version.
        entry = canary_services.abort_canary(**common)
        return f"Aborted the canary of {name}: everyone gets {entry.to_version.label} again."
    changed = canary_services.set_canary_percent(
        **common, percent=form.cleaned_data["percent"] / 100, expected_step=step
    )
    return f"The canary of {name} now runs at {changed.percent:g} %."


@apply_step
def canary_action_apply_view(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    object_id: str,
    environment: str,
    action: str,
) -> HttpResponse:
    """Step 3 of advance / promote / abort / percent: call deployments.services.canaries."""
    target = _load_target(model_admin, request, object_id, environment, action)
    form = _action_form(request, target, action)
    if form is None or not form.is_valid():
        return _action_form_page(request, model_admin, target, action, form)
    if not _check_action(target, action, form):
        return _action_form_page(request, model_admin, target, action, form, 409)
    if form.cleaned_data["expected_canary"] != target.canary_state:
        messages.warning(
            request,
            f"The canary of {target.agent.slug} in {target.environment.slug} changed while you "
            "were reviewing (the analysis or a colleague moved it). Check the page below again.",
        )
        return _action_confirmation_page(request, model_admin, target, action, form)
    message = call_service(form, _apply_action, target, action, form, Actor.of(request.user))
    if isinstance(message, Refused):
        # The page shows the canary as it is now (the refusal may be that it moved).
        return _action_form_page(
            request, model_admin, target.reloaded(), action, form, message.status
        )
    return _done(request, target, message)
