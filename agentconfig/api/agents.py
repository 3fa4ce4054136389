"""Agents and their versions: list, get, and create a version through versions.services."""

from __future__ import annotations

from typing import Any

from django.db.models import Max, QuerySet
from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from agentconfig.api.auth import actor_of
from agentconfig.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, page_of
from agentconfig.api.problems import responses
from agentconfig.api.schemas import AgentOut, VersionIn, VersionOut, VersionSummary
from agentconfig.models import Agent
from versions import selectors, services
from versions.models import AgentVersion, Source

router = Router(tags=["agents"])

VIEW_AGENTS = "agentconfig.view_agent"
VIEW_VERSIONS = "versions.view_agentversion"
# What a version's list needs; the prompt and guardrails can be large.
_LIST_DEFER = ("system_prompt", "guardrails", "tools")


class PageQuery(Schema):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")


@router.get("/agents", response=responses(200, Page[AgentOut]), summary="List agents (by slug)")
def list_agents(request: HttpRequest, page: Query[PageQuery]) -> dict[str, Any]:
    actor_of(request).require(VIEW_AGENTS, "list agents")
    after = decode_cursor(page.cursor, str)
    agents = _with_latest_number(Agent.objects.order_by("slug"))
    if after is not None:
        agents = agents.filter(slug__gt=after)
    return page_of(agents[: page.limit + 1], page.limit, lambda agent: agent.slug)


@router.get("/agents/{slug}", response=responses(200, AgentOut), summary="Get an agent")
def get_agent(request: HttpRequest, slug: str) -> Agent:
    actor_of(request).require(VIEW_AGENTS, "view agents")
    return _with_latest_number(Agent.objects.filter(pk=selectors.get_agent(slug).pk)).get()


def _with_latest_number(agents: QuerySet[Agent]) -> QuerySet[Agent]:
    # AgentOut.latest_version reads this annotation.
    return agents.annotate(latest_number=Max("versions__version_number"))


@router.get(
    "/agents/{slug}/versions",
    response=responses(200, Page[VersionSummary]),
    summary="List an agent's versions (newest first)",
)
def list_versions(request: HttpRequest, slug: str, page: Query[PageQuery]) -> dict[str, Any]:
    actor_of(request).require(VIEW_VERSIONS, "view versions")
    agent = selectors.get_agent(slug)
    before = decode_cursor(page.cursor, int)
    versions = (
        agent.versions.order_by("-version_number")
        .select_related("agent", "derived_from")
        .defer(*_LIST_DEFER)
    )
    if before is not None:
        versions = versions.filter(version_number__lt=before)
    return page_of(versions[: page.limit + 1], page.limit, lambda version: version.version_number)


@router.get(
    "/agents/{slug}/versions/{number}", response=responses(200, VersionOut), summary="Get a version"
)
def get_version(request: HttpRequest, slug: str, number: int) -> AgentVersion:
    actor_of(request).require(VIEW_VERSIONS, "view versions")
    return selectors.get_version(selectors.get_agent(slug), number)


@router.post(
    "/agents/{slug}/versions",
    response=responses(201, VersionOut),
    summary="Create a version",
    description=(
        "The agent's next version, validated like every other way of making one (fields, "
        "credential scan). A configuration identical to the latest version's is refused "
        "(422, 'no changes compared to vN')."
    ),
)
def create_version(request: HttpRequest, slug: str, payload: VersionIn) -> Status[AgentVersion]:
    actor = actor_of(request)
    agent = selectors.get_agent(slug)
    version = services.create_version(
        agent=agent,
        actor=actor,
        config=payload.config,
        change_description=payload.change_description,
        source=Source.API,
    )
    return Status(201, version)
