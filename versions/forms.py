"""Forms for agents and versions in the admin.

They only turn browser input into Python values (text to a list of tools, JSON text to
guardrails); versions.services decides what is valid, so the admin, the CLI and the
file import refuse the same things with the same messages.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from agentconfig.core.safe_parse import SYNTAX, InputError, load_json
from agentconfig.models import Agent
from versions.config import CONFIG_FIELDS, MAX_GUARDRAILS_BYTES
from versions.models import AgentVersion


def pretty_json(value: Any) -> str:
    """Guardrails as people read and edit them: indented, keys sorted."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def tools_text(tools: list[str]) -> str:
    return "\n".join(tools)


def parse_tools(text: str) -> list[str]:
    """Tool names from text, one per line or separated by commas; duplicates are kept.

    Duplicates are kept so that the service can say which one repeats.
    """
    return [name.strip() for name in re.split(r"[,\n]", text) if name.strip()]


def _unix_newlines(text: str) -> str:
    # Browsers send textarea line breaks as CRLF (HTML spec). Stored text uses LF, so an
    # unchanged prompt must come back byte-identical or it would hash as a change.
    return text.replace("\r\n", "\n")


class AgentAddForm(forms.ModelForm):
    """The fields a new agent needs; versions.services.create_agent creates it."""

    class Meta:
        model = Agent
        fields = ["slug", "name", "description"]


class NewVersionForm(forms.Form):
    """A new version of an agent, prefilled from the version it derives from."""

    system_prompt = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 28, "class": "ac-prompt-input", "required": True}),
    )
    model = forms.CharField(required=False, widget=forms.TextInput(attrs={"required": True}))
    temperature = forms.FloatField(required=False, help_text="Between 0 and 2.")
    max_tokens = forms.IntegerField(required=False, help_text="Upper limit of each answer.")
    tools = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "ac-code-input"}),
        help_text="Tool names, one per line or separated by commas.",
    )
    guardrails = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "class": "ac-code-input"}),
        help_text='A JSON object, e.g. {"blocked_topics": ["medical advice"]}. Empty means none.',
    )
    change_description = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "required": True}),
        help_text="What changed and why, in a sentence. Kept with the version for good.",
    )
    derived_from = forms.ModelChoiceField(
        queryset=AgentVersion.objects.none(), required=False, widget=forms.HiddenInput
    )

    def __init__(self, *args: Any, agent: Agent, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["derived_from"]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101 - as declared
        field.queryset = agent.versions.only("pk", "agent", "version_number")

    @staticmethod
    def initial_from(version: AgentVersion | None) -> dict[str, Any]:
        """Initial values that repeat `version` (the form's starting point), or none."""
        if version is None:
            return {"temperature": 0.2, "max_tokens": 1024}
        return {
            "system_prompt": version.system_prompt,
            "model": version.model,
            "temperature": version.temperature,
            "max_tokens": version.max_tokens,
            "tools": tools_text(version.tools),
            "guardrails": pretty_json(version.guardrails) if version.guardrails else "",
            "derived_from": version.pk,
        }

    def clean_system_prompt(self) -> str:
        return _unix_newlines(self.cleaned_data["system_prompt"])

    def clean_change_description(self) -> str:
        return _unix_newlines(self.cleaned_data["change_description"])

    def clean_tools(self) -> list[str]:
        return parse_tools(self.cleaned_data["tools"])

    def clean_guardrails(self) -> Any:
        text = self.cleaned_data["guardrails"].strip()
        if not text:
            return {}
        try:
            # Indented text is larger than the canonical JSON that versions.config limits.
            return load_json(text, max_bytes=10 * MAX_GUARDRAILS_BYTES, where="guardrails")
        except InputError as exc:
            if exc.kind == SYNTAX:
                raise ValidationError(
                    f"is {exc.message}. "
                    'Write a JSON object such as {"blocked_topics": ["medical advice"]}.'
                ) from None
            raise ValidationError(f"{exc}.") from None

    def config(self) -> dict[str, Any]:
        """The six configuration fields as entered, for versions.services.create_version."""
        return {field: self.cleaned_data.get(field) for field in CONFIG_FIELDS}
