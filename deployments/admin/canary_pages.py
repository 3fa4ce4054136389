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

from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    apply_service_error,
    get_agent_for_page,
    page_context,
    refusals_as_pages,
)
from agentconfig.core.errors import Conflict, Forbidden, NotFound, ServiceError
from agentconfig.models import Agent
from deployments.admin.canary_panels import at_last_step, rollout_steps, step_rows
from deployments.diff_context import build_diff_context
from deployments.forms import (
    CanaryActionForm,
    CanaryPercentForm,
    CanaryStartForm,
    version_choices,
)
from deployments.models import (
    CanaryRollout,
    Environment,
    Pointer,
)
from deployments.selectors import (
    get_environment,
    get_pointer,
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


@dataclass(frozen=True)
class CanaryTarget:
    """The (agent, environment) a canary page acts on, its pointer and running canary_services."""

    agent: Agent
    environment: Environment
    pointer: Pointer | None

    @property
    def stable(self) -> AgentVersion | None:
        return self.pointer.stable_version if self.pointer else None

    @property
    def rollout(self) -> CanaryRollout | None:
        return self.pointer.canary if self.pointer else None

    @property
    def stable_pk(self) -> str:
        return str(self.stable.pk) if self.stable else ""

    @property
    def canary_state(self) -> str:
        """What the confirmation described: the rollout, its step and its share."""
        rollout = self.rollout
        if rollout is None:
            return ""
        return f"{rollout.pk}:{rollout.step_index}:{rollout.basis_points}"


def _load_target(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    object_id: str,
    environment: str,
    action: str,
) -> CanaryTarget:
    agent = get_agent_for_page(model_admin, request, object_id)
    Actor.of(request.user).require(MANAGE_PERMISSION, ACTION_VERBS[action])
    try:
        env = get_environment(environment)
    except NotFound as exc:
        raise Http404(exc.message) from None
    return CanaryTarget(agent, env, get_pointer(agent, env))


def _url(model_admin: admin.ModelAdmin, name: str, target: CanaryTarget) -> str:
    return reverse(
        f"{model_admin.admin_site.name}:agentconfig_agent_{name}",
        args=[target.agent.pk, target.environment.slug],
    )


def _render(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    template: str,
    target: CanaryTarget,
    title: str,
    status: int = 200,
    **extra: Any,
) -> TemplateResponse:
    context = page_context(
        request,
        model_admin,
        title,
        agent=target.agent,
        environment=target.environment,
        stable=target.stable,
        rollout=target.rollout,
        **extra,
    )
    return TemplateResponse(
        request, f"admin/agentconfig/agent/{template}.html", context, status=status
    )


def _done(request: HttpRequest, target: CanaryTarget, message: str) -> HttpResponse:
    messages.success(request, message)
    url = reverse("admin:agentconfig_agent_change", args=[target.agent.pk])
    return redirect(f"{url}#canary-{target.environment.slug}")


# --- start ---------------------------------------------------------------------------


def _start_form(request: HttpRequest, target: CanaryTarget) -> CanaryStartForm | None:
    if target.stable is None or target.rollout is not None:
        return None
    data = request.POST if request.method == "POST" else None
    return CanaryStartForm(
        data,
        agent=target.agent,
        stable=target.stable,
        policy=canary_services.get_policy(target.environment),
    )


def _start_form_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: CanaryTarget,
    form: CanaryStartForm | None,
    status: int = 200,
) -> TemplateResponse:
    if form is None and request.method == "POST":
        status = 409  # nothing to start against, or one is already running
    return _render(
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
    target: CanaryTarget,
    form: CanaryStartForm,
) -> TemplateResponse:
    version: AgentVersion = form.cleaned_data["version"]
    plan = step_rows([(bp, form.bake_seconds) for bp in form.cleaned_data["plan"]])
    return _render(
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
        apply_url=_url(model_admin, "canary_start_apply", target),
    )


def _stale_start(request: HttpRequest, target: CanaryTarget, expected_stable: str) -> bool:
    """Warn and return True if the stable version moved since the confirmation page."""
    if expected_stable == target.stable_pk:
        return False
    now = target.stable.label if target.stable else "nothing"
    messages.warning(
        request,
        f"The stable version of {target.agent.slug} in {target.environment.slug} changed to "
        f"{now} while you were reviewing. Check the comparison below again.",
    )
    return True


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


@refusals_as_pages
def canary_start_apply_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Step 3: start the canary through deployments.services.canaries.start_canary."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    target = _load_target(model_admin, request, object_id, environment, "start")
    form = _start_form(request, target)
    if form is None or not form.is_valid():
        return _start_form_page(request, model_admin, target, form)
    if _stale_start(request, target, form.cleaned_data["expected_active"]):
        return _start_confirmation_page(request, model_admin, target, form)
    try:
        rollout = canary_services.start_canary(
            agent=target.agent,
            environment=target.environment,
            actor=Actor.of(request.user),
            expected_active_id=form.cleaned_data["expected_active"],
            **form.service_arguments(),
        )
    except ValidationError as exc:
        apply_service_error(form, exc)
        return _start_form_page(request, model_admin, target, form)
    except Forbidden:
        raise
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return _start_form_page(request, model_admin, target, form, exc.http_status)
    ramp = ", ".join(f"{bp / 100:g} %" for bp, _ in rollout.steps)
    return _done(
        request,
        target,
        f"Started a canary of {target.agent.slug} {rollout.canary_version.label} in "
        f"{target.environment.slug} at {rollout.percent:g} % (steps: {ramp}).",
    )


# --- advance, promote, abort, change percentage ---------------------------------------


def _action_form(
    request: HttpRequest, target: CanaryTarget, action: str
) -> CanaryActionForm | None:
    if target.rollout is None:
        return None
    data = request.POST if request.method == "POST" else None
    form_class = CanaryPercentForm if action == "percent" else CanaryActionForm
    return form_class(data, rollout=target.rollout)


def _action_form_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: CanaryTarget,
    action: str,
    form: CanaryActionForm | None,
    status: int = 200,
) -> TemplateResponse:
    if form is None:
        status = 404  # no canary runs here (any more)
    return _render(
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
        submit_url=_url(model_admin, f"canary_{action}", target),
    )


def _check_action(target: CanaryTarget, action: str, form: CanaryActionForm) -> bool:
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
    target: CanaryTarget,
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
    return _render(
        request,
        model_admin,
        "canary_action_confirmation",
        target,
        f"{ACTION_TITLES[action]} of {target.agent.slug} in {target.environment.name}?",
        action=action,
        form=form,
        steps=rollout_steps(rollout),
        canary_state=target.canary_state,
        apply_url=_url(model_admin, f"canary_{action}_apply", target),
        back_url=_url(model_admin, f"canary_{action}", target),
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


def _apply_action(target: CanaryTarget, action: str, form: CanaryActionForm, actor: Actor) -> str:
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


@refusals_as_pages
def canary_action_apply_view(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    object_id: str,
    environment: str,
    action: str,
) -> HttpResponse:
    """Step 3 of advance / promote / abort / percent: call deployments.services.canaries."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
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
    try:
        message = _apply_action(target, action, form, Actor.of(request.user))
    except ValidationError as exc:
        apply_service_error(form, exc)
        return _action_form_page(request, model_admin, target, action, form)
    except Forbidden:
        raise
    except ServiceError as exc:
        # The page shows the canary as it is now (the refusal may be that it moved).
        target = CanaryTarget(
            target.agent, target.environment, get_pointer(target.agent, target.environment)
        )
        form.add_error(None, exc.message)
        return _action_form_page(request, model_admin, target, action, form, exc.http_status)
    return _done(request, target, message)
