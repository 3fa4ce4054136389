"""Overriding a refusing evaluation gate: a reviewer lets one version into one
environment with a reason. The rule it overrides is evaluations.gate.check_gate.

Invariants:
- Needs evaluations.override_gate and a reason; one override per (version, environment)
  (a unique constraint settles a race: the loser gets a Conflict naming the winner's row).
- Only a refusing gate can be overridden; who, when, why and the runs it overrode are kept.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict
from agentconfig.core.reasons import validate_reason
from agentconfig.models import Agent
from deployments.models import Environment
from evaluations.gate import OVERRIDE_PERMISSION, check_gate
from evaluations.models import GateOverride
from versions.models import AgentVersion


def record_gate_override(
    *, agent: Agent, environment: Environment, version: AgentVersion, actor: Actor, reason: str
) -> GateOverride:
    """Let `version` past the refusing gate of `environment`; who, when and why are kept."""
    actor.require(OVERRIDE_PERMISSION, "override the evaluation gate")
    reason = validate_reason(reason)
    version.require_of(agent)
    gate = check_gate(agent=agent, environment=environment, version=version)
    if gate.override is not None:
        raise Conflict(
            f"{version.label} already has an override for {environment.slug}, by "
            f"{gate.override.actor_label} on {gate.override.created_at:%Y-%m-%d %H:%M} UTC."
        )
    if gate.passed:
        raise Conflict(
            f"the gate already lets {version.label} into {environment.slug} "
            f"({gate.title}); no override is needed."
        )
    try:
        with transaction.atomic():
            return GateOverride.objects.create(
                agent=agent,
                environment=environment,
                version=version,
                gate_status=gate.status,
                explanation=gate.explanation,
                candidate_run=gate.candidate_run,
                baseline_run=gate.baseline_run,
                actor=actor.user,
                actor_label=actor.label,
                reason=reason,
            )
    except IntegrityError:
        raise Conflict(
            f"someone else overrode the gate for {version.label} in {environment.slug} at the "
            "same moment; reload to see their reason."
        ) from None
