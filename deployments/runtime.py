"""The runtime endpoint's read path: API-key lookup and the cached config document.

Invariants:
- On a warm cache a request makes no database query: the key entry and the document
  both come from the cache (CACHE_URL; Redis in production, shared by every process).
- A deploy or rollback is visible on the next request in every process: each agent
  has a generation number in the cache, bumped after the change commits; documents
  are stored under their generation, so a reader that raced with a deploy can only
  fill a generation nobody reads any more (docs/decisions/0004-runtime-cache.md).
- A revoked key is refused on the next request: revocation overwrites the key's
  cache entry with a tombstone, and readers fill entries only with cache.add(), so a
  racing reader cannot put the old "active" entry back.
- A warm request costs one shared-cache round trip (key entry + generation); the
  document itself comes from a per-process copy keyed by its generation.
- Cache failures are treated as misses: the database answers; if it cannot, the view
  answers 503, never a default config.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from agentconfig.bucketing import bucket
from agentconfig.caching import LocalCopies, cache_add, cache_get, cache_get_many
from agentconfig.models import Agent
from deployments.models import ApiKey, Pointer
from flags.evaluation import FlagSnapshot, evaluate_all, filter_tools
from flags.selectors import build_flag_snapshot
from versions.models import AgentVersion

logger = logging.getLogger(__name__)

PREFIX = "agentconfig:rt:1"
KEY_FORMAT = re.compile(r"^acfg_([0-9a-f]{12})_[A-Za-z0-9_-]{20,100}$")
MISSING_KEY_TTL = 10
# Compared against when no key matches, so an unknown key costs the same as a wrong one.
_DUMMY_HASH = hashlib.sha256(b"agentconfig-no-such-key").hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    environment_id: int
    environment_slug: str


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
        config = dict(variant.payload["config"])
        config["tools"] = filter_tools(snapshot, config["tools"], resolutions)
        payload = {
            **variant.payload,
            "config": config,
            "flags": {key: r.as_dict() for key, r in sorted(resolutions.items())},
        }
        body = serialize(payload)
        return Answer(track, body, _etag(body), payload)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def key_id_of(raw_key: str) -> str | None:
    match = KEY_FORMAT.match(raw_key)
    return match.group(1) if match else None


# --- cache keys and invalidation -------------------------------------------------


def _key_entry_key(key_id: str) -> str:
    return f"{PREFIX}:key:{key_id}"


# A document depends on its agent (pointer, versions, canary) and on the flags; each has
# a generation, and a document is stored under both.
FLAGS_SCOPE = "flags"
Generations = tuple[int, int]


def _generation_key(scope: str) -> str:
    return f"{PREFIX}:gen:{scope}"


def _agent_scope(agent_slug: str) -> str:
    return f"agent:{agent_slug}"


def _document_key(environment_id: int, agent_slug: str, generations: Generations) -> str:
    agent_generation, flags_generation = generations
    return f"{PREFIX}:doc:{environment_id}:{agent_slug}:{agent_generation}.{flags_generation}"


def invalidate_agent(agent_slug: str) -> None:
    """Make every process rebuild this agent's documents on their next request."""
    _bump(_generation_key(_agent_scope(agent_slug)))


def invalidate_flags() -> None:
    """Make every process rebuild every document (flags can be global) on its next request."""
    _bump(_generation_key(FLAGS_SCOPE))


def _bump(key: str) -> None:
    try:
        try:
            cache.incr(key)
        except ValueError:  # no generation yet (or evicted): start a fresh, unique one
            cache.set(key, time.time_ns(), None)
    except Exception:
        # The document TTL bounds how long a lost invalidation can last.
        logger.exception("could not invalidate the runtime cache (%s)", key)


def mark_key_revoked(key_id: str) -> None:
    """Overwrite the key's cache entry so the next request is refused (see module doc)."""
    try:
        cache.set(_key_entry_key(key_id), {"revoked": True}, None)
    except Exception:
        # The revocation is committed; a cached "active" entry lives at most
        # AGENTCONFIG_RUNTIME_CACHE_TTL seconds. Failing the request now would not help.
        logger.exception("could not mark API key %s revoked in the cache", key_id)


def forget_key(key_id: str) -> None:
    """Drop a cached 'no such key' answer after the key is created."""
    try:
        cache.delete(_key_entry_key(key_id))
    except Exception:
        logger.exception("could not clear the cache entry of API key %s", key_id)


# --- the read path -------------------------------------------------------------


def lookup(raw_key: str, agent_slug: str) -> tuple[KeyEntry | None, Generations]:
    """The key's environment (None if unknown or revoked) and the document's generations.

    One cache round trip on a warm cache; the database only for a cold key entry.
    """
    key_id = key_id_of(raw_key)
    if key_id is None:
        hmac.compare_digest(hash_key(raw_key), _DUMMY_HASH)
        return None, (0, 0)
    entry_key = _key_entry_key(key_id)
    agent_key = _generation_key(_agent_scope(agent_slug))
    flags_key = _generation_key(FLAGS_SCOPE)
    cached = cache_get_many([entry_key, agent_key, flags_key])
    generation = (
        cached.get(agent_key) or _start_generation(agent_key),
        cached.get(flags_key) or _start_generation(flags_key),
    )
    entry = cached.get(entry_key)
    if entry is None:
        entry = _load_key_entry(key_id)
        ttl = MISSING_KEY_TTL if entry.get("missing") else settings.AGENTCONFIG_RUNTIME_CACHE_TTL
        cache_add(entry_key, entry, ttl)
    expected = entry.get("hash", _DUMMY_HASH)
    matches = hmac.compare_digest(hash_key(raw_key), expected)
    if not matches or entry.get("revoked") or entry.get("missing"):
        return None, generation
    return KeyEntry(entry["environment_id"], entry["environment_slug"]), generation


# Documents never change within a generation: see agentconfig.caching.LocalCopies.
local_documents: LocalCopies[Document] = LocalCopies(max_entries=1024)


def _start_generation(key: str) -> int:
    """Create a missing generation (first use, or evicted); another process may win."""
    cache_add(key, time.time_ns(), None)
    return cache_get(key) or time.time_ns()


def get_document(key: KeyEntry, agent_slug: str, generations: Generations) -> Document:
    """The config document for this environment and agent, from the cache or built once."""
    doc_key = _document_key(key.environment_id, agent_slug, generations)
    document = local_documents.get(doc_key)
    if document is not None:
        return document
    document = cache_get(doc_key)
    if document is None:
        document = build_document(key, agent_slug)
        cache_add(doc_key, document, settings.AGENTCONFIG_RUNTIME_CACHE_TTL)
    local_documents.put(doc_key, document, settings.AGENTCONFIG_RUNTIME_CACHE_TTL)
    return document


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


def _load_key_entry(key_id: str) -> dict[str, Any]:
    key = ApiKey.objects.select_related("environment").filter(key_id=key_id).first()
    if key is None:
        return {"missing": True}
    return {
        "hash": key.key_hash,
        "environment_id": key.environment_id,
        "environment_slug": key.environment.slug,
        "revoked": key.revoked_at is not None,
    }
