"""What the pages of one agent in one environment share: deploy, roll back, request,
break glass and the canary pages.

Each page loads its target the same way (404 for an unknown agent or environment, 403
without the permission), renders templates/admin/agentconfig/agent/<page>.html with the
agent, the environment and the active version, and warns when what its confirmation
showed has moved since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import get_agent_for_page, page_context
from agentconfig.core.errors import NotFound
from agentconfig.models import Agent
from deployments.diff_context import build_diff_context
from deployments.models import CanaryRollout, Environment, Pointer
from deployments.selectors import get_environment, get_pointer
from versions.models import AgentVersion


@dataclass(frozen=True)
class Target:
    """The (agent, environment) a page acts on and its pointer as it is now."""

    agent: Agent
    environment: Environment
    pointer: Pointer | None

    @property
    def active(self) -> AgentVersion | None:
        """The stable version: the one everyone outside a running canary gets."""
        return self.pointer.stable_version if self.pointer else None

    @property
    def active_pk(self) -> str:
        return str(self.active.pk) if self.active else ""

    @property
    def rollout(self) -> CanaryRollout | None:
        return self.pointer.canary if self.pointer else None

    @property
    def canary_state(self) -> str:
        """What a canary confirmation describes: the rollout, its step and its share."""
        rollout = self.rollout
        if rollout is None:
            return ""
        return f"{rollout.pk}:{rollout.step_index}:{rollout.basis_points}"

    def reloaded(self) -> Target:
        """The same agent and environment with the pointer read again."""
        return Target(self.agent, self.environment, get_pointer(self.agent, self.environment))


def load_target(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    object_id: str,
    environment: str,
    permission: str,
    action: str,
) -> Target:
    """The agent and environment of a page; 404 if unknown, Forbidden without `permission`."""
    agent = get_agent_for_page(model_admin, request, object_id)
    Actor.of(request.user).require(permission, action)
    try:
        env = get_environment(environment)
    except NotFound as exc:
        raise Http404(exc.message) from None
    return Target(agent, env, get_pointer(agent, env))


def render_agent_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    template: str,
    target: Target,
    title: str,
    status: int = 200,
    **extra: Any,
) -> TemplateResponse:
    """Render templates/admin/agentconfig/agent/<template>.html for `target`.

    The context names the agent, the environment, the active version (also `stable`, as
    the canary pages call it) and the running canary (`rollout`, loaded with the pointer);
    `extra` may name another `active` (the side a comparison starts from).
    """
    context = {
        "agent": target.agent,
        "environment": target.environment,
        "active": target.active,
        "stable": target.active,
        "rollout": target.rollout,
        **extra,
    }
    return TemplateResponse(
        request,
        f"admin/agentconfig/agent/{template}.html",
        page_context(request, model_admin, title, **context),
        status=status,
    )


def agent_page_url(model_admin: admin.ModelAdmin, page: str, target: Target) -> str:
    """The URL of one of the agent's per-environment pages (deploy, rollback_apply, …)."""
    return reverse(
        f"{model_admin.admin_site.name}:agentconfig_agent_{page}",
        args=[target.agent.pk, target.environment.slug],
    )


def stale_confirmation(
    request: HttpRequest,
    target: Target,
    expected_active: str,
    *,
    version: str = "active version",
    check: str = "the changes",
) -> bool:
    """Warn and return True if the active version moved since the confirmation page was shown."""
    if expected_active == target.active_pk:
        return False
    now = target.active.label if target.active else "nothing"
    messages.warning(
        request,
        f"The {version} of {target.agent.slug} in {target.environment.slug} changed to "
        f"{now} while you were reviewing. Check {check} below again.",
    )
    return True


def release_form_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    template: str,
    target: Target,
    title: str,
    form: Any,
    status: int = 200,
) -> TemplateResponse:
    """The first step of a release (deploy, break glass): the form choosing the version."""
    return render_agent_page(
        request,
        model_admin,
        template,
        target,
        title,
        status,
        form=form,
        has_versions=target.agent.versions.exists(),
    )


def release_confirmation_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    template: str,
    target: Target,
    title: str,
    form: Any,
    apply_page: str,
) -> TemplateResponse:
    """The second step: the chosen version's diff against the active one, to confirm on
    the `apply_page`."""
    version: AgentVersion = form.cleaned_data["version"]
    return render_agent_page(
        request,
        model_admin,
        template,
        target,
        title,
        form=form,
        version=version,
        apply_url=agent_page_url(model_admin, apply_page, target),
        **build_diff_context(target.active, version),
    )
