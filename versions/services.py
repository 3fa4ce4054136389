"""Writes of agents and versions. Every entry point (admin, CLI, file import, API) calls these.

Invariants:
- Everything is validated before anything is written; a refused call writes nothing.
- Version numbers are assigned under a row lock on the agent (PostgreSQL) or the
  database write lock (SQLite, transaction_mode=IMMEDIATE), so concurrent creators
  get consecutive numbers and never an error.
- A version identical to the agent's latest (same config_hash) is refused.
- A version has a commit if and only if its source is "git".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agentconfig.core.actors import Actor
from agentconfig.core.change_feed import record_change
from agentconfig.core.errors import Conflict
from agentconfig.models import Agent, ChangeTopic
from versions.config import ConfigError, config_hash, normalize_config
from versions.git_source import Commit
from versions.models import AgentVersion, Source
from versions.secrets import scan_config

MAX_CHANGE_DESCRIPTION = 2000


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised config, or ValidationError by field (including credentials found)."""
    errors: dict[str, list[str]] = {}
    normalized: dict[str, Any] = {}
    try:
        normalized = normalize_config(config)
    except ConfigError as exc:
        errors = {field: list(messages) for field, messages in exc.errors.items()}
    # Scan what we can even when other fields are wrong, so a credential is reported
    # in the same round as a typo, not after it is fixed.
    scannable = normalized or _scannable_parts(config)
    for finding in scan_config(scannable):
        errors.setdefault(finding.field, []).append(finding.message())
    if errors:
        raise ValidationError(errors)
    return normalized


def _scannable_parts(config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        return {}
    prompt, guardrails = config.get("system_prompt"), config.get("guardrails")
    return {
        "system_prompt": prompt if isinstance(prompt, str) else "",
        "guardrails": guardrails if isinstance(guardrails, Mapping) else {},
    }


def validate_change_description(text: str | None) -> str:
    """The description, stripped; ValidationError if missing or too long."""
    text = (text or "").strip()
    if not text:
        raise ValidationError(
            {"change_description": "is required: say what changed and why, in a sentence."}
        )
    if len(text) > MAX_CHANGE_DESCRIPTION:
        raise ValidationError(
            {"change_description": f"is longer than {MAX_CHANGE_DESCRIPTION} characters."}
        )
    return text


def commit_fields(commit: Commit | None) -> dict[str, Any]:
    """The provenance columns (versions.models.GitProvenance) for `commit`, or empty ones."""
    if commit is None:
        return {}
    return {
        "source_commit": commit.sha,
        "source_commit_author": commit.author[:500],
        "source_commit_time": commit.time,
        "source_commit_message": commit.message.replace("\x00", ""),
    }


def create_agent(*, slug: str, name: str, description: str = "", actor: Actor) -> Agent:
    """Create an agent (no versions yet)."""
    actor.require("agentconfig.add_agent", "create agents")
    agent = Agent(slug=slug, name=name, description=description)
    agent.full_clean()
    try:
        with transaction.atomic():
            agent.save()
            # Runtimes that asked for this slug were told "no such agent".
            record_change(topic=ChangeTopic.AGENT, agent=agent)
    except IntegrityError:
        raise ValidationError({"slug": f"an agent with slug {slug!r} already exists."}) from None
    return agent


def update_agent(
    *, agent: Agent, actor: Actor, name: str, description: str, reason: str = ""
) -> tuple[str, ...]:
    """Set the agent's name and description; returns the fields that changed.

    The slug never changes: it is in URLs, file names and every runtime's requests.
    """
    actor.require("agentconfig.change_agent", "change agents")
    changed = tuple(
        field
        for field, value in (("name", name), ("description", description))
        if getattr(agent, field) != value
    )
    if not changed:
        return ()
    agent.name, agent.description = name, description
    agent.full_clean()
    # simple-history reads these two attributes for the history row: who, and why (not
    # model fields, so mypy does not know them).
    agent._history_user = actor.user  # type: ignore[attr-defined]
    agent._change_reason = (reason or actor.label)[:100]  # type: ignore[attr-defined]
    agent.save()
    return changed


def create_version(
    *,
    agent: Agent,
    actor: Actor,
    config: Mapping[str, Any],
    change_description: str,
    source: Source | str,
    derived_from: AgentVersion | None = None,
    source_path: str = "",
    commit: Commit | None = None,
) -> AgentVersion:
    """Create the agent's next version; refuse it if nothing changed since the latest.

    `commit` is required for source "git" (and refused for any other): the version
    records its SHA, author, author date and message.
    """
    actor.require("versions.add_agentversion", "create versions")
    normalized = validate_config(config)
    description = validate_change_description(change_description)
    if source not in Source.values:
        raise ValidationError({"source": f"unknown source {source!r}."})
    if (source == Source.GIT) != (commit is not None):
        raise ValidationError(
            {"source": "a version from git needs its commit, and only a version from git has one."}
        )
    if derived_from is not None and derived_from.agent_id != agent.pk:
        raise ValidationError(
            {"derived_from": f"{derived_from} belongs to another agent than {agent.slug}."}
        )
    digest = config_hash(normalized)

    try:
        with transaction.atomic():
            # The agent row lock serialises creators of this agent's versions, so
            # "latest + 1" cannot be read by two transactions at once. NO KEY: rows that
            # only reference the agent (outcome counts) need not wait (see lock_pointer).
            Agent.objects.select_for_update(no_key=True).only("pk").get(pk=agent.pk)
            latest = agent.versions.order_by("-version_number").first()
            if latest is not None and latest.config_hash == digest:
                raise ValidationError(f"no changes compared to v{latest.version_number}.")
            return AgentVersion.objects.create(
                agent=agent,
                version_number=(latest.version_number + 1) if latest else 1,
                config_hash=digest,
                change_description=description,
                source=source,
                source_path=source_path,
                derived_from=derived_from or latest,
                created_by=actor.user,
                created_by_label=actor.label,
                **commit_fields(commit),
                **normalized,
            )
    except IntegrityError as exc:
        # Only reachable if something bypassed the lock (e.g. a hand-written insert).
        raise Conflict(
            f"another version of {agent.slug} was created at the same moment; try again. ({exc})"
        ) from None
