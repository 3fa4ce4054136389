"""Builders for canary tests: real services all the way, with simulated time."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random

from agentconfig.core.actors import Actor
from delivery import runtime
from deployments.models import CanaryRollout, Environment
from deployments.services import outcomes
from deployments.services.canaries import start_canary
from versions.models import AgentVersion

OPS = Actor.system("ops")
_event_ids = itertools.count(1)


def start(version: AgentVersion, environment: Environment, **options: object) -> CanaryRollout:
    """Start a canary of `version` (by ops, with break glass where approvals are needed)."""
    options.setdefault("reason", "try it on a few users")
    options.setdefault("actor", OPS)
    if environment.requires_approval:
        options.setdefault("break_glass", "test setup")
    return start_canary(agent=version.agent, environment=environment, version=version, **options)


def document_for(environment: Environment, agent_slug: str) -> runtime.Document:
    """The runtime document as the endpoint builds it (routing included)."""
    key = runtime.KeyEntry(environment.pk, environment.slug)
    return runtime.build_document(key, agent_slug)


def report(
    environment: Environment,
    agent_slug: str,
    users: list[str],
    error_rates: dict[str, float],
    rng: random.Random,
    at: dt.datetime,
) -> None:
    """Users ask for their config, the runtime answers, and reports how each answer went."""
    document = document_for(environment, agent_slug)
    events = []
    for user in users:
        track, answer = document.for_user(user)
        version_id = _version_id(answer.body)
        events.append(
            {
                "event_id": f"evt-{next(_event_ids)}",
                "version_id": version_id,
                "user_id": user,
                "ok": rng.random() >= error_rates[track],
                "timestamp": at.isoformat(),
            }
        )
    for start_index in range(0, len(events), outcomes.MAX_EVENTS):
        batch = {"events": events[start_index : start_index + outcomes.MAX_EVENTS]}
        parsed = outcomes.parse_events(batch, now=at)
        agent = environment.pointers.get(agent__slug=agent_slug).agent
        outcomes.record_outcomes(agent=agent, environment_id=environment.pk, events=parsed)


def _version_id(body: bytes) -> str:
    return json.loads(body)["version"]["id"]
