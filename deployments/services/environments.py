"""Governed settings: an environment's release rules and its canary policy.

These decide how releases are judged, so changing them is governed like a release:
the admin, the CLI and the SETTINGS request subject all call these services.

Invariants:
- Only administrators change them: each service checks the model's change (or add)
  permission, which no role but Admins holds (agentconfig.core.roles).
- Every change carries a reason and writes its AuditRecord, with the values before and
  after, in the change's own transaction; a refusal writes nothing.
- The environment row is locked (select_for_update) while its settings or its canary
  policy are read and changed, so two changes serialise and `before` is the real one;
  what the person saw (`expected_state`, a fingerprint) is checked under that lock.
- Lowering an environment's required approvals is never applied directly: it takes a
  SETTINGS request (deployments.services.requests.propose_change), approved by administrators
  other than the requester on the settings the request was opened on, applied through
  `update_environment(request=...)`. Raising them (safer) applies at once.
- An environment never requires more approvals than there are people who may approve
  lowering them again (else it could never be lowered).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from agentconfig.core.actors import Actor
from agentconfig.core.audit_records import record_audit
from agentconfig.core.errors import Conflict, Forbidden, ServiceError
from agentconfig.core.reasons import validate_reason
from agentconfig.core.safe_parse import InputError, check_number
from agentconfig.models import AuditAction
from deployments.approvals import check_change_request
from deployments.models import (
    CanaryPolicy,
    DeadlineAction,
    DeploymentRequest,
    Environment,
    RequestKind,
)
from deployments.models.canary import POLICY_LIMITS
from deployments.services.canaries import parse_steps

ADD_ENVIRONMENT_PERMISSION = "deployments.add_environment"
SETTINGS_PERMISSION = "deployments.change_environment"
ADD_CANARY_POLICY_PERMISSION = "deployments.add_canarypolicy"
CANARY_POLICY_PERMISSION = "deployments.change_canarypolicy"

# What an environment's settings request may change (and its fingerprint covers).
GOVERNED_FIELDS = ("required_approvals",)
CANARY_POLICY_FIELDS = (
    "default_steps",
    "bake_minutes",
    "margin",
    "max_error_increase",
    "promote_confidence",
    "rollback_ratio",
    "rollback_confidence",
    "min_regression",
    "power",
    "max_latency_ratio",
    "latency_quantile",
    "max_score_drop",
    "srm_tolerance",
    "max_duration_minutes",
    "deadline_action",
)
_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
_Policy = TypeVar("_Policy", bound=models.Model)


class SettingsApprovalRequired(Forbidden):
    """Lowering required approvals needs an approved SETTINGS request; `proposal` is what to ask."""

    def __init__(self, message: str, *, proposal: dict[str, Any]) -> None:
        super().__init__(message)
        self.proposal = proposal


def fingerprint(data: Mapping[str, Any]) -> str:
    """The sha256 hex of `data` as canonical JSON: what a person saw, to check under a lock."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def lock_environment(environment: Environment) -> Environment:
    """Lock the environment row for this transaction; the row as it is now.

    NO KEY: outcome batches, whose rows reference the environment, never wait for a
    settings change (see deployments.services.releases.lock_pointer)."""
    return Environment.objects.select_for_update(no_key=True).get(pk=environment.pk)


def governed_settings(environment: Environment) -> dict[str, Any]:
    """The environment's release rules, as data (audit records, fingerprints)."""
    return {field: getattr(environment, field) for field in GOVERNED_FIELDS}


def settings_state(environment: Environment) -> str:
    """The fingerprint of the environment's release rules."""
    return fingerprint(governed_settings(environment))


def check_expected_state(current: str, expected: str | None, what: str) -> None:
    """Refuse if `what` is no longer as the person saw it (caller holds the lock)."""
    if expected is not None and expected != current:
        raise Conflict(
            f"{what} changed while you were editing: reload the page (or read them again) "
            "and make your change on what they are now."
        )


# --- environments ---------------------------------------------------------------------


def create_environment(
    *,
    slug: str,
    name: str,
    actor: Actor,
    reason: str,
    position: int = 100,
    required_approvals: int = 1,
) -> Environment:
    """Create an environment with its release rules (an administrator's change)."""
    actor.require(ADD_ENVIRONMENT_PERMISSION, "create environments")
    reason = validate_reason(reason)
    environment = Environment(
        slug=(slug or "").strip(),
        name=(name or "").strip(),
        position=position,
        required_approvals=_approvals_value(required_approvals),
    )
    environment.full_clean()
    _check_approvers(environment, environment.required_approvals)
    try:
        with transaction.atomic():
            environment.save()
            _record_change(
                environment, actor, reason, before={}, after=_environment_values(environment)
            )
    except IntegrityError:
        raise ValidationError(
            {"slug": f"an environment {environment.slug!r} already exists."}
        ) from None
    return environment


def update_environment(
    *,
    environment: Environment,
    actor: Actor,
    reason: str,
    name: str | None = None,
    position: int | None = None,
    required_approvals: int | None = None,
    expected_state: str | None = None,
    request: DeploymentRequest | None = None,
) -> Environment:
    """Change an environment's name, position or required approvals (None: unchanged).

    Lowering the required approvals is refused (SettingsApprovalRequired) unless
    `request` is an approved SETTINGS request for exactly that value.
    """
    actor.require(SETTINGS_PERMISSION, "change environment settings")
    reason = validate_reason(reason)
    if required_approvals is not None:
        required_approvals = _approvals_value(required_approvals)
    if request is not None and (name is not None or position is not None):
        raise ServiceError(
            f"request #{request.pk} changes only the required approvals; change the name "
            "or position on their own."
        )
    with transaction.atomic():
        locked = lock_environment(environment)
        state = settings_state(locked)
        check_expected_state(state, expected_state, f"the settings of {locked.slug}")
        before = _environment_values(locked)
        if request is not None:
            check_change_request(
                request, kind=RequestKind.SETTINGS, environment=locked, state=state
            )
            proposed = request.proposal.get("required_approvals")
            if required_approvals != proposed:
                raise ServiceError(
                    f"request #{request.pk} asks for {proposed} required approval(s), not "
                    f"{required_approvals}; apply it as it is."
                )
        elif required_approvals is not None and required_approvals < locked.required_approvals:
            raise SettingsApprovalRequired(
                f"lowering the required approvals of {locked.slug} from "
                f"{locked.required_approvals} to {required_approvals} needs another "
                "administrator's approval: open a settings request (admin: save the "
                "environment with the lower value; CLI: set_required_approvals), have it "
                "approved, then apply it.",
                proposal={"required_approvals": required_approvals},
            )
        if required_approvals is not None and required_approvals > locked.required_approvals:
            _check_approvers(locked, required_approvals)
        if name is not None:
            locked.name = name.strip()
        if position is not None:
            locked.position = position
        if required_approvals is not None:
            locked.required_approvals = required_approvals
        locked.full_clean(exclude=["slug"])
        after = _environment_values(locked)
        if after == before:
            return locked  # nothing to change: no save, no record
        locked.save()
        _record_change(
            locked,
            actor,
            reason,
            before=_changed(before, after),
            after={**_changed(after, before), **({"request": request.pk} if request else {})},
        )
        return locked


def describe_settings_change(environment: Environment, proposal: Mapping[str, Any]) -> str:
    """A settings change in words: "production: required approvals 2 → 1"."""
    return (
        f"{environment.slug}: required approvals {environment.required_approvals} → "
        f"{proposal.get('required_approvals')}"
    )


class SettingsSubject:
    """What a SETTINGS request changes: an environment's required approvals (lowered)."""

    # Only another administrator may approve a change of the rules that govern approvals,
    # and only an administrator applies it (update_environment checks it again).
    review_permission = SETTINGS_PERMISSION
    apply_permission = SETTINGS_PERMISSION

    def prepare(
        self, *, environment: Environment, proposal: dict[str, Any], actor: Actor
    ) -> tuple[dict[str, Any], None]:
        """The proposal as it will be applied; refused unless it lowers the approvals."""
        actor.require(SETTINGS_PERMISSION, "change environment settings")
        unknown = sorted(set(proposal) - {*GOVERNED_FIELDS, "summary"})
        if unknown:
            raise ValidationError(
                {"proposal": f"a settings request changes only required_approvals, not {unknown}."}
            )
        current = Environment.objects.get(pk=environment.pk)
        value = _approvals_value(proposal.get("required_approvals"))
        if value >= current.required_approvals:
            raise ValidationError(
                {
                    "required_approvals": f"{current.slug} requires {current.required_approvals} "
                    f"now: only lowering needs a request; raising applies at once."
                }
            )
        summary = f"required approvals {current.required_approvals} → {value}"
        return {"required_approvals": value, "summary": summary}, None

    def lock(self, request: DeploymentRequest) -> str:
        """Lock the environment row; the fingerprint of its release rules."""
        return settings_state(lock_environment(request.environment))

    def apply(self, request: DeploymentRequest, actor: Actor, reason: str) -> Environment:
        """Apply through update_environment, which checks the request under its lock."""
        return update_environment(
            environment=request.environment,
            actor=actor,
            reason=reason,
            required_approvals=request.proposal.get("required_approvals"),
            request=request,
        )

    def describe(self, request: DeploymentRequest) -> list[str]:
        """What applying it changes, against the environment as it is now."""
        environment = Environment.objects.get(pk=request.environment_id)
        return [
            describe_settings_change(environment, request.proposal),
            "Releases to it will need that many approvals; rollbacks never need any.",
        ]


def _approvals_value(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        try:
            number = int(str(value).strip())
        except (TypeError, ValueError):
            raise ValidationError(
                {"required_approvals": f"give a whole number, 0 or more; got {value!r}."}
            ) from None
    if number < 0:
        raise ValidationError(
            {"required_approvals": f"must be 0 or more (0: no approval needed); got {number}."}
        )
    return number


def _check_approvers(environment: Environment, required: int) -> None:
    # Lowering needs `required` approvals by administrators: an environment that asks for
    # more than exist could never be lowered again.
    approvers = (
        get_user_model()
        .objects.with_perm(SETTINGS_PERMISSION, is_active=True, backend=_MODEL_BACKEND)
        .count()
    )
    if required > approvers:
        raise ValidationError(
            {
                "required_approvals": f"{environment.slug or 'the environment'} cannot require "
                f"{required} approvals: only {approvers} people may approve changing its "
                f"settings ({SETTINGS_PERMISSION}), so it could never be lowered again."
            }
        )


def _environment_values(environment: Environment) -> dict[str, Any]:
    return {
        "name": environment.name,
        "position": environment.position,
        **governed_settings(environment),
    }


def _changed(values: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if other.get(key) != value}


def _record_change(
    environment: Environment,
    actor: Actor,
    reason: str,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
    action: AuditAction = AuditAction.ENVIRONMENT_SETTINGS,
    subject: str = "",
) -> None:
    """The AuditRecord of a change to what governs releases to `environment`: its settings
    (the default) or one of its policies (`action`, with the policy as `subject`)."""
    record_audit(
        action=action,
        actor=actor,
        reason=reason,
        subject_label=f"{subject} of {environment.slug}" if subject else environment.slug,
        environment_id=environment.pk,
        before=before,
        after=after,
    )


# --- an environment's policies (its canary policy here, its evaluation policy above) ----


def policy_values(policy: models.Model, fields: Sequence[str]) -> dict[str, Any]:
    """A policy's settings, as data (audit records, fingerprints)."""
    return {field: getattr(policy, field) for field in fields}


def policy_state(model: type[models.Model], fields: Sequence[str], environment: Environment) -> str:
    """The fingerprint of the environment's saved `model` policy ({} when none is saved)."""
    policy = model._default_manager.filter(environment=environment).first()
    return fingerprint(policy_values(policy, fields) if policy else {})


NO_POLICY_STATE = fingerprint({})


def save_policy(
    model: type[_Policy],
    *,
    fields: Sequence[str],
    environment: Environment,
    values: Mapping[str, Any],
    actor: Actor,
    reason: str,
    expected_state: str | None,
    add_permission: str,
    action: AuditAction,
) -> _Policy:
    """Save the environment's one `model` row (created if none was saved) from `values`.

    The caller has checked the change permission, the reason and the values. Under the
    environment's lock: the add permission for a first policy, `expected_state` against
    what is saved, the model's validation; then the save and its AuditRecord (`action`),
    both skipped when nothing changes.
    """
    name = str(model._meta.verbose_name)
    with transaction.atomic():
        locked = lock_environment(environment)
        policy = model._default_manager.filter(environment=locked).first()
        if policy is None:
            actor.require(add_permission, f"create {model._meta.verbose_name_plural}")
            policy = model(environment=locked)
        # {} before: none was saved (the documented defaults applied).
        before = policy_values(policy, fields) if policy.pk is not None else {}
        check_expected_state(fingerprint(before), expected_state, f"the {name} of {locked.slug}")
        for field, value in values.items():
            setattr(policy, field, value)
        policy.full_clean(exclude=["environment"], validate_unique=False)
        after = policy_values(policy, fields)
        if after == before:
            return policy  # nothing to change: no save, no record
        policy.save()
        _record_change(
            locked,
            actor,
            reason,
            before=_changed(before, after),
            after=_changed(after, before),
            action=action,
            subject=name,
        )
        return policy


# --- canary policies -------------------------------------------------------------------


def canary_policy_values(policy: CanaryPolicy) -> dict[str, Any]:
    """A canary policy's settings, as data (the defaults for an unsaved one)."""
    return policy_values(policy, CANARY_POLICY_FIELDS)


def canary_policy_state(environment: Environment) -> str:
    """The fingerprint of the environment's saved canary policy ({} when none is saved)."""
    return policy_state(CanaryPolicy, CANARY_POLICY_FIELDS, environment)


def clean_canary_policy(values: Mapping[str, Any]) -> dict[str, Any]:
    """The policy's values, normalised; ValidationError naming every field the analysis
    could not use."""
    cleaned: dict[str, Any] = {field: values.get(field) for field in CANARY_POLICY_FIELDS}
    errors: dict[str, list[str]] = {}

    def refuse(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    try:
        steps = parse_steps(str(cleaned["default_steps"] or ""), "default_steps")
        cleaned["default_steps"] = ",".join(f"{bp / 100:g}" for bp in steps)
    except ValidationError as exc:
        for message in exc.message_dict.get("default_steps", exc.messages):
            refuse("default_steps", message)
    for field, minimum, note in (
        ("bake_minutes", 0, "minutes each step runs at least; 0 for none."),
        ("max_duration_minutes", 1, "an undecided canary ends after this long; 1440 is 24 h."),
    ):
        value = cleaned[field]
        if isinstance(value, bool) or not isinstance(value, int):
            refuse(field, f"give a whole number; got {_shown(value)!r}.")
        elif value < minimum:
            refuse(field, f"must be at least {minimum}; {note}")
        else:
            _within_limits(field, value, refuse)
    for field, note, optional in (
        ("margin", "1.25 promotes a canary shown within 1.25x stable's error rate.", False),
        ("rollback_ratio", "1.25 rolls back a canary shown above 1.25x stable's.", False),
        ("max_latency_ratio", "Leave empty to ignore latency.", True),
    ):
        value = _number(cleaned, field, optional, refuse)
        if value is not None and value < 1:
            refuse(field, f"must be at least 1 (a multiple of stable's); got {value:g}. {note}")
        elif value is not None:
            _within_limits(field, value, refuse)
    for field in ("rollback_confidence", "promote_confidence", "power"):
        value = _number(cleaned, field, False, refuse)
        if value is not None and not (0.5 < value < 1):
            refuse(
                field,
                f"must be more than 0.5 and less than 1, e.g. 0.95 for 95 %; got {value:g}.",
            )
    for field, note in (
        ("max_error_increase", "a fraction: 0.0025 is 0.25 percentage points; 0 for none."),
        ("srm_tolerance", "a fraction: 0.2 holds when the shares differ by more than 20 %."),
        ("latency_quantile", "0.95 compares the p95 latency."),
    ):
        value = _number(cleaned, field, False, refuse)
        if value is not None:
            _within_limits(field, value, refuse, note)
    regression = _number(cleaned, "min_regression", False, refuse)
    if regression is not None and regression <= 0:
        refuse(
            "min_regression",
            f"must be more than 0 (0.5 means a canary 1.5x worse than stable); got {regression:g}.",
        )
    elif regression is not None:
        _within_limits("min_regression", regression, refuse)
        rollback = cleaned["rollback_ratio"]
        if not errors.get("rollback_ratio") and regression <= rollback - 1:
            refuse(
                "min_regression",
                f"must be more than the rollback ratio minus 1 ({rollback - 1:g}): a regression "
                f"below {rollback:g}x stable's is one the rollback test never shows.",
            )
    drop = _number(cleaned, "max_score_drop", True, refuse)
    if drop is not None and drop < 0:
        refuse(
            "max_score_drop",
            f"must be 0 or more (how far the mean score may fall); got {drop:g}. "
            "Leave empty to ignore scores.",
        )
    elif drop is not None:
        _within_limits("max_score_drop", drop, refuse)
    action = cleaned["deadline_action"]
    if action not in DeadlineAction.values:
        refuse(
            "deadline_action",
            f"must be {' or '.join(map(repr, DeadlineAction.values))}; got {_shown(action)!r}.",
        )
    if errors:
        raise ValidationError(errors)
    return cleaned


def set_canary_policy(
    *,
    environment: Environment,
    values: Mapping[str, Any],
    actor: Actor,
    reason: str,
    expected_state: str | None = None,
) -> CanaryPolicy:
    """Save the environment's canary policy (created if none was saved), with a reason.

    `expected_state` is canary_policy_state() as the person saw it.
    """
    actor.require(CANARY_POLICY_PERMISSION, "change canary policies")
    reason = validate_reason(reason)
    return save_policy(
        CanaryPolicy,
        fields=CANARY_POLICY_FIELDS,
        environment=environment,
        values=clean_canary_policy(values),
        actor=actor,
        reason=reason,
        expected_state=expected_state,
        add_permission=ADD_CANARY_POLICY_PERMISSION,
        action=AuditAction.CANARY_POLICY,
    )


def _number(values: dict[str, Any], field: str, optional: bool, refuse: Any) -> float | None:
    value = values[field]
    if value is None or value == "":
        values[field] = None
        if not optional:
            refuse(field, "is required.")
        return None
    if isinstance(value, bool):
        refuse(field, f"give a number; got {value!r}.")
        return None
    try:
        # A finite decimal number: float() would also take "nan", "inf" and "1_0".
        number = float(check_number(value, field=field))
    except InputError:
        refuse(field, f"give a number; got {_shown(value)!r}.")
        return None
    values[field] = number
    return number


def _within_limits(field: str, value: float, refuse: Any, note: str = "") -> None:
    minimum, maximum = POLICY_LIMITS[field]
    try:
        check_number(value, field=field, minimum=minimum, maximum=maximum)
    except InputError as exc:
        refuse(field, f"{exc.message}." + (f" It is {note}" if note else ""))


def _shown(value: Any) -> Any:
    return value[:40] + "…" if isinstance(value, str) and len(value) > 40 else value
