"""Writes of flags, their per-environment state and tool gates. Every entry point calls these.

Invariants:
- Each service checks the actor's permission and validates everything before it writes;
  a refused call writes nothing.
- Each write happens in one transaction under a lock on the flag row, so two editors of
  one flag serialise and every history row describes a state that really existed.
- Every write records who (history user and updated_by_label) and, where given, why
  (the FlagEnvironment's change_reason, kept in its history row).
- Every write records its change-feed row in its own transaction (agentconfig.core.change_feed),
  so every server process serves it within AGENTCONFIG_REFRESH_INTERVAL.
- In an environment that requires approval, a change that reaches its runtimes applies
  only with an approved change request for exactly that change (flags.approvals), checked
  under the flag's lock; the kill switch never waits for one.
- Nothing here uses QuerySet.update() or bulk writes: they would skip the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentconfig.core.actors import Actor
from agentconfig.core.change_feed import record_change
from agentconfig.core.errors import Conflict
from agentconfig.core.reasons import validate_reason
from agentconfig.models import Agent, ChangeTopic
from deployments.models import DeploymentRequest, Environment
from flags import rules as schema
from flags.approvals import (
    KILL_SWITCH_PERMISSION,
    clear_flag_change,
    permit,
    require_kill_switch_to_undo,
)
from flags.models import Flag, FlagEnvironment, FlagKind, ToolGate

ADD_PERMISSION = "flags.add_flag"
CHANGE_PERMISSION = "flags.change_flag"
DELETE_PERMISSION = "flags.delete_flag"
ADD_GATE_PERMISSION = "flags.add_toolgate"
DELETE_GATE_PERMISSION = "flags.delete_toolgate"


# --- flags ----------------------------------------------------------------------------


def create_flag(
    *,
    key: str,
    kind: str,
    actor: Actor,
    description: str = "",
    owner: str = "",
    agent: Agent | None = None,
    variants: list[dict[str, Any]] | None = None,
) -> Flag:
    """Create a flag, off in every environment."""
    actor.require(ADD_PERMISSION, "create flags")
    if kind not in FlagKind.values:
        raise ValidationError({"kind": f"unknown kind {kind!r}; use {', '.join(FlagKind.values)}."})
    flag = Flag(
        key=(key or "").strip(),
        kind=kind,
        description=description.strip(),
        owner=owner.strip(),
        agent=agent,
        variants=variants if variants is not None else schema.default_variants(kind),
        created_by_label=actor.label,
        updated_by_label=actor.label,
    )
    flag.full_clean()
    _attribute(flag, actor, "created")
    try:
        with transaction.atomic():
            flag.save()
            for environment in Environment.objects.all():
                state = _new_state(flag, environment)
                _attribute(state, actor, "created")
                state.save()
            _flags_changed(flag)
    except IntegrityError:
        raise ValidationError({"key": f"a flag with key {flag.key!r} already exists."}) from None
    return flag


def update_flag(
    *,
    flag: Flag,
    actor: Actor,
    description: str,
    owner: str,
    variants: list[dict[str, Any]] | None = None,
    reason: str = "",
    request: DeploymentRequest | None = None,
    break_glass: str = "",
) -> tuple[str, ...]:
    """Set a flag's description, owner and (string/JSON flags) variants; returns what changed.

    Key, kind and scope never change. A variant still used by an environment (as its
    off or default variant, or in a rule) cannot be removed or renamed.
    """
    permit(actor, CHANGE_PERMISSION, "change flags", request)
    reason = validate_reason(reason, required=False)
    with transaction.atomic():
        locked = _lock(flag)
        new_variants = locked.variants if variants is None else variants
        changes = {
            "description": description.strip(),
            "owner": owner.strip(),
            "variants": new_variants,
        }
        changed = tuple(f for f, value in changes.items() if getattr(locked, f) != value)
        if not changed:
            return ()
        for field, value in changes.items():
            setattr(locked, field, value)
        locked.full_clean()
        if "variants" in changed:
            check_variants_in_use(locked, schema.variant_names(locked.variants))
            # The values every environment serves: a change in each of them.
            change = {"op": "set_variants", "flag": locked.key, "variants": locked.variants}
            reason = _clear(locked, change, actor, reason, request, break_glass)
        _attribute(locked, actor, reason or f"changed {', '.join(changed)}")
        locked.save()
        _flags_changed(locked)
    _copy_fields(locked, flag)
    return changed


def check_variants_in_use(flag: Flag, names: Sequence[str]) -> None:
    """ValidationError on 'variants' if an environment still uses a variant not in `names`."""
    problems = []
    for state in FlagEnvironment.objects.filter(flag=flag).select_related("environment"):
        try:
            for field in ("off_variant", "default_variant"):
                if getattr(state, field) not in names:
                    problems.append(
                        f"{state.environment.slug} serves {getattr(state, field)!r} as its "
                        f"{field.replace('_', ' ')}; choose another there first."
                    )
            schema.validate_rules(state.rules, names)
        except schema.RulesError as exc:
            problems.extend(f"{state.environment.slug}: {m}" for m in exc.messages)
    if problems:
        raise ValidationError({"variants": problems})


def delete_flag(
    *, flag: Flag, actor: Actor, request: DeploymentRequest | None = None, break_glass: str = ""
) -> None:
    """Delete a flag and its per-environment states; refused while it gates a tool."""
    permit(actor, DELETE_PERMISSION, "delete flags", request)
    with transaction.atomic():
        locked = _lock(flag)
        gates = [
            f"{g.agent.slug}: {g.tool_name}" for g in locked.tool_gates.select_related("agent")
        ]
        if gates:
            raise Conflict(
                f"flag {locked.key!r} gates the tools {', '.join(gates)}; remove those tool "
                "gates first (deleting the flag would turn the tools on for everyone)."
            )
        # A flag that is off everywhere serves only its off variant, which nothing relied
        # on before it was created: deleting it is as immediate as creating it was.
        note = ""
        if locked.states.filter(enabled=True).exists():
            change = {"op": "delete_flag", "flag": locked.key}
            note = clear_flag_change(
                flag=locked, change=change, actor=actor, request=request, break_glass=break_glass
            )
        for state in locked.states.all():
            _attribute(state, actor, _with_note("flag deleted", note))
            state.delete()
        _flags_changed(locked)
        _attribute(locked, actor, _with_note("deleted", note))
        locked.delete()


# --- per-environment state ----------------------------------------------------------------


def set_flag_rules(
    *,
    flag: Flag,
    environment: Environment,
    actor: Actor,
    rules: Any,
    default_variant: str,
    off_variant: str,
    expected_revision: int | None = None,
    reason: str = "",
    request: DeploymentRequest | None = None,
    break_glass: str = "",
) -> FlagEnvironment:
    """Replace a flag's targeting rules and default/off variants in one environment.

    With `expected_revision`, refuse (Conflict) if someone else changed the state since
    the editor loaded it.
    """
    permit(actor, CHANGE_PERMISSION, "change flag rules", request)
    reason = validate_reason(reason, required=False)
    with transaction.atomic():
        locked, state = _lock_state(flag, environment)
        if expected_revision is not None and state.revision != expected_revision:
            raise Conflict(
                f"the rules of {locked.key!r} in {environment.slug} were changed by "
                f"{state.updated_by_label or 'someone else'} while you were editing; "
                "reload the page to see their change, then apply yours again."
            )
        before = (state.rules, state.default_variant, state.off_variant)
        require_kill_switch_to_undo(state, actor, turns_on=False, off_variant=off_variant)
        state.rules = rules
        state.default_variant = default_variant
        state.off_variant = off_variant
        # Validates and canonicalises the rules (flags.rules); the label is set below.
        state.full_clean(exclude=["flag", "environment", "updated_by_label"])
        after = (state.rules, state.default_variant, state.off_variant)
        if state.pk is not None and before == after:
            return state  # nothing changed: no history row, no invalidation
        change = {
            "op": "set_rules",
            "flag": locked.key,
            "environment": environment.slug,
            "rules": state.rules,
            "default_variant": state.default_variant,
            "off_variant": state.off_variant,
        }
        reason = _clear(locked, change, actor, reason, request, break_glass)
        _record(state, actor, reason, "rules changed")
        state.save()
        _flags_changed(locked, environment)
    return state


def set_flag_enabled(
    *,
    flag: Flag,
    environment: Environment,
    enabled: bool,
    actor: Actor,
    reason: str = "",
    request: DeploymentRequest | None = None,
    break_glass: str = "",
) -> FlagEnvironment:
    """Turn a flag on or off in one environment (with an approved request where needed)."""
    permit(actor, CHANGE_PERMISSION, "turn flags on or off", request)
    reason = validate_reason(reason, required=False)
    return _switch(
        flag,
        environment,
        enabled,
        actor,
        reason,
        "turned on" if enabled else "turned off",
        request=request,
        break_glass=break_glass,
    )


def kill_flag(
    *, flag: Flag, environment: Environment, actor: Actor, reason: str
) -> FlagEnvironment:
    """The kill switch: turn a flag off in one environment now, with a required reason."""
    actor.require(KILL_SWITCH_PERMISSION, "use the kill switch")
    reason = validate_reason(reason, required=True)
    return _switch(
        flag, environment, False, actor, f"Kill switch: {reason}", "kill switch", kill=True
    )


def _switch(
    flag: Flag,
    environment: Environment,
    enabled: bool,
    actor: Actor,
    reason: str,
    summary: str,
    *,
    kill: bool = False,
    request: DeploymentRequest | None = None,
    break_glass: str = "",
) -> FlagEnvironment:
    with transaction.atomic():
        locked, state = _lock_state(flag, environment)
        if state.enabled == enabled:
            raise Conflict(
                f"{locked.key!r} is already {'on' if enabled else 'off'} in {environment.slug}."
            )
        if kill:
            # Safer by definition: no approval, and only its permission can undo it.
            state.killed_at = timezone.now()
            state.killed_by_label = actor.label
        else:
            require_kill_switch_to_undo(state, actor, turns_on=enabled, off_variant=None)
            change = {
                "op": "set_enabled",
                "flag": locked.key,
                "environment": environment.slug,
                "enabled": enabled,
            }
            reason = _clear(locked, change, actor, reason, request, break_glass)
            if enabled:
                state.killed_at, state.killed_by_label = None, ""
        state.enabled = enabled
        _record(state, actor, reason, summary)
        state.save()
        _flags_changed(locked, environment)
    return state


# --- tool gates ---------------------------------------------------------------------------


def create_tool_gate(
    *,
    agent: Agent,
    tool_name: str,
    flag: Flag,
    actor: Actor,
    reason: str = "",
    request: DeploymentRequest | None = None,
    break_glass: str = "",
) -> ToolGate:
    """Gate an agent's tool behind a boolean flag (global or scoped to the same agent)."""
    permit(actor, ADD_GATE_PERMISSION, "gate tools behind flags", request)
    gate = ToolGate(
        agent=agent,
        tool_name=(tool_name or "").strip(),
        flag=flag,
        created_by_label=actor.label,
        updated_by_label=actor.label,
    )
    gate.full_clean(validate_unique=False, validate_constraints=False)
    if flag.kind != FlagKind.BOOLEAN:
        raise ValidationError(
            {"flag": f"{flag.key!r} is a {flag.kind} flag; a tool is gated by a boolean flag."}
        )
    if flag.agent_id is not None and flag.agent_id != agent.pk:
        assert flag.agent is not None  # noqa: S101 - agent_id is set
        raise ValidationError(
            {
                "flag": f"{flag.key!r} is scoped to the agent {flag.agent.slug}; use a global "
                f"flag or one scoped to {agent.slug}."
            }
        )
    change = {"op": "create_gate", "flag": flag.key, "agent": agent.slug, "tool": gate.tool_name}
    try:
        with transaction.atomic():
            locked = _lock(flag)
            reason = _clear(locked, change, actor, reason or "created", request, break_glass)
            _attribute(gate, actor, reason)
            gate.save()
            record_change(topic=ChangeTopic.FLAGS, agent=agent)
    except IntegrityError:
        raise ValidationError(
            {"tool_name": f"{gate.tool_name!r} of {agent.slug} is already gated by a flag."}
        ) from None
    return gate


def delete_tool_gate(
    *,
    gate: ToolGate,
    actor: Actor,
    reason: str = "",
    request: DeploymentRequest | None = None,
    break_glass: str = "",
) -> None:
    """Remove a gate: the tool is then served to everyone whose version lists it."""
    permit(actor, DELETE_GATE_PERMISSION, "remove tool gates", request)
    with transaction.atomic():
        locked = _lock(gate.flag)
        change = {
            "op": "delete_gate",
            "flag": locked.key,
            "agent": gate.agent.slug,
            "tool": gate.tool_name,
        }
        reason = _clear(locked, change, actor, reason or "deleted", request, break_glass)
        record_change(topic=ChangeTopic.FLAGS, agent=gate.agent_id)
        _attribute(gate, actor, reason)
        gate.delete()


# --- helpers --------------------------------------------------------------------------------


def _flags_changed(flag: Flag, environment: Environment | None = None) -> None:
    """The change-feed row of a flag write (caller's transaction): its agent's documents
    (every agent's for a global flag) and OFREP, in `environment` or in all of them."""
    record_change(
        topic=ChangeTopic.FLAGS,
        agent=flag.agent_id,
        environment_id=environment.pk if environment is not None else None,
    )


def _clear(
    locked: Flag,
    change: dict[str, Any],
    actor: Actor,
    reason: str,
    request: DeploymentRequest | None,
    break_glass: str,
) -> str:
    """Clear `change` for an environment that requires approval (flags.approvals); the
    history reason, with what cleared it."""
    note = clear_flag_change(
        flag=locked, change=change, actor=actor, request=request, break_glass=break_glass
    )
    return _with_note(reason, note)


def _with_note(reason: str, note: str) -> str:
    """The history reason with what cleared the change ("Request #3", "Break glass: …")."""
    if not note:
        return reason
    return f"{note} — {reason}" if reason else note


def _lock(flag: Flag) -> Flag:
    return Flag.objects.select_for_update().get(pk=flag.pk)


def _lock_state(flag: Flag, environment: Environment) -> tuple[Flag, FlagEnvironment]:
    """The locked flag and its state in `environment` (a new, unsaved one if none yet)."""
    locked = _lock(flag)
    state = FlagEnvironment.objects.filter(flag=locked, environment=environment).first()
    if state is None:
        state = _new_state(locked, environment)
    else:
        state.flag = locked
    return locked, state


def _new_state(flag: Flag, environment: Environment) -> FlagEnvironment:
    """A flag's (unsaved) state in an environment it has none in yet: off, no rules."""
    default_variant, off_variant = flag.initial_variants
    return FlagEnvironment(
        flag=flag,
        environment=environment,
        enabled=False,
        off_variant=off_variant,
        default_variant=default_variant,
        rules=[],
    )


def _record(state: FlagEnvironment, actor: Actor, reason: str, summary: str) -> None:
    state.revision += 1
    state.change_reason = reason
    _attribute(state, actor, reason or summary)


def _attribute(obj: Any, actor: Actor, reason: str) -> None:
    obj.updated_by_label = actor.label
    # simple-history reads these two attributes for the history row: who, and why.
    obj._history_user = actor.user
    obj._change_reason = reason[:100]


def _copy_fields(source: Flag, target: Flag) -> None:
    for field in ("description", "owner", "variants", "updated_at"):
        setattr(target, field, getattr(source, field))
