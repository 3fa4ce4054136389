"""Reads of versions that several entry points share."""

from agentconfig.errors import NotFound
from agentconfig.models import Agent
from versions.models import AgentVersion


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
