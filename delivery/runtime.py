"""The runtime endpoint's documents: what (environment, agent) serves, and per-user answers.

Invariants:
- A document is subject-independent (pointer, stable and canary payloads, flag rules);
  the per-user work (canary bucket, flag rules, gated tools) is pure Python over it.
- The stable answer with no applicable flags is serialised once, with its ETag: such a
  request serialises nothing.
- Documents are kept in this process's snapshot (delivery.snapshot), which the change
  feed keeps current; nothing here reads a cache (docs/decisions/0014-runtime-delivery.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentconfig.core.bucketing import bucket
from agentconfig.models import Agent
from deployments.models import Pointer
from flags.evaluation import FlagSnapshot, evaluate_all, filter_tools
from flags.selectors import build_flag_snapshot
from versions.models import AgentVersion

# Distinct flag outcomes kept per document (a few per flag in practice; bounded anyway).
MAX_ANSWERS_PER_DOCUMENT = 512


@dataclass(frozen=True)
class KeyEntry:
    """What a key may do: its environment, its agents (empty: all) and capabilities."""

    environment_id: int
    environment_slug: str
    agent_ids: frozenset[int] = frozenset()
    agent_slugs: frozenset[str] = frozenset()
    can_read: bool = True
    can_report: bool = True

    def serves(self, agent_slug: str) -> bool:
        """Whether the key is scoped to this agent (every agent when it names none)."""
        return not self.agent_slugs or agent_slug in self.agent_slugs


def scope_refusal(key: KeyEntry, agent_slug: str, *, reporting: bool) -> tuple[str, str] | None:
    """(code, message) of the 403 when `key` may not read configs of (or, `reporting`,
    report outcomes for) this agent; None when it may. No I/O: the scope is in the entry."""
    if reporting and not key.can_report:
        return (
            "forbidden_scope",
            "this API key may read configurations but not report outcomes; report with a "
            "key that can (created without --read-only).",
        )
    if not reporting and not key.can_read:
        return (
            "forbidden_scope",
            "this API key may report outcomes but not read configurations; read with a key "
            "that can (created without --report-only).",
        )
    if not key.serves(agent_slug):
        served = ", ".join(sorted(key.agent_slugs))
        return (
            "forbidden_agent",
            f"this API key is limited to {served}, not {agent_slug!r}; use a key of "
            f"{agent_slug!r}'s runtimes, or create one that includes it.",
        )
    return None


@dataclass(frozen=True)
class Variant:
    """One track's answer before flags: the body as data, serialised, and its ETag."""

    payload: dict[str, Any]
    body: bytes
    etag: str


@dataclass(frozen=True)
class Answer:
    """What one request gets: its track, body and ETag."""

    track: str
    body: bytes
    etag: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CanaryRoute:
    salt: str
    basis_points: int
    variant: Variant


@dataclass(frozen=True)
class Document:
    """Everything needed to answer for (environment, agent) without the database.

    The stable answer, plus the canary answer and who gets it while a canary runs; or an
    error (status 404) with its body.
    """

    status: int
    body: bytes
    stable: Variant | None = None
    canary: CanaryRoute | None = None
    flags: FlagSnapshot | None = None
    # Answers by (track, flag resolutions): the document is immutable, so they never go stale.
    _answers: dict[Any, Answer] = field(default_factory=dict, compare=False, repr=False)

    def for_user(self, user_id: str | None) -> tuple[str, Variant]:
        """The track and its answer for this user: sticky canary routing by bucket."""
        canary = self.canary
        if canary is not None and user_id and bucket(canary.salt, user_id) < canary.basis_points:
            return "canary", canary.variant
        if self.stable is None:
            raise ValueError("an error document has no answer")
        return "stable", self.stable

    def answer(self, user_id: str | None, context: Mapping[str, Any]) -> Answer:
        """The full answer for this user and context: routing, then flags and gated tools."""
        track, variant = self.for_user(user_id)
        snapshot = self.flags
        if snapshot is None or not (snapshot.flags or snapshot.tool_gates):
            return Answer(track, variant.body, variant.etag, variant.payload)
        resolutions = evaluate_all(snapshot, user_id, context)
        # Users who resolve alike get the same bytes: serialise each combination once.
        combination = (
            track,
            tuple(
                (key, r.reason, r.variant, r.rule_number, r.error_code, r.error_details)
                for key, r in sorted(resolutions.items())
            ),
        )
        cached = self._answers.get(combination)
        if cached is not None:
            return cached
        config = dict(variant.payload["config"])
        config["tools"] = filter_tools(snapshot, config["tools"], resolutions)
        payload = {
            **variant.payload,
            "config": config,
            "flags": {key: r.as_dict() for key, r in sorted(resolutions.items())},
        }
        body = serialize(payload)
        answer = Answer(track, body, _etag(body), payload)
        if len(self._answers) >= MAX_ANSWERS_PER_DOCUMENT:
            self._answers.clear()
        self._answers[combination] = answer
        return answer


def build_document(key: KeyEntry, agent_slug: str) -> Document:
    """Read the pointer and its version from the database and serialise the answer."""
    pointer = (
        Pointer.objects.select_related("stable_version", "canary__canary_version")
        .filter(environment_id=key.environment_id, agent__slug=agent_slug)
        .first()
    )
    if pointer is None:
        if Agent.objects.filter(slug=agent_slug).exists():
            return error_document(
                404,
                "not_deployed",
                f"agent {agent_slug!r} has no version deployed in {key.environment_slug!r}.",
            )
        return error_document(404, "agent_not_found", f"there is no agent {agent_slug!r}.")
    stable = variant_for(agent_slug, key.environment_slug, "stable", pointer.stable_version)
    canary = None
    if pointer.canary is not None:
        rollout = pointer.canary
        canary = CanaryRoute(
            salt=rollout.salt,
            basis_points=rollout.basis_points,
            variant=variant_for(agent_slug, key.environment_slug, "canary", rollout.canary_version),
        )
    flags = build_flag_snapshot(key.environment_id, pointer.agent_id)
    return Document(200, b"", stable, canary, flags)


def variant_for(
    agent_slug: str, environment_slug: str, track: str, version: AgentVersion
) -> Variant:
    """One track's body for `version`, serialised with its ETag (flags are added per user)."""
    body = {
        "agent": agent_slug,
        "environment": environment_slug,
        "track": track,
        "version": {
            "number": version.version_number,
            "id": str(version.id),
            "config_hash": version.config_hash,
            "created_at": version.created_at.isoformat(),
        },
        "config": version.config,
        "flags": {},
    }
    payload = serialize(body)
    return Variant(body, payload, _etag(payload))


def _etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()[:40]}"'


def serialize(body: Any) -> bytes:
    """Sorted keys, so equal bodies are equal bytes and the ETag follows the body."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(code: str, message: str) -> bytes:
    return serialize({"error": {"code": code, "message": message}})


def error_document(status: int, code: str, message: str) -> Document:
    return Document(status, error_body(code, message))
