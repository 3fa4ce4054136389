"""Forms of the deployment-request pages: ask, review, override the gate, apply; break glass.

They parse input and check it early with the services' own rules (validate_reason, the
canary plan parsers) so a confirmation is never shown for something the service would
refuse for that reason; deployments.services.requests and deployments.services.releases
check everything again when the change is written.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from agentconfig.core.reasons import validate_reason
from agentconfig.models import Agent
from deployments.forms import DeployForm, _ReasonForm, _VersionChoiceField
from deployments.models import RequestKind, ReviewDecision
from deployments.services import canaries
from versions.models import AgentVersion


class DeploymentRequestForm(_ReasonForm):
    """Which version to ask for, as stable or as a canary (percentage or steps), and why."""

    kind = forms.ChoiceField(
        label="Release as",
        choices=[
            (RequestKind.STABLE, "Stable: everyone gets it once applied"),
            (RequestKind.CANARY, "Canary: a share of users first, then promote"),
        ],
        initial=RequestKind.STABLE,
        widget=forms.RadioSelect,
    )
    canary_plan = forms.CharField(
        required=False,
        max_length=200,
        label="Canary percentage or steps",
        help_text="For a canary: one percentage (5) for a single step, or increasing steps "
        "(1,5,25,50); the analysis promotes it after the last step.",
    )
    field_order = ["version", "kind", "canary_plan", "reason"]

    def __init__(
        self, *args: Any, agent: Agent, active: AgentVersion | None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.active = active
        # The active version is not something to ask for; prompts stay in the database.
        versions = agent.versions.order_by("-version_number").only(
            "pk", "agent", "version_number", "change_description", "created_at"
        )
        if active is not None:
            versions = versions.exclude(pk=active.pk)
        self.fields["version"] = _VersionChoiceField(
            queryset=versions, empty_label=None, label="Version"
        )
        self.fields[
            "reason"
        ].help_text = (
            "What changes and why — reviewers read it next to the diff; kept in the audit."
        )
        self.order_fields(self.field_order)

    def clean_version(self) -> AgentVersion:
        # The confirmation page diffs every configuration field: load the full row once.
        return AgentVersion.objects.get(pk=self.cleaned_data["version"].pk)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # noqa: S101 - Form.clean returns cleaned_data
        plan = (cleaned.get("canary_plan") or "").strip()
        if cleaned.get("kind") != RequestKind.CANARY:
            cleaned["canary_plan"] = ""
            return cleaned
        if self.active is None:
            self.add_error(
                "kind",
                "a canary is measured against the stable version, and nothing is deployed "
                "here yet: ask for a stable deploy first.",
            )
            return cleaned
        try:
            if not plan:
                raise ValidationError(
                    {"canary_plan": "give a percentage (e.g. 5) or steps (e.g. 1,5,25,50)."}
                )
            if "," in plan:
                cleaned["plan"] = canaries.parse_steps(plan, "canary_plan")
            else:
                cleaned["plan"] = [canaries.parse_percent(plan, "canary_plan")]
        except ValidationError as exc:
            self.add_error(None, exc)
        cleaned["canary_plan"] = plan
        return cleaned


class BreakGlassForm(DeployForm):
    """A direct deploy to an environment that requires approval, in an emergency."""

    emergency = forms.CharField(
        required=False,
        label="Emergency",
        widget=forms.Textarea(attrs={"rows": 2, "required": True}),
        help_text="Why this cannot wait for a reviewer (the incident, the ticket). Recorded "
        "and shown prominently in the audit.",
    )
    field_order = ["version", "emergency", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.order_fields(self.field_order)

    def clean_emergency(self) -> str:
        try:
            return validate_reason(self.cleaned_data["emergency"].replace("\r\n", "\n"))
        except ValidationError as exc:
            messages = exc.message_dict.get("reason", exc.messages)
            raise ValidationError(messages) from None


class ReviewForm(forms.Form):
    """Approve or reject, with a comment (deployments.services.requests requires one)."""

    decision = forms.ChoiceField(choices=ReviewDecision.choices)
    comment = forms.CharField(
        required=False,
        label="Comment",
        widget=forms.Textarea(attrs={"rows": 3, "required": True}),
        help_text="What you checked, or what is wrong. Required for approvals and rejections.",
    )
    # The version active in the target environment when the page was shown: the diff the
    # reviewer read. If it moved since, the approval would be recorded for another diff.
    expected_active = forms.CharField(required=False, widget=forms.HiddenInput)


class ApplyRequestForm(forms.Form):
    """Apply an approved request; carries the state the page showed."""

    expected_active = forms.CharField(required=False, widget=forms.HiddenInput)


class GateOverrideForm(_ReasonForm):
    """Let the version past a refusing evaluation gate, with a reason."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields[
            "reason"
        ].help_text = "Why this version may go on despite the evaluation; kept in the audit."
