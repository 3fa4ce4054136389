"""Reads of flags: evaluation snapshots for the runtime endpoint and OFREP, and admin views.

Invariants:
- A snapshot is built with one query for the flags (each with its state in the
  environment, through a filtered LEFT JOIN) and, for an agent, one for its tool gates.
- A snapshot holds only plain data (flags.evaluation); server processes keep them in
  memory (delivery.snapshot), dropped by the change feed when a flag changes.
- A flag without a state row in the environment is off and serves its initial off variant.
- Stored rules that no longer compile (edited outside the services) make that one flag
  resolve to an ERROR; they never break the snapshot.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import FilteredRelation, Q

from flags import rules as schema
from flags.evaluation import FlagSnapshot, FlagState
from flags.models import Flag, FlagEnvironment, ToolGate

logger = logging.getLogger(__name__)

_STATE_COLUMNS = ("enabled", "off_variant", "default_variant", "rules")


def build_flag_snapshot(environment_id: int, agent_id: int | None) -> FlagSnapshot:
    """Every flag in scope for the agent in the environment (global + the agent's), with
    the agent's tool gates. Two queries with an agent, one without."""
    scope = (
        Q(agent__isnull=True) if agent_id is None else Q(agent__isnull=True) | Q(agent_id=agent_id)
    )
    flags = _flag_states(environment_id, Flag.objects.filter(scope))
    gates: dict[str, str] = {}
    if agent_id is not None:
        gates = dict(
            ToolGate.objects.filter(agent_id=agent_id).values_list("tool_name", "flag__key")
        )
    return FlagSnapshot(environment_id, agent_id, flags, gates)


def build_flag_snapshot_at(environment_id: int, agent_id: int | None, at: datetime) -> FlagSnapshot:
    """The snapshot as it was at `at`, rebuilt from the flags' history (for audits)."""
    flags = [
        flag
        for flag in Flag.history.as_of(at)
        if flag.agent_id is None or flag.agent_id == agent_id
    ]
    states = {
        state.flag_id: state
        for state in FlagEnvironment.history.as_of(at).filter(environment_id=environment_id)
    }
    compiled = {}
    for flag in sorted(flags, key=lambda f: f.key):
        state = states.get(flag.pk)
        columns = [getattr(state, c) for c in _STATE_COLUMNS] if state else [None] * 4
        compiled[flag.key] = compile_flag_state(flag.key, flag.kind, flag.variants, *columns)
    keys = {flag.pk: flag.key for flag in flags}
    gates = (
        {
            gate.tool_name: keys[gate.flag_id]
            for gate in ToolGate.history.as_of(at).filter(agent_id=agent_id)
            if gate.flag_id in keys
        }
        if agent_id is not None
        else {}
    )
    return FlagSnapshot(environment_id, agent_id, compiled, gates)


def build_environment_snapshot(environment_id: int) -> FlagSnapshot:
    """Every flag of the environment, global and agent-scoped (what OFREP serves). One query.

    Keys are unique across agents, so an agent-scoped flag is addressed by its key alone.
    """
    compiled = _compiled_flags(environment_id, Flag.objects.all())
    return FlagSnapshot(
        environment_id,
        None,
        {state.key: state for state, _ in compiled},
        # Which agent each scoped flag belongs to: a key limited to agents sees only
        # theirs and the global ones (FlagSnapshot.visible_to).
        flag_agents={state.key: agent for state, agent in compiled if agent is not None},
    )


def _flag_states(environment_id: int, flags: Any) -> dict[str, FlagState]:
    return {state.key: state for state, _ in _compiled_flags(environment_id, flags)}


def _compiled_flags(environment_id: int, flags: Any) -> list[tuple[FlagState, int | None]]:
    """Each flag compiled for the environment, with its agent's id (None: global)."""
    rows = (
        flags.annotate(
            state=FilteredRelation("states", condition=Q(states__environment_id=environment_id))
        )
        .order_by("key")
        .values_list(
            "key", "kind", "variants", *(f"state__{c}" for c in _STATE_COLUMNS), "agent_id"
        )
    )
    return [(compile_flag_state(*row[:-1]), row[-1]) for row in rows]


def compile_flag_state(
    key: str,
    kind: str,
    variants: list[dict[str, Any]],
    enabled: bool | None,
    off_variant: str | None,
    default_variant: str | None,
    rules: list[dict[str, Any]] | None,
) -> FlagState:
    values = {v["name"]: v["value"] for v in variants or []}
    if enabled is None:  # no state row in this environment: off
        default_variant, off_variant = schema.initial_variants(kind, list(values))
        enabled, rules = False, []
    state = FlagState(
        key=key,
        kind=kind,
        variants=values,
        enabled=bool(enabled),
        off_variant=off_variant or "",
        default_variant=default_variant or "",
        rules=(),
    )
    try:
        names = list(values)
        problems = [
            *schema.check_variant(off_variant, names, "off variant"),
            *schema.check_variant(default_variant, names, "default variant"),
        ]
        if problems:
            raise schema.RulesError(problems)
        compiled = schema.compile_rules(schema.validate_rules(rules or [], names))
    except (schema.RulesError, KeyError, TypeError, AttributeError) as exc:
        logger.error("flag %s has a stored configuration that does not compile: %s", key, exc)
        return FlagState(
            key=key,
            kind=kind,
            variants=values,
            enabled=False,
            off_variant="",
            default_variant="",
            problem=f"the stored configuration of flag {key!r} is invalid; fix it in the admin.",
        )
    return FlagState(**{**state.__dict__, "rules": compiled})


# --- a per-process copy of OFREP snapshots ---------------------------------------------


# --- the admin's views of a flag ----------------------------------------------------------


def get_flag_state(flag: Flag, environment_id: int) -> FlagState:
    """One flag's compiled state in one environment (for "evaluate for a user")."""
    return _flag_states(environment_id, Flag.objects.filter(pk=flag.pk))[flag.key]


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: str
    new: str
    # For long values (rules, variants): [(op, line)] with op in " ", "+", "-".
    lines: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FlagChange:
    """One history row of a flag, its state in an environment or one of its tool gates."""

    when: datetime
    who: str
    what: str  # "flag", "production", "tool gate support-bot: web_search"
    action: str  # "created", "changed", "deleted"
    reason: str
    changes: tuple[FieldChange, ...]


HISTORY_FIELDS = {
    "flag": ("description", "owner", "variants"),
    "state": ("enabled", "default_variant", "off_variant", "rules"),
}


def list_flag_changes(flag: Flag, limit: int = 50) -> list[FlagChange]:
    """The latest changes of a flag, its environment states and tool gates, newest first."""
    flag_rows = list(
        Flag.history.filter(id=flag.pk)
        .select_related("history_user")
        .order_by("-history_id")[: limit + 1]
    )
    state_rows = list(
        FlagEnvironment.history.filter(flag_id=flag.pk)
        .select_related("history_user", "environment")
        .order_by("-history_id")[: limit * 4]
    )
    gate_rows = list(
        ToolGate.history.filter(flag_id=flag.pk)
        .select_related("history_user", "agent")
        .order_by("-history_id")[:limit]
    )
    changes = [
        *_changes(flag_rows, HISTORY_FIELDS["flag"], lambda row: "flag", _by_id),
        *_changes(
            state_rows,
            HISTORY_FIELDS["state"],
            lambda row: row.environment.slug if row.environment else "environment",
            lambda row: row.id,
        ),
        *_changes(
            gate_rows,
            (),
            lambda row: f"tool gate {row.agent.slug}: {row.tool_name}",
            lambda row: row.id,
        ),
    ]
    changes.sort(key=lambda c: c.when, reverse=True)
    return changes[:limit]


def _by_id(row: Any) -> Any:
    return row.id


def _changes(
    rows: list[Any],
    fields: tuple[str, ...],
    label: Callable[[Any], str],
    identity: Callable[[Any], Any],
) -> Iterable[FlagChange]:
    # Rows are newest first; a row's previous state is the next older row of the same
    # object (a state can be deleted and created again, hence `identity`).
    for index, row in enumerate(rows):
        previous = next((old for old in rows[index + 1 :] if identity(old) == identity(row)), None)
        field_changes: list[FieldChange] = []
        if row.history_type == "~" and previous is not None:
            field_changes = [
                _field_change(field, getattr(previous, field), getattr(row, field))
                for field in fields
                if getattr(previous, field) != getattr(row, field)
            ]
            if not field_changes:
                continue  # a save that changed nothing shown here
        user = row.history_user
        yield FlagChange(
            when=row.history_date,
            who=user.get_username() if user is not None else row.updated_by_label,
            what=label(row),
            action=_ACTIONS.get(row.history_type, row.history_type),
            # The state keeps the whole reason; history_change_reason is cut at 100 characters.
            reason=getattr(row, "change_reason", "") or row.history_change_reason or "",
            changes=tuple(field_changes),
        )


_ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}


def _field_change(field: str, old: Any, new: Any) -> FieldChange:
    if field in ("rules", "variants"):
        old_text = json.dumps(old, indent=2, sort_keys=True, ensure_ascii=False)
        new_text = json.dumps(new, indent=2, sort_keys=True, ensure_ascii=False)
        lines = tuple(
            (line[0], line[2:])
            for line in difflib.ndiff(old_text.splitlines(), new_text.splitlines())
            if line[:1] in (" ", "+", "-")
        )
        return FieldChange(field, _summary(old), _summary(new), lines)
    if field == "enabled":
        return FieldChange(field, "on" if old else "off", "on" if new else "off")
    return FieldChange(field, str(old), str(new))


def _summary(value: Any) -> str:
    if isinstance(value, list):
        return f"{len(value)} entr{'y' if len(value) == 1 else 'ies'}"
    return str(value)
