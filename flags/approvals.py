"""Whether a flag change may go ahead now: approvals, and what the kill switch protects.

The one rule for every change that reaches runtimes (docs/decisions/0015-safer-changes.md):
in an environment that requires approval, a flag change is applied only with an approved
change request for exactly that change (deployments.services.requests, kind "flag"); elsewhere it
applies at once. The flag services call `clear_flag_change` under the flag's lock.

Invariants:
- A change is described by a plain dict (`change`): the operation, the flag's key and
  its arguments, canonical, so the request stores exactly what will be applied and the
  service can check that what it is asked to apply is what was approved.
- Per-environment changes (rules, on/off) concern their environment. A change to what the
  flag serves everywhere (variants, tool gates, deleting the flag) concerns every
  environment: its request targets the strictest one (most required approvals).
- Approvals count only while the flag's whole state is the one they saw (`flag_state`).
- The kill switch (turning a flag off, with its permission and a reason) never needs an
  approval; what it did — the flag off, the variant served while off — can be undone only
  by someone who may use the kill switch.
"""

from __future__ import annotations

from typing import Any

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Forbidden, ServiceError
from deployments.approvals import BREAK_GLASS_PERMISSION, check_change_request
from deployments.models import DeploymentRequest, Environment, RequestKind
from deployments.services.environments import fingerprint
from flags.models import Flag, FlagEnvironment, ToolGate

KILL_SWITCH_PERMISSION = "flags.kill_switch"
# Applying an approved change request is a release, whoever wrote the change: deployers.
APPLY_PERMISSION = "deployments.deploy_version"
# Operations that concern one environment; every other one concerns all of them.
ENVIRONMENT_OPERATIONS = ("set_rules", "set_enabled")


class ApprovalRequired(Forbidden):
    """The change needs an approved request in `environment`; `change` is what to propose."""

    def __init__(self, message: str, *, change: dict[str, Any], environment: Environment) -> None:
        super().__init__(message)
        self.change = change
        self.environment = environment


def permit(actor: Actor, permission: str, action: str, request: DeploymentRequest | None) -> None:
    """The permission a flag service needs: the operation's own, or, when it applies an
    approved change request, the permission to apply requests (the approval covers the
    change itself, as a deployer applies an editor's approved deployment)."""
    if request is None:
        actor.require(permission, action)
    else:
        actor.require(APPLY_PERMISSION, "apply approved change requests")


def flag_state(flag: Flag) -> str:
    """A fingerprint of everything about `flag` that runtimes receive (two queries)."""
    states = FlagEnvironment.objects.filter(flag=flag).order_by("environment_id")
    data = {
        "variants": flag.variants,
        "states": [
            [
                s.environment_id,
                s.enabled,
                s.off_variant,
                s.default_variant,
                s.rules,
                bool(s.killed_at),
            ]
            for s in states
        ],
        "gates": sorted(ToolGate.objects.filter(flag=flag).values_list("agent_id", "tool_name")),
    }
    return fingerprint(data)


def environments_of(change: dict[str, Any]) -> list[Environment]:
    """The environments whose runtimes `change` reaches."""
    if change["op"] in ENVIRONMENT_OPERATIONS:
        return [Environment.objects.get(slug=change["environment"])]
    return list(Environment.objects.all())


def request_environment(environments: list[Environment]) -> Environment:
    """The environment a request for a change to all of `environments` is judged in."""
    return max(environments, key=lambda e: (e.required_approvals, e.position, e.slug))


def clear_flag_change(
    *,
    flag: Flag,
    change: dict[str, Any],
    actor: Actor,
    request: DeploymentRequest | None,
    break_glass: str = "",
) -> str:
    """Refuse unless `change` may be applied now (caller holds the flag's lock).

    Returns what the history row should add to the reason ("" or the break-glass note).
    """
    environments = environments_of(change)
    needing = [e for e in environments if e.requires_approval]
    if break_glass.strip() and needing:
        # An emergency skips review, as for deploys; the history and the audit say so.
        actor.require(BREAK_GLASS_PERMISSION, "break the glass")
        return f"Break glass: {break_glass.strip()}"
    if request is not None:
        check_change_request(
            request,
            kind=RequestKind.FLAG,
            environment=request_environment(environments),
            state=flag_state(flag),
        )
        if request.proposal.get("change") != change:
            raise ServiceError(
                f"request #{request.pk} approved another change to {flag.key!r}; apply it as "
                "it is, or open a new request for this one."
            )
        return f"Request #{request.pk}"
    if needing:
        strictest = request_environment(needing)
        approvals = strictest.required_approvals
        raise ApprovalRequired(
            f"{strictest.slug} requires {approvals} approval{'s' if approvals != 1 else ''} "
            f"for changes that reach its runtimes: open a change request for this change to "
            f"{flag.key!r} (the flag page does it for you when you give a reason); a "
            "reviewer approves it and it is applied as approved. To switch a flag off at "
            "once, use the kill switch.",
            change=change,
            environment=strictest,
        )
    return ""


def require_kill_switch_to_undo(
    state: FlagEnvironment, actor: Actor, *, turns_on: bool, off_variant: str | None
) -> None:
    """While the kill switch holds `state`, only its permission may undo what it did."""
    if state.killed_at is None:
        return
    undoes = turns_on or (off_variant is not None and off_variant != state.off_variant)
    if undoes:
        actor.require(
            KILL_SWITCH_PERMISSION,
            f"undo the kill switch on {state.flag.key!r} in {state.environment.slug} "
            f"(pulled by {state.killed_by_label})",
        )
