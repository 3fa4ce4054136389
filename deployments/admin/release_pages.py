"""Deploy and roll back from the browser.

Deploy has three steps, like Django's delete confirmation:
1. GET  …/deploy/<environment>/         a form (version and reason);
2. POST …/deploy/<environment>/         validates it and shows the diff of what will change;
3. POST …/deploy/<environment>/apply/   calls the service, then redirects with a message.
In an environment that requires approval, step 1 explains that and leads to a deployment
request instead (agentconfig.site.request_views); the service refuses a direct deploy there.

Rollback is one page, for incidents:
1. GET  …/rollback/<environment>/?to=<version id>   the release history, the target
   (the previous version unless ?to= names another), the diff of what the rollback
   changes (active → target) and the reason field;
2. POST …/rollback/<environment>/apply/             calls the service, then redirects.

Invariants:
- Only the apply steps write, only on POST, and only through deployments.services.releases, which
  checks the permission again. A GET to an apply URL is refused (405) and changes nothing.
- Every confirmation carries the version that was active when it was shown
  (expected_active); if another release moved the pointer since, nothing is applied and
  the page is shown again with the new diff.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    Refused,
    apply_step,
    call_service,
    read_only_page,
    refusals_as_pages,
)
from deployments.admin.agent_pages import (
    Target,
    agent_page_url,
    load_target,
    release_confirmation_page,
    release_form_page,
    render_agent_page,
    stale_confirmation,
)
from deployments.approvals import BREAK_GLASS_PERMISSION
from deployments.diff_context import build_diff_context
from deployments.forms import DeployForm, RollbackForm
from deployments.selectors import (
    list_open_requests,
    list_release_history,
    list_rollback_targets,
)
from deployments.services.releases import deploy_version, rollback
from deployments.services.requests import REQUEST_PERMISSION
from versions.models import AgentVersion

DEPLOY_PERMISSION = "deployments.deploy_version"
ROLLBACK_PERMISSION = "deployments.rollback_version"
RELEASE_HISTORY_SHOWN = 50


# --- deploy --------------------------------------------------------------------------


def _deploy_form_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    form: DeployForm,
    status: int = 200,
) -> TemplateResponse:
    title = f"Deploy {target.agent.slug} to {target.environment.name}"
    return release_form_page(request, model_admin, "deploy", target, title, form, status)


def _deploy_confirmation_page(
    request: HttpRequest, model_admin: admin.ModelAdmin, target: Target, form: DeployForm
) -> TemplateResponse:
    label = form.cleaned_data["version"].label
    title = f"Deploy {target.agent.slug} {label} to {target.environment.name}?"
    return release_confirmation_page(
        request, model_admin, "deploy_confirmation", target, title, form, "deploy_apply"
    )


def _guarded_page(
    request: HttpRequest, model_admin: admin.ModelAdmin, target: Target
) -> TemplateResponse:
    """Deploying here needs an approved request: say so, and lead there."""
    user = request.user
    return render_agent_page(
        request,
        model_admin,
        "deploy_guarded",
        target,
        f"Deploy {target.agent.slug} to {target.environment.name}",
        open_requests=list_open_requests(target.agent, target.environment),
        can_request=user.has_perm(REQUEST_PERMISSION),
        can_break_glass=user.has_perm(BREAK_GLASS_PERMISSION),
    )


@refusals_as_pages
def deploy_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Steps 1 and 2 of a deploy: the form, then the confirmation showing the diff."""
    target = load_target(
        model_admin, request, object_id, environment, DEPLOY_PERMISSION, "deploy versions"
    )
    if target.environment.requires_approval:
        return _guarded_page(request, model_admin, target)
    if request.method == "POST":
        form = DeployForm(request.POST, agent=target.agent, active=target.active)
        if form.is_valid():
            return _deploy_confirmation_page(request, model_admin, target, form)
    else:
        form = DeployForm(agent=target.agent, active=target.active)
    return _deploy_form_page(request, model_admin, target, form)


@apply_step
def deploy_apply_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Step 3 of a deploy: move the pointer through deployments.services.releases.deploy_version."""
    target = load_target(
        model_admin, request, object_id, environment, DEPLOY_PERMISSION, "deploy versions"
    )
    form = DeployForm(request.POST, agent=target.agent, active=target.active)
    if not form.is_valid():
        return _deploy_form_page(request, model_admin, target, form)
    if stale_confirmation(request, target, form.cleaned_data["expected_active"]):
        return _deploy_confirmation_page(request, model_admin, target, form)
    entry = call_service(
        form,
        deploy_version,
        agent=target.agent,
        environment=target.environment,
        version=form.cleaned_data["version"],
        actor=Actor.of(request.user),
        reason=form.cleaned_data["reason"],
        expected_active_id=form.cleaned_data["expected_active"],
    )
    if isinstance(entry, Refused):
        return _deploy_form_page(request, model_admin, target, form, entry.status)
    was = entry.from_version.label if entry.from_version else "nothing"
    messages.success(
        request,
        f"Deployed {target.agent.slug} {entry.to_version.label} to {target.environment.slug} "
        f"(was {was}).",
    )
    return redirect("admin:agentconfig_agent_change", target.agent.pk)


# --- rollback: one page ---------------------------------------------------------------


def _rollback_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    form: RollbackForm,
    chosen: AgentVersion | None,
    status: int = 200,
) -> TemplateResponse:
    history = list(list_release_history(target.agent, target.environment)[:RELEASE_HISTORY_SHOWN])
    diff = build_diff_context(target.active, chosen) if chosen is not None else {}
    return render_agent_page(
        request,
        model_admin,
        "rollback",
        target,
        f"Roll back {target.agent.slug} in {target.environment.name}",
        status,
        form=form,
        targets=list(form.targets.values()),
        chosen=chosen,
        history=history,
        history_limit=RELEASE_HISTORY_SHOWN,
        apply_url=agent_page_url(model_admin, "rollback_apply", target),
        **diff,
    )


def _rollback_form(target: Target, data: Any = None, chosen: str | None = None) -> RollbackForm:
    # Targets are read now, so a form bound to a POST judges it against the current state.
    form = RollbackForm(data, targets=list_rollback_targets(target.agent, target.environment))
    if data is None and chosen in form.targets:
        form.fields["to_version"].initial = chosen
    return form


@read_only_page
def rollback_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """The rollback page: history, target (?to=), the diff it causes, reason and button."""
    target = load_target(
        model_admin, request, object_id, environment, ROLLBACK_PERMISSION, "roll back"
    )
    chosen_id = request.GET.get("to")
    form = _rollback_form(target, chosen=chosen_id)
    initial = str(form.fields["to_version"].initial or "")
    if chosen_id is not None and chosen_id not in form.targets:
        # A stale or hand-made link: say so, and show the default target instead.
        messages.warning(
            request,
            "The version in that link is not a rollback target here (it is active now, or it "
            f"has never been active in {target.environment.slug}); showing the previous one.",
        )
    return _rollback_page(request, model_admin, target, form, form.targets.get(initial))


@apply_step
def rollback_apply_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Apply the rollback the page showed, through deployments.services.releases.rollback."""
    target = load_target(
        model_admin, request, object_id, environment, ROLLBACK_PERMISSION, "roll back"
    )
    form = _rollback_form(target, request.POST)
    chosen = form.targets.get(request.POST.get("to_version", ""))
    if not form.is_valid():
        return _rollback_page(request, model_admin, target, form, chosen)
    if stale_confirmation(request, target, form.cleaned_data["expected_active"]):
        # The form was built for the current state: the same page, with the new diff.
        return _rollback_page(request, model_admin, target, form, chosen)
    entry = call_service(
        form,
        rollback,
        agent=target.agent,
        environment=target.environment,
        actor=Actor.of(request.user),
        reason=form.cleaned_data["reason"],
        to_version=form.cleaned_data["to_version"],
        expected_active_id=form.cleaned_data["expected_active"],
    )
    if isinstance(entry, Refused):
        return _rollback_page(request, model_admin, target, form, chosen, entry.status)
    was = entry.from_version.label if entry.from_version else "nothing"
    messages.success(
        request,
        f"Rolled {target.agent.slug} in {target.environment.slug} back to "
        f"{entry.to_version.label} (was {was}).",
    )
    return redirect("admin:agentconfig_agent_change", target.agent.pk)
