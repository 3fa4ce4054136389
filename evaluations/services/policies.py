"""The evaluation gate's settings per environment (EvaluationPolicy), governed.

Whether a release must pass evaluation, and how strictly, governs releases as much as
required approvals do (deployments.services.environments), so it changes the same way.

Invariants:
- Only administrators change a policy: the service checks evaluations.change_evaluationpolicy
  (and add_evaluationpolicy for an environment's first one), which no other role holds.
- Every change carries a reason and writes its AuditRecord (EVALUATION_POLICY) with the
  values before and after, in the change's own transaction; a refusal writes nothing.
- The environment row is locked while its policy is read and written, so two changes
  serialise; what the person saw (`expected_state`) is checked under that lock.
- A policy names the environment variable that holds an API key, never a key, and only
  one of EVAL_API_KEY_NAMES; its base URL passes agentconfig.core.outbound.check_url.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentconfig.core.actors import Actor
from agentconfig.core.reasons import validate_reason
from agentconfig.models import AuditAction
from deployments.models import Environment
from deployments.services.environments import (
    fingerprint,
    policy_state,
    policy_values,
    save_policy,
)
from evaluations.models import EvaluationPolicy

ADD_POLICY_PERMISSION = "evaluations.add_evaluationpolicy"
POLICY_PERMISSION = "evaluations.change_evaluationpolicy"
POLICY_FIELDS = (
    "required",
    "tolerance",
    "suite_slug",
    "base_url",
    "api_key_env",
    "judge_model",
    "judge_prompt",
)
_TEXT_FIELDS = ("suite_slug", "base_url", "api_key_env", "judge_model")


def evaluation_policy_values(policy: EvaluationPolicy) -> dict[str, Any]:
    """A policy's settings, as data (audit records, fingerprints)."""
    return policy_values(policy, POLICY_FIELDS)


def evaluation_policy_state(environment: Environment) -> str:
    """The fingerprint of the environment's saved policy ({} when none is saved)."""
    return policy_state(EvaluationPolicy, POLICY_FIELDS, environment)


NO_POLICY_STATE = fingerprint({})


def set_evaluation_policy(
    *,
    environment: Environment,
    values: Mapping[str, Any],
    actor: Actor,
    reason: str,
    expected_state: str | None = None,
) -> EvaluationPolicy:
    """Save the environment's evaluation policy (created if none was saved), with a reason.

    Fields missing from `values` keep their value; `expected_state` is
    evaluation_policy_state() as the person saw it.
    """
    actor.require(POLICY_PERMISSION, "change evaluation policies")
    reason = validate_reason(reason)
    unknown = sorted(set(values) - set(POLICY_FIELDS))
    if unknown:
        raise TypeError(f"set_evaluation_policy: unknown fields {unknown}")
    # save_policy runs the model's validators and clean(): tolerance 0-1, a suite slug, a
    # base URL that agentconfig.core.outbound.check_url accepts (https, public addresses),
    # and a key variable from EVAL_API_KEY_NAMES, never any other variable of the worker.
    # With no policy saved, no environment gated on evaluation (its state is {}).
    return save_policy(
        EvaluationPolicy,
        fields=POLICY_FIELDS,
        environment=environment,
        values={field: _normalised(field, value) for field, value in values.items()},
        actor=actor,
        reason=reason,
        expected_state=expected_state,
        add_permission=ADD_POLICY_PERMISSION,
        action=AuditAction.EVALUATION_POLICY,
    )


def _normalised(field: str, value: Any) -> Any:
    if field in _TEXT_FIELDS:
        return (value or "").strip()
    if field == "judge_prompt":
        return (value or "").replace("\r\n", "\n")
    return value
