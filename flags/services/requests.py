"""Flag changes as change requests: proposing, what they do to runtimes, and applying.

The request mechanics (reviews, N approvals, stale approvals, never by the requester) are
deployments.services.requests'; this module is the subject of requests of kind "flag": it validates
a proposed change exactly as the flag service will, fingerprints the flag's state, says in
words what the change does to runtimes, and applies it through the flag service.

Invariants:
- A proposal is validated by the same code the service runs (flags.models clean, the rule
  schema, the permission for the operation): what was approved is what can be applied.
- `describe` never writes; its "who is affected" figures come from evaluating the flag
  before and after for a fixed sample of user ids with no attributes (pure evaluation),
  and it says so: rules on attributes are shown as rules, not guessed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from django.core.exceptions import ValidationError

from agentconfig.core.actors import Actor
from agentconfig.core.errors import NotFound
from agentconfig.models import Agent
from deployments.models import DeploymentRequest, Environment, RequestKind
from deployments.services.requests import propose_change
from flags import evaluation
from flags import rules as schema
from flags.approvals import (
    APPLY_PERMISSION,
    ApprovalRequired,
    environments_of,
    flag_state,
    request_environment,
)
from flags.evaluation import FlagSnapshot
from flags.models import Flag, FlagEnvironment, ToolGate
from flags.selectors import build_flag_snapshot, compile_flag_state
from flags.services import flags as flag_services

SAMPLE_USERS = 10_000
_PERMISSIONS = {
    "set_rules": flag_services.CHANGE_PERMISSION,
    "set_enabled": flag_services.CHANGE_PERMISSION,
    "set_variants": flag_services.CHANGE_PERMISSION,
    "delete_flag": flag_services.DELETE_PERMISSION,
    "create_gate": flag_services.ADD_GATE_PERMISSION,
    "delete_gate": flag_services.DELETE_GATE_PERMISSION,
}


def propose_flag_change(
    *, required: ApprovalRequired, actor: Actor, reason: str
) -> DeploymentRequest:
    """Open the change request a refused flag change asked for (the refusal names it)."""
    return propose_change(
        kind=RequestKind.FLAG,
        environment=required.environment,
        proposal={"change": required.change},
        actor=actor,
        reason=reason,
    )


class FlagChangeSubject:
    """The subject of requests of kind "flag" (registered in flags.apps)."""

    apply_permission = APPLY_PERMISSION

    def prepare(
        self, *, environment: Environment, proposal: dict[str, Any], actor: Actor
    ) -> tuple[dict[str, Any], Agent | None]:
        change = dict(proposal.get("change") or {})
        operation = change.get("op")
        if operation not in _PERMISSIONS:
            raise ValidationError({"change": f"unknown flag operation {operation!r}."})
        actor.require(_PERMISSIONS[operation], f"propose this change ({operation})")
        flag = _flag(change)
        _validate(flag, change)
        if request_environment(environments_of(change)).pk != environment.pk:
            raise ValidationError(
                {
                    "environment": "a flag change is judged in the environment it reaches (the "
                    "strictest one for a change to every environment)."
                }
            )
        agent = _agent_of(flag, change)
        return {"change": change, "summary": summary(change)}, agent

    def lock(self, request: DeploymentRequest) -> str:
        flag = _flag(request.proposal["change"], lock=True)
        return flag_state(flag)

    def apply(self, request: DeploymentRequest, actor: Actor, reason: str) -> Any:
        change = request.proposal["change"]
        flag = _flag(change)
        operation = change["op"]
        if operation == "set_rules":
            return flag_services.set_flag_rules(
                flag=flag,
                environment=Environment.objects.get(slug=change["environment"]),
                actor=actor,
                rules=change["rules"],
                default_variant=change["default_variant"],
                off_variant=change["off_variant"],
                reason=reason,
                request=request,
            )
        if operation == "set_enabled":
            return flag_services.set_flag_enabled(
                flag=flag,
                environment=Environment.objects.get(slug=change["environment"]),
                enabled=change["enabled"],
                actor=actor,
                reason=reason,
                request=request,
            )
        if operation == "set_variants":
            return flag_services.update_flag(
                flag=flag,
                actor=actor,
                description=flag.description,
                owner=flag.owner,
                variants=change["variants"],
                reason=reason,
                request=request,
            )
        if operation == "delete_flag":
            return flag_services.delete_flag(flag=flag, actor=actor, request=request)
        agent = Agent.objects.get(slug=change["agent"])
        if operation == "create_gate":
            return flag_services.create_tool_gate(
                agent=agent,
                tool_name=change["tool"],
                flag=flag,
                actor=actor,
                reason=reason,
                request=request,
            )
        gate = ToolGate.objects.select_related("agent", "flag").get(
            agent=agent, tool_name=change["tool"], flag=flag
        )
        return flag_services.delete_tool_gate(
            gate=gate, actor=actor, reason=reason, request=request
        )

    def describe(self, request: DeploymentRequest) -> list[str]:
        return describe_change(request.proposal["change"])


def summary(change: dict[str, Any]) -> str:
    """One line: what the change is."""
    key, operation = change["flag"], change["op"]
    if operation == "set_rules":
        return f"new rules for {key} in {change['environment']}"
    if operation == "set_enabled":
        return f"turn {key} {'on' if change['enabled'] else 'off'} in {change['environment']}"
    if operation == "set_variants":
        return f"new variant values for {key}"
    if operation == "delete_flag":
        return f"delete the flag {key}"
    verb = "gate" if operation == "create_gate" else "ungate"
    return f"{verb} {change['tool']} of {change['agent']} behind {key}"


def describe_change(change: dict[str, Any]) -> list[str]:
    """What `change` does to runtimes, in words: one line per environment it reaches."""
    flag = _flag(change)
    lines = [summary(change)[0].upper() + summary(change)[1:] + "."]
    if change["op"] == "set_rules":
        lines.append("Rules after: " + _rules_text(change["rules"]))
        lines.append(
            f"Served when no rule matches: {change['default_variant']}; while off: "
            f"{change['off_variant']}."
        )
    if change["op"] == "set_variants":
        lines.append(
            "Values after: "
            + ", ".join(
                f"{v['name']} = {json.dumps(v['value'], ensure_ascii=False)}"
                for v in change["variants"]
            )
        )
    agents = _agents_affected(flag, change)
    for environment in environments_of(change):
        for agent in agents:
            before = build_flag_snapshot(environment.pk, agent.pk if agent else None)
            after = _apply_to_snapshot(before, flag, change, environment)
            lines.extend(_impact(before, after, flag.key, environment, agent))
    lines.append(
        f"Figures are for {SAMPLE_USERS:,} sample users without attributes; rules that test "
        "attributes apply as written above."
    )
    return lines


# --- internals --------------------------------------------------------------------------


def _flag(change: dict[str, Any], *, lock: bool = False) -> Flag:
    flags = Flag.objects.select_for_update() if lock else Flag.objects
    flag = flags.filter(key=change.get("flag", "")).first()
    if flag is None:
        raise NotFound(f"there is no flag {change.get('flag')!r}.")
    return flag


def _agent_of(flag: Flag, change: dict[str, Any]) -> Agent | None:
    if "agent" in change:
        return Agent.objects.filter(slug=change["agent"]).first()
    return flag.agent


def _validate(flag: Flag, change: dict[str, Any]) -> None:
    """The checks the service makes before it writes, without writing."""
    operation = change["op"]
    if operation == "set_rules":
        environment = Environment.objects.get(slug=change["environment"])
        state = FlagEnvironment(
            flag=flag,
            environment=environment,
            rules=change.get("rules"),
            default_variant=change.get("default_variant", ""),
            off_variant=change.get("off_variant", ""),
        )
        state.full_clean(exclude=["flag", "environment", "updated_by_label"])
        change["rules"] = state.rules  # canonical, as the service stores them
    elif operation == "set_enabled":
        if not isinstance(change.get("enabled"), bool):
            raise ValidationError({"enabled": "must be true or false."})
    elif operation == "set_variants":
        candidate = Flag(
            key=flag.key, kind=flag.kind, agent=flag.agent, variants=change.get("variants")
        )
        candidate.full_clean(exclude=["created_by_label", "updated_by_label", "key"])
        flag_services.check_variants_in_use(flag, schema.variant_names(candidate.variants))
    elif (
        operation in ("create_gate", "delete_gate")
        and not Agent.objects.filter(slug=change.get("agent", "")).exists()
    ):
        raise ValidationError({"agent": f"there is no agent {change.get('agent')!r}."})


def _agents_affected(flag: Flag, change: dict[str, Any]) -> list[Agent | None]:
    """The agents whose answers can change: the gate's, the flag's, or every gated one."""
    if "agent" in change:
        return [Agent.objects.get(slug=change["agent"])]
    if flag.agent is not None:
        return [flag.agent]
    gated: list[Agent | None] = list(Agent.objects.filter(tool_gates__flag=flag).distinct())
    return gated or [None]


def _apply_to_snapshot(
    before: FlagSnapshot, flag: Flag, change: dict[str, Any], environment: Environment
) -> FlagSnapshot:
    """The snapshot as it would be after `change` (pure: nothing is written)."""
    operation = change["op"]
    flags = dict(before.flags)
    gates = dict(before.tool_gates)
    state = FlagEnvironment.objects.filter(flag=flag, environment=environment).first()
    columns: list[Any] = (
        [state.enabled, state.off_variant, state.default_variant, state.rules]
        if state is not None
        else [False, flag.initial_variants[1], flag.initial_variants[0], []]
    )
    variants = flag.variants
    if operation == "set_rules":
        columns[1:] = [change["off_variant"], change["default_variant"], change["rules"]]
    elif operation == "set_enabled":
        columns[0] = change["enabled"]
    elif operation == "set_variants":
        variants = change["variants"]
    if operation == "delete_flag":
        flags.pop(flag.key, None)
    else:
        flags[flag.key] = compile_flag_state(flag.key, flag.kind, variants, *columns)
    if operation == "create_gate":
        gates[change["tool"]] = flag.key
    elif operation == "delete_gate":
        gates.pop(change["tool"], None)
    return replace(before, flags=flags, tool_gates=gates)


def _impact(
    before: FlagSnapshot,
    after: FlagSnapshot,
    key: str,
    environment: Environment,
    agent: Agent | None,
) -> list[str]:
    """How many sample users get another value, and lose or gain each tool gated by it."""
    tools = sorted(
        {t for t, k in before.tool_gates.items() if k == key}
        | {t for t, k in after.tool_gates.items() if k == key}
    )
    old_state, new_state = before.flags.get(key), after.flags.get(key)
    changed_value = 0
    lose: dict[str, int] = dict.fromkeys(tools, 0)
    gain: dict[str, int] = dict.fromkeys(tools, 0)
    for number in range(SAMPLE_USERS):
        user = f"sample-user-{number}"
        old = {key: evaluation.evaluate(old_state, user, {})} if old_state else {}
        new = {key: evaluation.evaluate(new_state, user, {})} if new_state else {}
        old_value = old[key].value if old else None
        new_value = new[key].value if new else None
        changed_value += old_value != new_value
        if tools:
            old_tools = set(evaluation.filter_tools(before, tools, old))
            new_tools = set(evaluation.filter_tools(after, tools, new))
            for tool in old_tools - new_tools:
                lose[tool] += 1
            for tool in new_tools - old_tools:
                gain[tool] += 1
    where = environment.slug + (f" ({agent.slug})" if agent is not None else "")
    lines = []
    if changed_value or not tools:
        lines.append(
            f"{where}: {changed_value:,} of {SAMPLE_USERS:,} users get a different value of {key}."
        )
    for tool in tools:
        if lose[tool]:
            lines.append(f"{where}: {lose[tool]:,} of {SAMPLE_USERS:,} users lose the tool {tool}.")
        if gain[tool]:
            lines.append(f"{where}: {gain[tool]:,} of {SAMPLE_USERS:,} users gain the tool {tool}.")
        if not lose[tool] and not gain[tool]:
            lines.append(f"{where}: nobody's {tool} changes.")
    return lines


def _rules_text(rules: list[dict[str, Any]]) -> str:
    if not rules:
        return "none."
    return " · ".join(
        f"{number}. {json.dumps(rule, ensure_ascii=False, sort_keys=True)}"
        for number, rule in enumerate(rules, start=1)
    )


def ensure_registered() -> None:
    """Register the subject (flags.apps.ready)."""
    from deployments.services.requests import register_subject

    register_subject(RequestKind.FLAG, FlagChangeSubject())
