"""Deploy and roll back from the browser: form, confirmation, then a POST that applies.

Each flow has three steps, like Django's delete confirmation:
1. GET  …/<environment>/         a form (version and reason);
2. POST …/<environment>/         validates it and shows what will change;
3. POST …/<environment>/apply/   calls the service, then redirects to the agent with a message.
Only step 3 writes, only on POST, and only through deployments.services, which checks the
permission again. A GET to the apply URL is refused (405) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from agentconfig.actors import Actor
from agentconfig.admin_views import (
    apply_service_error,
    get_agent_for_page,
    page_context,
    refusals_as_pages,
)
from agentconfig.errors import Forbidden, NotFound, ServiceError
from agentconfig.models import Agent
from deployments.forms import DeployForm, RollbackForm
from deployments.models import Environment
from deployments.selectors import (
    get_environment,
    get_pointer,
    list_release_history,
    list_rollback_targets,
)
from deployments.services import deploy_version, rollback
from versions.config import CONFIG_FIELDS
from versions.forms import pretty_json
from versions.models import AgentVersion

DEPLOY_PERMISSION = "deployments.deploy_version"
ROLLBACK_PERMISSION = "deployments.rollback_version"
RELEASE_HISTORY_SHOWN = 50

FIELD_LABELS = {
    "system_prompt": "System prompt",
    "model": "Model",
    "temperature": "Temperature",
    "max_tokens": "Max tokens",
    "tools": "Tools",
    "guardrails": "Guardrails",
}


@dataclass(frozen=True)
class ConfigRow:
    """One configuration field before and after a pointer move, as display text."""

    field: str
    label: str
    old: str | None
    new: str
    changed: bool


def config_text(field: str, value: Any) -> str:
    """A configuration value as text for people (templates escape it)."""
    if field == "tools":
        return "\n".join(value) if value else "(none)"
    if field == "guardrails":
        return pretty_json(value) if value else "(none)"
    return str(value)


def compare_configs(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[ConfigRow]:
    """The six configuration fields side by side; `old` is None on a first deploy."""
    return [
        ConfigRow(
            field=field,
            label=FIELD_LABELS[field],
            old=None if old is None else config_text(field, old[field]),
            new=config_text(field, new[field]),
            changed=old is None or old[field] != new[field],
        )
        for field in CONFIG_FIELDS
    ]


@dataclass(frozen=True)
class Target:
    """The (agent, environment) a page acts on and the version active there now."""

    agent: Agent
    environment: Environment
    active: AgentVersion | None

    @property
    def active_pk(self) -> str:
        return str(self.active.pk) if self.active else ""


def _load_target(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    object_id: str,
    environment: str,
    permission: str,
    action: str,
) -> Target:
    agent = get_agent_for_page(model_admin, request, object_id)
    Actor.of(request.user).require(permission, action)
    try:
        env = get_environment(environment)
    except NotFound as exc:
        raise Http404(exc.message) from None
    pointer = get_pointer(agent, env)
    return Target(agent, env, pointer.stable_version if pointer else None)


def _render(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    template: str,
    target: Target,
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
        active=target.active,
        **extra,
    )
    return TemplateResponse(
        request, f"admin/agentconfig/agent/{template}.html", context, status=status
    )


def _url(model_admin: admin.ModelAdmin, page: str, target: Target) -> str:
    return reverse(
        f"{model_admin.admin_site.name}:agentconfig_agent_{page}",
        args=[target.agent.pk, target.environment.slug],
    )


def _stale_confirmation(request: HttpRequest, target: Target, expected_active: str) -> bool:
    """Warn and return True if the active version moved since the confirmation page was shown."""
    if expected_active == target.active_pk:
        return False
    now = target.active.label if target.active else "nothing"
    messages.warning(
        request,
        f"The active version of {target.agent.slug} in {target.environment.slug} changed to "
        f"{now} while you were reviewing. Check the changes below again.",
    )
    return True


# --- deploy --------------------------------------------------------------------------


def _deploy_form_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    form: DeployForm,
    status: int = 200,
) -> TemplateResponse:
    return _render(
        request,
        model_admin,
        "deploy",
        target,
        f"Deploy {target.agent.slug} to {target.environment.name}",
        status,
        form=form,
        has_versions=target.agent.versions.exists(),
    )


def _deploy_confirmation_page(
    request: HttpRequest, model_admin: admin.ModelAdmin, target: Target, form: DeployForm
) -> TemplateResponse:
    version: AgentVersion = form.cleaned_data["version"]
    return _render(
        request,
        model_admin,
        "deploy_confirmation",
        target,
        f"Deploy {target.agent.slug} {version.label} to {target.environment.name}?",
        form=form,
        version=version,
        rows=compare_configs(target.active.config if target.active else None, version.config),
        apply_url=_url(model_admin, "deploy_apply", target),
    )


@refusals_as_pages
def deploy_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Steps 1 and 2 of a deploy: the form, then the confirmation showing what changes."""
    target = _load_target(
        model_admin, request, object_id, environment, DEPLOY_PERMISSION, "deploy versions"
    )
    if request.method == "POST":
        form = DeployForm(request.POST, agent=target.agent, active=target.active)
        if form.is_valid():
            return _deploy_confirmation_page(request, model_admin, target, form)
    else:
        form = DeployForm(agent=target.agent, active=target.active)
    return _deploy_form_page(request, model_admin, target, form)


@refusals_as_pages
def deploy_apply_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Step 3 of a deploy: move the pointer through deployments.services.deploy_version."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    target = _load_target(
        model_admin, request, object_id, environment, DEPLOY_PERMISSION, "deploy versions"
    )
    form = DeployForm(request.POST, agent=target.agent, active=target.active)
    if not form.is_valid():
        return _deploy_form_page(request, model_admin, target, form)
    if _stale_confirmation(request, target, form.cleaned_data["expected_active"]):
        return _deploy_confirmation_page(request, model_admin, target, form)
    try:
        entry = deploy_version(
            agent=target.agent,
            environment=target.environment,
            version=form.cleaned_data["version"],
            actor=Actor.of(request.user),
            reason=form.cleaned_data["reason"],
        )
    except ValidationError as exc:
        apply_service_error(form, exc)
        return _deploy_form_page(request, model_admin, target, form)
    except Forbidden:
        raise
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return _deploy_form_page(request, model_admin, target, form, exc.http_status)
    was = entry.from_version.label if entry.from_version else "nothing"
    messages.success(
        request,
        f"Deployed {target.agent.slug} {entry.to_version.label} to {target.environment.slug} "
        f"(was {was}).",
    )
    return redirect("admin:agentconfig_agent_change", target.agent.pk)


# --- rollback ------------------------------------------------------------------------


def _rollback_form_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    target: Target,
    form: RollbackForm,
    status: int = 200,
) -> TemplateResponse:
    history = list_release_history(target.agent, target.environment)[:RELEASE_HISTORY_SHOWN]
    return _render(
        request,
        model_admin,
        "rollback",
        target,
        f"Roll back {target.agent.slug} in {target.environment.name}",
        status,
        form=form,
        has_targets=bool(form.targets),
        history=history,
        history_limit=RELEASE_HISTORY_SHOWN,
    )


def _rollback_confirmation_page(
    request: HttpRequest, model_admin: admin.ModelAdmin, target: Target, form: RollbackForm
) -> TemplateResponse:
    version: AgentVersion = form.cleaned_data["to_version"]
    return _render(
        request,
        model_admin,
        "rollback_confirmation",
        target,
        f"Roll back {target.agent.slug} in {target.environment.name} to {version.label}?",
        form=form,
        version=version,
        rows=compare_configs(target.active.config if target.active else None, version.config),
        apply_url=_url(model_admin, "rollback_apply", target),
    )


def _rollback_form(request: HttpRequest, target: Target) -> RollbackForm:
    targets = list_rollback_targets(target.agent, target.environment)
    data = request.POST if request.method == "POST" else None
    return RollbackForm(data, targets=targets)


@refusals_as_pages
def rollback_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Steps 1 and 2 of a rollback: release history and target, then the confirmation."""
    target = _load_target(
        model_admin, request, object_id, environment, ROLLBACK_PERMISSION, "roll back"
    )
    form = _rollback_form(request, target)
    if form.is_bound and form.is_valid():
        return _rollback_confirmation_page(request, model_admin, target, form)
    return _rollback_form_page(request, model_admin, target, form)


@refusals_as_pages
def rollback_apply_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, environment: str
) -> HttpResponse:
    """Step 3 of a rollback: move the pointer back through deployments.services.rollback."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    target = _load_target(
        model_admin, request, object_id, environment, ROLLBACK_PERMISSION, "roll back"
    )
    form = _rollback_form(request, target)
    if not form.is_valid():
        return _rollback_form_page(request, model_admin, target, form)
    if _stale_confirmation(request, target, form.cleaned_data["expected_active"]):
        return _rollback_confirmation_page(request, model_admin, target, form)
    try:
        entry = rollback(
            agent=target.agent,
            environment=target.environment,
            actor=Actor.of(request.user),
            reason=form.cleaned_data["reason"],
            to_version=form.cleaned_data["to_version"],
        )
    except ValidationError as exc:
        apply_service_error(form, exc)
        return _rollback_form_page(request, model_admin, target, form)
    except Forbidden:
        raise
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return _rollback_form_page(request, model_admin, target, form, exc.http_status)
    was = entry.from_version.label if entry.from_version else "nothing"
    messages.success(
        request,
        f"Rolled {target.agent.slug} in {target.environment.slug} back to "
        f"{entry.to_version.label} (was {was}).",
    )
    return redirect("admin:agentconfig_agent_change", target.agent.pk)
