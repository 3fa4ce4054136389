"""Reads about environments and pointers that several entry points share."""

from __future__ import annotations

from django.db.models import QuerySet

from agentconfig.errors import NotFound
from agentconfig.models import Agent
from deployments.models import STABLE_KINDS, Environment, Pointer, ReleaseLogEntry
from versions.models import AgentVersion


def get_environment(slug: str) -> Environment:
    """The environment with `slug`, or NotFound naming the ones that exist."""
    try:
        return Environment.objects.get(slug=slug)
    except Environment.DoesNotExist:
        known = ", ".join(Environment.objects.values_list("slug", flat=True)) or "none"
        raise NotFound(f"there is no environment {slug!r} (known: {known}).") from None


def get_pointer(agent: Agent, environment: Environment) -> Pointer | None:
    """The agent's pointer in `environment`, with its version, or None if never deployed."""
    return (
        Pointer.objects.select_related("stable_version", "canary__canary_version")
        .filter(agent=agent, environment=environment)
        .first()
    )


def list_release_history(agent: Agent, environment: Environment) -> QuerySet[ReleaseLogEntry]:
    """The release log of one agent in one environment, newest first."""
    return ReleaseLogEntry.objects.filter(agent=agent, environment=environment).select_related(
        "from_version", "to_version", "actor"
    )


def list_rollback_targets(agent: Agent, environment: Environment) -> list[AgentVersion]:
    """Versions that were active in `environment` before, most recently active first.

    The first entry is the default rollback target (the version active just before the
    current one) when there is one.
    """
    pointer = get_pointer(agent, environment)
    if pointer is None:
        return []
    history = list(list_release_history(agent, environment).filter(kind__in=STABLE_KINDS))
    ordered: list[AgentVersion] = []
    seen = {pointer.stable_version_id}
    default = history[0].from_version if history else None
    if default is not None:
        ordered.append(default)
        seen.add(default.pk)
    for entry in history:
        if entry.to_version_id not in seen:
            ordered.append(entry.to_version)
            seen.add(entry.to_version_id)
    return ordered
