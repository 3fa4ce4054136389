"""The agent pages: the list with what is active where, and each agent's hub page.

The agent page links to every action on an agent: New version (agentconfig.site.versions_admin),
Deploy… and Roll back… per environment (deployments.admin.release_pages), Request deployment…
and Break glass… (agentconfig.site.request_views), Start canary… and the running
canary's Advance… / Promote now… / Abort… / Change percentage…
(deployments.admin.canary_pages), and the Timeline (agentconfig.site.timeline_views). Their
URLs live here, under the agent, so they read as
/admin/agentconfig/agent/<id>/deploy/<environment>/ and
/admin/agentconfig/agent/<id>/canary/<environment>/advance/.

Where an environment requires approval, the page offers Request deployment… instead of
Deploy…, and Break glass… (red, apart) only to users holding deployments.break_glass.
Agents edited outside git since their last version in git are marked in the list and on
the page, with the YAML of the newest version to download (versions.selectors.get_drifts).

The agent page's queries do not grow with environments, canaries or decisions: pointers
come with their canaries in one prefetch, and each canary read covers every environment.
The list reads drift for the whole page in two queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

import agentconfig.site.requests_admin
import agentconfig.site.users  # noqa: F401  (replaces the stock User admin)
from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    AdminPageView,
    ChangePageMixin,
    HistoryAdmin,
    ServiceAddAdmin,
    ServiceChangeMixin,
    page_path,
)
from agentconfig.models import Agent
from agentconfig.site import request_views as request_pages
from agentconfig.site import timeline_views
from agentconfig.site import versions_admin as version_pages
from deployments.admin import canary_pages, canary_panels
from deployments.admin import release_pages as deployment_pages
from deployments.approvals import BREAK_GLASS_PERMISSION
from deployments.models import DeploymentRequest, Environment, Pointer
from deployments.selectors import list_finished_canaries, list_open_requests
from deployments.services.requests import ApprovalState
from versions.admin_links import without_version_text
from versions.forms import AgentAddForm
from versions.models import AgentVersion
from versions.selectors import Drift, get_drift, get_drifts
from versions.services import create_agent, update_agent

if TYPE_CHECKING:
    # The stubs' names for what these admin hooks return (private, types only).
    from django.contrib.admin.options import _FieldGroups

VERSIONS_SHOWN = 50


@dataclass(frozen=True)
class OpenRequestRow:
    """An open deployment request and how far it is from being applicable."""

    request: DeploymentRequest
    state: ApprovalState


@dataclass(frozen=True)
class EnvironmentRow:
    environment: Environment
    pointer: Pointer | None
    canary: canary_panels.CanaryPanel | None = None
    open_requests: list[OpenRequestRow] = field(default_factory=list)

    @property
    def guarded(self) -> bool:
        """Releases here need an approved request (or break glass)."""
        return self.environment.requires_approval


class AgentChangeList(ChangeList):
    """The agent list, with each agent's drift read for the whole page at once."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # result_list is evaluated once; the rows rendered later are these instances.
        drifts = get_drifts(self.result_list)
        for agent in self.result_list:
            agent.drift = drifts.get(agent.pk)


@dataclass(frozen=True)
class VersionRow:
    version: AgentVersion
    active_in: list[str]


@admin.register(Agent)
class AgentAdmin(ChangePageMixin, ServiceChangeMixin, ServiceAddAdmin, HistoryAdmin):
    add_form = AgentAddForm
    list_display = ("slug", "name", "active_versions", "latest_version", "git", "updated_at")
    search_fields = ("slug", "name", "description")
    # Agent.get_absolute_url is this admin page; a "View on site" link would loop back.
    view_on_site = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        # One query for every agent's pointers, whatever the page size (no N+1 in the list).
        # Only the versions' numbers are shown; a prompt may be 200,000 characters.
        pointers = without_version_text(
            Pointer.objects.select_related("environment", "canary"),
            "stable_version",
            "canary__canary_version",
        ).order_by("environment__position", "environment__slug")
        # A subquery rather than Max() over a join, so the list's COUNT stays a plain count.
        latest = AgentVersion.objects.filter(agent=OuterRef("pk")).order_by("-version_number")
        return (
            super()
            .get_queryset(request)
            .annotate(latest_number=Subquery(latest.values("version_number")[:1]))
            .prefetch_related(Prefetch("pointers", queryset=pointers))
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AgentChangeList

    def get_fields(self, request: HttpRequest, obj: Agent | None = None) -> _FieldGroups:
        if obj is None:
            return ["slug", "name", "description"]
        return ["slug", "name", "description", "created_at", "updated_at"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: Agent | None = None
    ) -> tuple[str, ...]:
        # The slug is in URLs, file names and runtime requests: fixed once created.
        return ("slug", "created_at", "updated_at") if obj is not None else ()

    def get_prepopulated_fields(
        self, request: HttpRequest, obj: Agent | None = None
    ) -> dict[str, Sequence[str]]:
        # Not the prepopulated_fields attribute: simple-history's record page reads that
        # directly and would look for slug in a change form where slug is read-only.
        return {"slug": ("name",)} if obj is None else {}

    @admin.display(description="active versions")
    def active_versions(self, obj: Agent) -> SafeString | str:
        pointers = obj.pointers.all()
        if not pointers:
            return "not deployed"
        return format_html_join(
            " · ",
            "<span class='ac-env'>{}: {}{}</span>",
            (
                (
                    p.environment.slug,
                    p.stable_version.label,
                    (
                        f" + canary {p.canary.canary_version.label} at {p.canary.percent:g} %"
                        if p.canary
                        else ""
                    ),
                )
                for p in pointers
            ),
        )

    @admin.display(description="latest version", ordering="latest_number")
    def latest_version(self, obj: Agent) -> str:
        number = getattr(obj, "latest_number", None)
        return f"v{number}" if number else "no versions yet"

    @admin.display(description="git")
    def git(self, obj: Agent) -> SafeString | str:
        drift: Drift | None = getattr(obj, "drift", None)
        if drift is None:
            return ""
        return format_html(
            '<span class="ac-badge ac-badge-drift" title="{}"><span aria-hidden="true">⎇</span> '
            'edited outside git</span> <a href="{}" download>{}.yaml ({})</a>',
            drift.describe(),
            reverse("admin:versions_agentversion_download", args=[drift.latest.pk]),
            obj.slug,
            drift.latest.label,
        )

    def save_model(
        self, request: HttpRequest, obj: Agent, form: forms.BaseForm, change: bool
    ) -> None:
        # Edits go through the same service as the file import: one permission rule, and
        # the history row names who changed what. (Additions use create_via_service.)
        update_agent(
            agent=Agent.objects.get(pk=obj.pk),
            actor=Actor.of(request.user),
            name=obj.name,
            description=obj.description,
        )

    def create_via_service(self, request: HttpRequest, form: forms.BaseForm) -> HttpResponse:
        agent = create_agent(actor=Actor.of(request.user), **form.cleaned_data)
        self.log_addition(request, agent, [{"added": {}}])
        return self.response_add(request, agent)

    def get_urls(self) -> list[URLPattern]:
        def page(route: str, view: AdminPageView, name: str, **kwargs: str) -> URLPattern:
            # Every page is under one agent: /admin/agentconfig/agent/<id>/<route>.
            url_name = f"agentconfig_agent_{name}"
            return page_path(self, f"<path:object_id>/{route}", view, url_name, kwargs or None)

        env = "<slug:environment>"
        urls = [
            page("versions/new/", version_pages.new_version_view, "new_version"),
            page(f"deploy/{env}/apply/", deployment_pages.deploy_apply_view, "deploy_apply"),
            page(f"deploy/{env}/", deployment_pages.deploy_view, "deploy"),
            page(f"rollback/{env}/apply/", deployment_pages.rollback_apply_view, "rollback_apply"),
            page(f"rollback/{env}/", deployment_pages.rollback_view, "rollback"),
            page(f"request/{env}/submit/", request_pages.request_submit_view, "request_submit"),
            page(f"request/{env}/", request_pages.request_view, "request"),
            page(
                f"breakglass/{env}/apply/",
                request_pages.break_glass_apply_view,
                "break_glass_apply",
            ),
            page(f"breakglass/{env}/", request_pages.break_glass_view, "break_glass"),
            page("timeline/", timeline_views.timeline_view, "timeline"),
            page(
                f"canary/{env}/start/apply/",
                canary_pages.canary_start_apply_view,
                "canary_start_apply",
            ),
            page(f"canary/{env}/start/", canary_pages.canary_start_view, "canary_start"),
        ]
        for action in canary_pages.ACTIONS:
            urls += [
                page(
                    f"canary/{env}/{action}/apply/",
                    canary_pages.canary_action_apply_view,
                    f"canary_{action}_apply",
                    action=action,
                ),
                page(
                    f"canary/{env}/{action}/",
                    canary_pages.canary_action_view,
                    f"canary_{action}",
                    action=action,
                ),
            ]
        return urls + super().get_urls()

    def change_page_context(self, request: HttpRequest, agent: Agent) -> dict[str, Any]:
        """Where each version is active and the agent's newest versions, for its page."""
        pointers = {p.environment_id: p for p in agent.pointers.all()}
        panels = canary_panels.build_canary_panels(list(pointers.values()), now=timezone.now())
        open_requests: dict[int, list[OpenRequestRow]] = {}
        for open_request in list_open_requests(agent):
            pointer = pointers.get(open_request.environment_id)
            state = ApprovalState(
                open_request, current=pointer.stable_version_id if pointer else None
            )
            open_requests.setdefault(open_request.environment_id, []).append(
                OpenRequestRow(open_request, state)
            )
        environments = [
            EnvironmentRow(
                env, pointers.get(env.pk), panels.get(env.pk), open_requests.get(env.pk, [])
            )
            for env in Environment.objects.all()
        ]
        active_in: dict[Any, list[str]] = {}
        for row in environments:
            if row.pointer is not None:
                active_in.setdefault(row.pointer.stable_version_id, []).append(row.environment.slug)
        # The list shows no prompt: leave the largest columns in the database.
        versions = agent.versions.order_by("-version_number").only(
            "pk",
            "agent",
            "version_number",
            "created_at",
            "created_by_label",
            "change_description",
            "source",
            "config_hash",
        )[:VERSIONS_SHOWN]
        user = request.user
        return {
            "show_overview": True,
            "environments": environments,
            "versions": [VersionRow(v, active_in.get(v.pk, [])) for v in versions],
            # Numbers have no gaps, so the highest number is also the count.
            "version_count": getattr(agent, "latest_number", None) or 0,
            "versions_shown": VERSIONS_SHOWN,
            "can_add_version": user.has_perm(version_pages.ADD_VERSION_PERMISSION),
            "can_deploy": user.has_perm(deployment_pages.DEPLOY_PERMISSION),
            "can_request": user.has_perm(request_pages.REQUEST_PERMISSION),
            "can_break_glass": user.has_perm(BREAK_GLASS_PERMISSION)
            and user.has_perm(deployment_pages.DEPLOY_PERMISSION),
            "can_read_timeline": user.has_perm(timeline_views.HISTORY_PERMISSION),
            "open_requests": [row for env in environments for row in env.open_requests],
            "drift": get_drift(agent),
            "can_rollback": user.has_perm(deployment_pages.ROLLBACK_PERMISSION),
            "can_manage_canary": user.has_perm(canary_pages.MANAGE_PERMISSION),
            "canaries": [row for row in environments if row.canary is not None],
            "finished_canaries": list_finished_canaries(agent, limit=canary_panels.FINISHED_SHOWN),
        }
