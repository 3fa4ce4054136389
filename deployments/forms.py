"""Forms for deploys, rollbacks and API keys in the admin.

They parse input and check the reason early (with the service's own rule) so the
confirmation page is never shown for something the service would refuse for that
reason; deployments.services checks everything again when the change is applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from agentconfig.models import Agent
from deployments.models import Environment
from deployments.services import validate_reason
from versions.models import AgentVersion


def version_choice_label(version: AgentVersion, note: str = "") -> str:
    summary = version.change_description.splitlines()[0] if version.change_description else ""
    if len(summary) > 70:
        summary = f"{summary[:69]}…"
    suffix = f" ({note})" if note else ""
    return f"{version.label}{suffix} · {version.created_at:%Y-%m-%d %H:%M} · {summary}"


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
        try:
            return validate_reason(self.cleaned_data["reason"].replace("\r\n", "\n"))
        except ValidationError as exc:
            raise ValidationError(exc.message_dict.get("reason", exc.messages)) from None


class _VersionChoiceField(forms.ModelChoiceField):
    def __init__(self, *args: Any, active: AgentVersion | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.active_pk = active.pk if active else None

    def label_from_instance(self, obj: AgentVersion) -> str:
        return version_choice_label(obj, "active here" if obj.pk == self.active_pk else "")


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

    def clean_version(self) -> AgentVersion:
        # The confirmation page compares every configuration field: load the full row once.
        return AgentVersion.objects.get(pk=self.cleaned_data["version"].pk)


class RollbackForm(_ReasonForm):
    """Which earlier version to return to (only versions active here before), and why."""

    to_version = forms.ChoiceField(label="Roll back to")
    field_order = ["to_version", "reason"]

    def __init__(self, *args: Any, targets: Sequence[AgentVersion], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.targets = {str(version.pk): version for version in targets}
        field = self.fields["to_version"]
        field.choices = [
            (str(version.pk), version_choice_label(version, "previous" if index == 0 else ""))
            for index, version in enumerate(targets)
        ]
        if targets:
            field.initial = str(targets[0].pk)

    def clean_to_version(self) -> AgentVersion:
        return self.targets[self.cleaned_data["to_version"]]


class ApiKeyAddForm(forms.Form):
    """A new runtime API key; deployments.services.create_api_key creates it."""

    name = forms.CharField(
        max_length=100,
        help_text="Says who uses the key, e.g. support-bot-prod-eu. Unique among active keys.",
    )
    environment = forms.ModelChoiceField(
        queryset=Environment.objects.all(),
        help_text="The key reads the configuration active in this environment only.",
    )
