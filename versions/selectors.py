"""Reads of versions that several entry points share.

"In git" and drift:
- A version is *in git* if it was made from git (source "git") or a git sync later
  found exactly its configuration in a commit (a GitConfirmation).
- An agent has *drifted* ("edited outside git") when its latest version is not in git
  but an earlier one is: someone made a version in the browser, the CLI or a folder
  import after the agent's last version from git. An agent never synced from git has
  no drift: git does not manage it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import OuterRef, Q, Subquery

from agentconfig.core.errors import NotFound
from agentconfig.models import Agent
from versions.models import AgentVersion, Source

# What identifies a version and its provenance; the prompt and guardrails can be large.
_HEAVY_FIELDS = ("system_prompt", "guardrails")
IN_GIT = Q(source=Source.GIT) | Q(git_confirmation__isnull=False)


def get_latest_version(agent: Agent) -> AgentVersion | None:
    """The agent's highest-numbered version, or None if it has none."""
    return agent.versions.order_by("-version_number").first()


def get_version(agent: Agent, number: int) -> AgentVersion:
    """Version `number` of `agent`, or NotFound with a message that names both."""
    try:
        return agent.versions.get(version_number=number)
    except AgentVersion.DoesNotExist:
        latest = get_latest_version(agent)
        known = f"its versions are v1-v{latest.version_number}" if latest else "it has no versions"
        raise NotFound(f"agent {agent.slug!r} has no version v{number} ({known}).") from None


def get_agent(slug: str) -> Agent:
    """The agent with `slug`, or NotFound."""
    try:
        return Agent.objects.get(slug=slug)
    except Agent.DoesNotExist:
        raise NotFound(f"there is no agent {slug!r}.") from None


def list_agents(slug: str | None = None) -> list[Agent]:
    """The agent with `slug` (NotFound if none), or every agent, in slug order."""
    return [get_agent(slug)] if slug else list(Agent.objects.order_by("slug"))


@dataclass(frozen=True)
class GitState:
    """An agent's latest version and its newest version in git (each None if there is none).

    The versions come without their prompt and guardrails (deferred), with their
    GitConfirmation if any.
    """

    latest: AgentVersion | None
    in_git: AgentVersion | None

    @property
    def commit(self) -> str:
        """The commit `in_git` was made from or confirmed at ("" if none)."""
        return commit_of(self.in_git) if self.in_git else ""

    @property
    def path(self) -> str:
        """The file `in_git` was read from, from the repository root ("" if none)."""
        return path_of(self.in_git) if self.in_git else ""

    @property
    def drift(self) -> Drift | None:
        latest, in_git = self.latest, self.in_git
        if latest is None or in_git is None or latest.pk == in_git.pk:
            return None
        return Drift(latest=latest, in_git=in_git, commit=self.commit, path=self.path)


@dataclass(frozen=True)
class Drift:
    """Edited outside git: `latest` is newer than `in_git`, the agent's last version in git."""

    latest: AgentVersion  # the version to download and commit
    in_git: AgentVersion
    commit: str  # the commit in_git came from (or was confirmed at)
    path: str  # its file, from the repository root

    @property
    def versions_outside_git(self) -> int:
        return self.latest.version_number - self.in_git.version_number

    def describe(self) -> str:
        by = f"{self.latest.get_source_display().lower()}, {self.latest.created_by_label}"
        since = f"{self.in_git.label}, the last version in git ({self.path} at {self.commit[:12]})"
        if self.versions_outside_git == 1:
            return f"Edited outside git: {self.latest.label} ({by}) was made after {since}."
        return (
            f"Edited outside git: {self.versions_outside_git} versions up to {self.latest.label} "
            f"({by}) were made after {since}."
        )


def commit_of(version: AgentVersion) -> str:
    """The commit a version was made from, or confirmed at; "" if it is not in git."""
    if version.source_commit:
        return version.source_commit
    confirmation = getattr(version, "git_confirmation", None)
    return confirmation.source_commit if confirmation else ""


def path_of(version: AgentVersion) -> str:
    """The file a version in git was read from (its confirmation's file if confirmed)."""
    if version.source == Source.GIT:
        return version.source_path
    confirmation = getattr(version, "git_confirmation", None)
    return confirmation.source_path if confirmation else version.source_path


def list_git_states(agent_ids: Iterable[int]) -> dict[int, GitState]:
    """GitState of each agent in `agent_ids`, by agent id, in two queries whatever their number."""
    newest = AgentVersion.objects.filter(agent=OuterRef("pk")).order_by("-version_number")
    query = (
        Agent.objects.filter(pk__in=list(agent_ids))
        .annotate(
            latest_id=Subquery(newest.values("pk")[:1]),
            in_git_id=Subquery(newest.filter(IN_GIT).values("pk")[:1]),
        )
        .values_list("pk", "latest_id", "in_git_id")
    )
    rows = list(query)
    wanted = {pk for _, latest, in_git in rows for pk in (latest, in_git) if pk is not None}
    versions = {
        version.pk: version
        for version in AgentVersion.objects.filter(pk__in=wanted)
        .select_related("agent", "git_confirmation")
        .defer(*_HEAVY_FIELDS)
    }
    return {
        agent_id: GitState(
            latest=versions.get(latest) if latest else None,
            in_git=versions.get(in_git) if in_git else None,
        )
        for agent_id, latest, in_git in rows
    }


def get_drifts(agents: Iterable[Agent]) -> dict[int, Drift]:
    """The drifted agents among `agents`: their Drift by agent id (two queries in all)."""
    states = list_git_states(agent.pk for agent in agents)
    return {agent_id: state.drift for agent_id, state in states.items() if state.drift}


def get_drift(agent: Agent) -> Drift | None:
    """The agent's Drift if it was edited outside git after its last version in git, else None."""
    return get_drifts([agent]).get(agent.pk)
