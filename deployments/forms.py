"""Forms for deploys, rollbacks, canaries, environments, canary policies and API keys.

They parse input and check the reason early (with the service's own rule) so the
confirmation page is never shown for something the service would refuse for that
reason; deployments.services.releases checks everything again when the change is applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from agentconfig.core.admin_pages import shortened
from agentconfig.core.reasons import validate_reason
from agentconfig.models import Agent
from deployments.models import CanaryPolicy, CanaryRollout, Environment
from deployments.models.canary import POLICY_LIMITS
from deployments.services.canaries import parse_percent, parse_steps
from deployments.services.environments import (
    CANARY_POLICY_FIELDS,
    NO_POLICY_STATE,
    canary_policy_values,
    clean_canary_policy,
    fingerprint,
    settings_state,
)
from versions.models import AgentVersion


def version_choice_label(version: AgentVersion, note: str = "") -> str:
    first_line = version.change_description.splitlines()[0] if version.change_description else ""
    summary = shortened(first_line, 70)
    suffix = f" ({note})" if note else ""
    return f"{version.label}{suffix} · {version.created_at:%Y-%m-%d %H:%M} · {summary}"


def checked_reason(text: str) -> str:
    """A form's reason, checked with the services' rule; its error as the field's own."""
    try:
        return validate_reason(text)
    except ValidationError as exc:
        raise ValidationError(exc.message_dict.get("reason", exc.messages)) from None


class _ReasonForm(forms.Form):
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "required": True}),
        help_text="Why — kept in the release log.",
    )
    # The version that was active when the confirmation page was shown: if it has moved
    # since, the page the user confirmed no longer describes the change.
    expected_active = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_reason(self) -> str:
        return checked_reason(self.cleaned_data["reason"].replace("\r\n", "\n"))


def version_choices(form: forms.BaseForm) -> QuerySet[AgentVersion]:
    """The versions the form's `version` field offers (`form.fields` only knows a Field)."""
    field = form.fields["version"]
    assert isinstance(field, _VersionChoiceField)  # noqa: S101 - as declared
    assert field.queryset is not None  # noqa: S101 - set in the form's __init__
    return field.queryset


class _VersionChoiceField(forms.ModelChoiceField):
    def __init__(self, *args: Any, active: AgentVersion | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.active_pk = active.pk if active else None

    def label_from_instance(self, obj: AgentVersion) -> str:
        return version_choice_label(obj, "active here" if obj.pk == self.active_pk else "")

    def clean(self, value: Any) -> AgentVersion | None:
        # The choices load only the label columns; the confirmation page compares every
        # configuration field: load the chosen version's full row once.
        version = super().clean(value)
        return None if version is None else AgentVersion.objects.get(pk=version.pk)


class DeployForm(_ReasonForm):
    """Which version of the agent to make active in one environment, and why."""

    field_order = ["version", "reason"]

    def __init__(
        self, *args: Any, agent: Agent, active: AgentVersion | None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # Prompts can be long: the select needs only the label columns.
        versions = agent.versions.order_by("-version_number").only(
            "pk", "agent", "version_number", "change_description", "created_at"
        )
        self.fields["version"] = _VersionChoiceField(
            queryset=versions, active=active, empty_label=None, label="Version"
        )
        self.order_fields(self.field_order)
        if not self.is_bound:
            first_inactive = next((v for v in versions if not active or v.pk != active.pk), None)
            if first_inactive is not None:
                self.fields["version"].initial = first_inactive.pk


class RollbackForm(_ReasonForm):
    """Which earlier version to return to (only versions active here before), and why."""

    to_version = forms.ChoiceField(label="Roll back to")
    field_order = ["to_version", "reason"]

    def __init__(self, *args: Any, targets: Sequence[AgentVersion], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.targets = {str(version.pk): version for version in targets}
        field = self.fields["to_version"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101 - as declared
        field.choices = [
            (str(version.pk), version_choice_label(version, "previous" if index == 0 else ""))
            for index, version in enumerate(targets)
        ]
        if targets:
            field.initial = str(targets[0].pk)

    def clean_to_version(self) -> AgentVersion:
        return self.targets[self.cleaned_data["to_version"]]


def _field_error(exc: ValidationError, field: str) -> ValidationError:
    """A service's {field: message} error, as the error of one form field."""
    if hasattr(exc, "error_dict"):
        return ValidationError(exc.message_dict.get(field, exc.messages))
    return exc


class CanaryStartForm(_ReasonForm):
    """Which version to canary in one environment, how to ramp it, and why.

    deployments.services.canaries.start_canary decides; this form parses the percentages with the
    same functions so the confirmation page can show the plan.
    """

    MODE_STEPS = "steps"
    MODE_PERCENT = "percent"

    mode = forms.ChoiceField(
        label="Ramp",
        choices=[
            (MODE_STEPS, "Steps: increase the share step by step, then promote"),
            (MODE_PERCENT, "One percentage: a single step, then promote"),
        ],
        initial=MODE_STEPS,
        widget=forms.RadioSelect,
    )
    steps = forms.CharField(
        required=False,
        label="Steps (%)",
        help_text="Percentages of users, comma separated and increasing, e.g. 1,5,25,50.",
    )
    percent = forms.CharField(
        required=False,
        label="Percentage",
        help_text="Share of users for a one-step canary, 0.01 to 99.99, e.g. 5.",
    )
    bake_minutes = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=cast(int, POLICY_LIMITS["bake_minutes"][1]),  # the limits dict mixes floats
        label="Bake minutes",
        help_text="Minimum minutes each step runs before the analysis may advance it.",
    )
    field_order = ["version", "mode", "steps", "percent", "bake_minutes", "reason"]

    def __init__(
        self,
        *args: Any,
        agent: Agent,
        stable: AgentVersion,
        policy: CanaryPolicy,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.stable = stable
        self.policy = policy
        # The stable version cannot be its own canary; prompts stay in the database.
        versions = (
            agent.versions.exclude(pk=stable.pk)
            .order_by("-version_number")
            .only("pk", "agent", "version_number", "change_description", "created_at")
        )
        self.fields["version"] = _VersionChoiceField(
            queryset=versions, empty_label=None, label="Canary version"
        )
        self.fields["steps"].initial = policy.default_steps
        self.fields[
            "bake_minutes"
        ].help_text += (
            f" Empty: {policy.bake_minutes} min, from the {policy.environment.slug} canary policy."
        )
        self.order_fields(self.field_order)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # noqa: S101 - Form.clean returns cleaned_data
        mode = cleaned.get("mode")
        try:
            if mode == self.MODE_STEPS:
                cleaned["steps"] = (cleaned.get("steps") or "").strip()
                cleaned["plan"] = parse_steps(cleaned["steps"])
            elif mode == self.MODE_PERCENT:
                text = (cleaned.get("percent") or "").strip()
                if not text:
                    raise ValidationError(
                        {"percent": "is required for a one-step canary, e.g. 5 (per cent)."}
                    )
                cleaned["percent"] = text
                cleaned["plan"] = [parse_percent(text)]
        except ValidationError as exc:
            self.add_error(None, exc)
        return cleaned

    @property
    def bake_seconds(self) -> int:
        minutes = self.cleaned_data.get("bake_minutes")
        return 60 * (self.policy.bake_minutes if minutes is None else minutes)

    def service_arguments(self) -> dict[str, Any]:
        """The keyword arguments of start_canary this form stands for."""
        data = self.cleaned_data
        ramp = (
            {"steps": data["steps"]}
            if data["mode"] == self.MODE_STEPS
            else {"percent": data["percent"]}
        )
        return {
            "version": data["version"],
            "reason": data["reason"],
            "bake_minutes": data["bake_minutes"],
            **ramp,
        }


class CanaryActionForm(_ReasonForm):
    """A reason for advancing, promoting or aborting the running canary."""

    # The canary as the confirmation page described it (id, step, share): if the
    # analysis or a colleague moved it since, that page no longer describes the change.
    expected_canary = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, rollout: CanaryRollout, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rollout = rollout


class CanaryPercentForm(CanaryActionForm):
    """A new share of users for the running canary, and why."""

    percent = forms.CharField(
        label="New percentage",
        help_text="Share of users, 0.01 to 99.99. Users in the canary now stay in it as it grows.",
    )
    field_order = ["percent", "reason"]

    def __init__(self, *args: Any, rollout: CanaryRollout, **kwargs: Any) -> None:
        super().__init__(*args, rollout=rollout, **kwargs)
        self.order_fields(self.field_order)

    def clean_percent(self) -> int:
        try:
            basis_points = parse_percent(self.cleaned_data["percent"].strip())
        except ValidationError as exc:
            raise _field_error(exc, "percent") from None
        if basis_points == self.rollout.basis_points:
            raise ValidationError(f"the canary already runs at {self.rollout.percent:g} %.")
        return basis_points


class GovernedModelForm(forms.ModelForm):
    """A form for a governed setting: a required reason, and the state the page showed.

    `expected_state` is the fingerprint of what the page showed; the service refuses the
    change (Conflict) if it moved before the change was made.
    """

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why — kept with the change in the audit of governance changes.",
    )
    expected_state = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.fields["expected_state"].initial = self.current_state()

    def current_state(self) -> str:
        """The fingerprint the service compares `expected_state` with ("": none)."""
        return ""

    def clean_reason(self) -> str:
        return checked_reason(self.cleaned_data["reason"])

    def add_service_errors(self, error: ValidationError) -> None:
        """Attach a service's {field: messages} error, to fields without an error yet."""
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for field, errors in error.error_dict.items():
            name = field if field in self.fields else None
            if name is None or name not in self.errors:
                self.add_error(name, errors)


class EnvironmentForm(GovernedModelForm):
    """An environment's name, order and required approvals; services.environments saves it."""

    class Meta:
        model = Environment
        fields = ["slug", "name", "position", "required_approvals"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "required_approvals" in self.fields:
            self.fields["required_approvals"].help_text += (
                " Raising it applies at once; lowering it opens a settings request that "
                "another administrator must approve."
            )

    def current_state(self) -> str:
        return settings_state(self.instance) if self.instance.pk else ""


class CanaryPolicyForm(GovernedModelForm):
    """A canary policy; refused with a message when the analysis could not use it
    (deployments.services.environments.clean_canary_policy, the service's own rule)."""

    class Meta:
        model = CanaryPolicy
        fields = ["environment", *CANARY_POLICY_FIELDS]

    def current_state(self) -> str:
        if self.instance.pk is None:
            return NO_POLICY_STATE
        return fingerprint(canary_policy_values(self.instance))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # noqa: S101 - Form.clean returns cleaned_data
        if all(field in cleaned for field in CANARY_POLICY_FIELDS):
            try:
                normalised = clean_canary_policy(cleaned)
            except ValidationError as exc:
                self.add_service_errors(exc)
            else:
                cleaned.update(normalised)
        return cleaned


API_KEY_CAPABILITIES = [
    ("both", "Read configs and report outcomes"),
    ("read", "Read configs only"),
    ("report", "Report outcomes only"),
]


class ApiKeyAddForm(_ReasonForm):
    """A new runtime API key; deployments.services.api_keys.create_api_key creates it."""

    name = forms.CharField(
        max_length=100,
        help_text="Says who uses the key, e.g. support-bot-prod-eu. Unique among active keys.",
    )
    environment = forms.ModelChoiceField(
        queryset=Environment.objects.all(),
        help_text="The key reads the configuration active in this environment only.",
    )
    agents = forms.ModelMultipleChoiceField(
        queryset=Agent.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The agents the key serves. None ticked: every agent of its environment, "
        "including agents added later. Give each team's runtimes a key for their own agents.",
    )
    # One choice rather than two checkboxes: a key that may do neither cannot be asked for,
    # and a form posted without it (scripts written before scopes) keeps both.
    capabilities = forms.ChoiceField(
        choices=API_KEY_CAPABILITIES,
        required=False,
        initial="both",
        widget=forms.RadioSelect,
        help_text="Reading configs: the config endpoint and OFREP (prompts, flags). Reporting "
        "outcomes: POST …/outcomes, on which canary analysis advances, promotes and rolls back.",
    )
    field_order = ["name", "environment", "agents", "capabilities", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].help_text = (
            "Why the key is created — kept in the audit. The scope cannot be changed later: "
            "to change it, create a new key, deploy it, then revoke this one (rotation)."
        )
        # Nothing to confirm against: a new key changes nothing that exists.
        del self.fields["expected_active"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # noqa: S101 - Form.clean returns cleaned_data
        capabilities = cleaned.pop("capabilities", "") or "both"
        cleaned["can_read"] = capabilities in ("both", "read")
        cleaned["can_report"] = capabilities in ("both", "report")
        return cleaned


class ApiKeyRevokeForm(_ReasonForm):
    """Why one or more API keys are revoked (kept in the audit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].help_text = "Why the key is revoked — kept in the audit."
        del self.fields["expected_active"]
