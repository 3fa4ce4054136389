"""The compare pages of versions: /admin/versions/agentversion/compare/<agent>/<a>...<b>/.

AgentVersionAdmin.get_urls routes here. Compare URLs read like git: a and b are version
numbers or aliases (latest, previous, active@<environment>; see deployments.diff_context).
The pages are reached from each version's page ("Changes from previous"), from the version
list (its "changes" column, and the "Compare two versions" form when the list is filtered
by one agent) and from every page that includes
templates/admin/agentconfig/includes/version_diff.html.

Invariants:
- Read-only: GET pages that write nothing.
- They need the view permission on versions (a 403 page naming it otherwise) and answer an
  unknown agent, version or alias with a 404 page that says what exists and how to write it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse

from agentconfig.core.admin_pages import page_context, refusals_as_pages
from agentconfig.core.errors import Forbidden, NotFound
from agentconfig.models import Agent
from deployments.diff_context import (
    ACTIVE_PREFIX,
    RANGE_SEPARATOR,
    REF_HELP,
    build_diff_context,
    compare_url_for,
    resolve_compare_range,
)
from deployments.models import Pointer
from versions.models import AgentVersion
from versions.selectors import get_agent

VIEW_VERSION_PERMISSION = "versions.view_agentversion"
# The compare form lists this many of an agent's newest versions; older ones by URL.
PICKER_VERSIONS = 500


def changelist_for(agent: Agent) -> str:
    """The version list filtered by `agent` (where its compare form is)."""
    return f"{reverse('admin:versions_agentversion_changelist')}?agent__id__exact={agent.pk}"


def version_page_links(version: AgentVersion) -> dict[str, str]:
    """Context of a version's page: "Changes from previous" (not on v1) and "Compare with…"."""
    links = {"compare_pick_url": changelist_for(version.agent)}
    if version.derived_from_id is not None or version.version_number > 1:
        links["changes_from_previous_url"] = compare_url_for(
            version.agent, "previous", str(version.version_number)
        )
    return links


def compare_picker(agent_id: str | None) -> dict[str, Any] | None:
    """The "Compare two versions" form of the version list filtered by one agent, or None."""
    if not agent_id or not agent_id.isdigit():
        return None
    agent = Agent.objects.filter(pk=int(agent_id)).first()
    if agent is None:
        return None
    versions = list(
        agent.versions.order_by("-version_number").values_list(
            "version_number", "change_description"
        )[:PICKER_VERSIONS]
    )
    if not versions:
        return None
    active = list(
        Pointer.objects.filter(agent=agent)
        .order_by("environment__position", "environment__slug")
        .values_list("environment__slug", "stable_version__version_number")
    )
    return {
        "agent": agent,
        "action": reverse("admin:versions_agentversion_compare_pick", args=[agent.slug]),
        "versions": versions,
        "active": [(f"{ACTIVE_PREFIX}{slug}", slug, number) for slug, number in active],
        # Preselected: the newest version against the one before it.
        "old": str(versions[1][0] if len(versions) > 1 else versions[0][0]),
        "new": str(versions[0][0]),
    }


def _not_found(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    message: str,
    agent: Agent | None = None,
) -> TemplateResponse:
    context = page_context(
        request,
        model_admin,
        "Nothing to compare",
        message=message,
        agent=agent,
        ref_help=REF_HELP,
        picker_url=changelist_for(agent) if agent else None,
    )
    return TemplateResponse(
        request, "admin/versions/agentversion/compare_not_found.html", context, status=404
    )


def _require_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> None:
    if not model_admin.has_view_permission(request):
        raise Forbidden(
            f"{request.user.get_username()} may not view versions: comparing them needs the "
            f"permission '{VIEW_VERSION_PERMISSION}'. Ask an administrator to grant it."
        )


def _alias(ref: str) -> str | None:
    """The alias a side of the URL used ("previous", "active@production"), None for a number."""
    ref = ref.strip()
    return None if ref.removeprefix("v").isdigit() else ref


@refusals_as_pages
def compare_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, agent_slug: str, spec: str
) -> HttpResponse:
    """Two versions of an agent side by side: summary, prompt, parameters, tools, guardrails."""
    _require_view(model_admin, request)
    try:
        agent = get_agent(agent_slug)
    except NotFound as exc:
        return _not_found(request, model_admin, exc.message)
    try:
        old, new = resolve_compare_range(agent, spec)
    except NotFound as exc:
        return _not_found(request, model_admin, exc.message, agent)
    old_ref, _, new_ref = spec.partition(RANGE_SEPARATOR)
    active_in: dict[Any, list[str]] = {old.pk: [], new.pk: []}
    for version_id, slug in (
        Pointer.objects.filter(stable_version__in=[old.pk, new.pk])
        .order_by("environment__position", "environment__slug")
        .values_list("stable_version_id", "environment__slug")
    ):
        active_in[version_id].append(slug)
    context = page_context(
        request,
        model_admin,
        f"{agent.slug} {old.label} → {new.label}",
        agent=agent,
        old=old,
        new=new,
        old_alias=_alias(old_ref),
        new_alias=_alias(new_ref),
        old_active_in=active_in[old.pk],
        new_active_in=active_in[new.pk],
        swap_url=compare_url_for(agent, str(new.version_number), str(old.version_number)),
        picker_url=changelist_for(agent),
        **build_diff_context(old, new),
    )
    return TemplateResponse(request, "admin/versions/agentversion/compare.html", context)


@refusals_as_pages
def compare_pick_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, agent_slug: str
) -> HttpResponse:
    """The compare form's GET target: redirect ?old=a&new=b to the compare URL a...b."""
    _require_view(model_admin, request)
    old_ref = request.GET.get("old", "").strip()
    new_ref = request.GET.get("new", "").strip()
    try:
        agent = get_agent(agent_slug)
    except NotFound as exc:
        return _not_found(request, model_admin, exc.message)
    if not old_ref or not new_ref:
        return _not_found(request, model_admin, "Choose two versions to compare.", agent)
    try:
        return HttpResponseRedirect(compare_url_for(agent, old_ref, new_ref))
    except NoReverseMatch:
        return _not_found(
            request, model_admin, f"{old_ref!r} or {new_ref!r} is not {REF_HELP}.", agent
        )
