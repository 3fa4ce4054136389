"""Diffs of stored versions for templates: compare ranges, aliases and the include's context.

versions.diff computes differences of plain configurations; this module connects it to
stored versions and to the templates:
- `resolve_compare_range(agent, "previous...5")` reads the `<a>...<b>` of a compare URL,
  where a and b are version numbers (`3` or `v3`) or aliases: `latest`, `previous` (left
  side only: the version the right-hand one was based on) and `active@<environment>`.
- `build_diff_context(old_version, new_version)` is the context of
  templates/admin/agentconfig/includes/version_diff.html, which any page can include to
  show "what this will change" (deploy, rollback and request confirmations).

Invariants:
- Read-only: nothing here writes. An unknown version, alias, environment or agent raises
  agentconfig.core.errors.NotFound with a message that says what exists and how to write it.
- Every value reaches the page through a template with autoescaping; nothing is marked safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from agentconfig.core.errors import NotFound
from agentconfig.models import Agent
from deployments.models import Environment
from deployments.selectors import get_environment, get_pointer
from versions.diff import ConfigDiff, diff_configs
from versions.models import AgentVersion
from versions.selectors import get_latest_version, get_version

RANGE_SEPARATOR = "..."
ACTIVE_PREFIX = "active@"
REF_HELP = "a version number (3 or v3), latest, previous (on the left) or active@<environment>"
# PostgreSQL integers stop here; a longer number is no version and must not reach the query.
MAX_VERSION_NUMBER = 2**31 - 1
_NUMBER = re.compile(r"^v?([0-9]{1,12})$")


@dataclass(frozen=True)
class VersionDiff:
    """Two versions of one agent and what changed between them (old may be None: nothing)."""

    old: AgentVersion | None
    new: AgentVersion
    diff: ConfigDiff
    compare_url: str | None

    @property
    def old_label(self) -> str:
        return self.old.label if self.old else "nothing"


def build_diff_context(
    old_version: AgentVersion | None, new_version: AgentVersion
) -> dict[str, Any]:
    """{"version_diff": VersionDiff} for includes/version_diff.html; old None = first deploy."""
    diff = diff_configs(old_version.config if old_version else {}, new_version.config)
    compare_url = None
    if old_version is not None:
        compare_url = compare_url_for(
            new_version.agent, f"{old_version.version_number}", f"{new_version.version_number}"
        )
    return {"version_diff": VersionDiff(old_version, new_version, diff, compare_url)}


def compare_url_for(agent: Agent, old_ref: str, new_ref: str) -> str:
    """/admin/versions/agentversion/compare/<slug>/<old_ref>...<new_ref>/"""
    return reverse(
        "admin:versions_agentversion_compare",
        args=[agent.slug, f"{old_ref}{RANGE_SEPARATOR}{new_ref}"],
    )


def resolve_compare_range(agent: Agent, spec: str) -> tuple[AgentVersion, AgentVersion]:
    """The (old, new) versions named by `<a>...<b>`; NotFound saying what is wrong."""
    old_ref, separator, new_ref = spec.partition(RANGE_SEPARATOR)
    if not separator or not old_ref or not new_ref or RANGE_SEPARATOR in new_ref:
        raise NotFound(
            f"{spec!r} is not a comparison. Write <a>...<b> with three dots, for example "
            f"1...2 or previous...5, where a and b are {REF_HELP}."
        )
    new = resolve_version_ref(agent, new_ref)
    old = resolve_version_ref(agent, old_ref, relative_to=new)
    return old, new


def resolve_version_ref(
    agent: Agent, ref: str, *, relative_to: AgentVersion | None = None
) -> AgentVersion:
    """The version `ref` names (see the module docstring); `previous` needs `relative_to`."""
    ref = ref.strip()
    number = _NUMBER.match(ref)
    if number:
        if int(number[1]) > MAX_VERSION_NUMBER:
            raise NotFound(f"agent {agent.slug!r} has no version {ref}.")
        return get_version(agent, int(number[1]))
    if ref == "latest":
        latest = get_latest_version(agent)
        if latest is None:
            raise NotFound(f"agent {agent.slug!r} has no versions yet.")
        return latest
    if ref == "previous":
        return _previous(agent, relative_to)
    if ref.startswith(ACTIVE_PREFIX):
        return _active(agent, ref.removeprefix(ACTIVE_PREFIX))
    if ref == "active":
        raise NotFound(
            f"'active' needs an environment: write {_active_examples()} "
            f"(active in which environment?)."
        )
    raise NotFound(f"{ref!r} is not a version of {agent.slug}: use {REF_HELP}.")


def _previous(agent: Agent, relative_to: AgentVersion | None) -> AgentVersion:
    if relative_to is None:
        raise NotFound(
            "'previous' means the version before the right-hand one, so it goes on the "
            "left: previous...5."
        )
    base = relative_to.derived_from
    # create_version records the version each new one was based on; it is the previous one
    # unless two people edited at once (then it is what its author actually changed).
    if base is not None and base.agent_id == agent.pk:
        return base
    if relative_to.version_number == 1:
        raise NotFound(f"{agent.slug} v1 is its first version: there is nothing before it.")
    return get_version(agent, relative_to.version_number - 1)


def _active(agent: Agent, environment_slug: str) -> AgentVersion:
    environment = get_environment(environment_slug)
    pointer = get_pointer(agent, environment)
    if pointer is None:
        raise NotFound(
            f"{agent.slug} is not deployed in {environment.slug}, so nothing is active there."
        )
    return pointer.stable_version


def _active_examples() -> str:
    slugs = list(Environment.objects.values_list("slug", flat=True)[:5])
    return " or ".join(f"{ACTIVE_PREFIX}{slug}" for slug in slugs) or f"{ACTIVE_PREFIX}production"
