"""Forms of the flag pages. They turn browser input into Python values (JSON text to lists);
flags.services.flags and flags.rules decide what is valid, so every entry point refuses the
same things with the same messages.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from agentconfig.core.reasons import validate_reason
from agentconfig.core.safe_parse import SYNTAX, InputError, load_json
from agentconfig.models import Agent
from deployments.models import Environment
from flags import rules as schema
from flags.models import Flag, FlagKind
from flags.services.flags import check_variants_in_use

RULES_HELP = (
    "A JSON list of rules, evaluated top to bottom; the first that matches serves its "
    "variant. See the explanation beside this form. Empty ([]) means everyone gets the "
    "default variant while the flag is on."
)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# Far above what flags.rules accepts (its own limits say what is too much); the request
# itself is bounded by DATA_UPLOAD_MAX_MEMORY_SIZE.
MAX_JSON_TEXT_BYTES = 2_000_000


def parse_json_text(text: str, example: str) -> Any:
    """JSON text as Python data; ValidationError with line and column if it is not JSON,
    or saying what and where for JSON that cannot be used (agentconfig.core.safe_parse)."""
    try:
        # No `where`: the message shows next to the field ("[0].value: …").
        return load_json(text, max_bytes=MAX_JSON_TEXT_BYTES, where="")
    except InputError as exc:
        if exc.kind == SYNTAX:
            raise ValidationError(f"is {exc.message}. Write something like {example}.") from None
        raise ValidationError(f"{exc}.") from None


class JSONTextField(forms.CharField):
    """A textarea holding JSON; cleans to the parsed value (None when left empty)."""

    def __init__(self, *args: Any, example: str, rows: int = 10, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": rows, "class": "ac-code-input"}))
        super().__init__(*args, strip=True, **kwargs)
        self.example = example

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | dict):
            return pretty_json(value)
        return value

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        if not text:
            return None
        return parse_json_text(text, self.example)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return bool(self.clean(data) != initial)
        except ValidationError:
            return True


VARIANTS_EXAMPLE = '[{"name": "short", "value": "…"}, {"name": "long", "value": "…"}]'


class FlagAddForm(forms.Form):
    """A new flag; flags.services.flags.create_flag creates it, off in every environment."""

    key = forms.CharField(
        max_length=100,
        help_text="How code and OpenFeature clients name it, e.g. web-search or billing.refunds "
        "(lowercase letters, digits, '.', '_', '-'). Cannot be changed later.",
    )
    kind = forms.ChoiceField(choices=FlagKind.choices, initial=FlagKind.BOOLEAN)
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.all(),
        required=False,
        empty_label="Global (every agent)",
        label="Scope",
        help_text="A global flag can gate the tools of any agent; an agent's flag only its own.",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    owner = forms.CharField(max_length=200, required=False, help_text="A team or a person.")
    variants = JSONTextField(
        example=VARIANTS_EXAMPLE,
        help_text="String and JSON flags: a list of named values, e.g. "
        f"{VARIANTS_EXAMPLE}. JSON values are objects. Leave empty for a boolean flag "
        "(its variants are on = true and off = false).",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None  # noqa: S101 - Form.clean returns cleaned_data
        if data.get("kind") == FlagKind.BOOLEAN and data.get("variants") is not None:
            self.add_error("variants", "a boolean flag has the fixed variants on and off.")
        elif data.get("kind") in (FlagKind.STRING, FlagKind.JSON) and not data.get("variants"):
            self.add_error("variants", f"list the variants, e.g. {VARIANTS_EXAMPLE}.")
        return data


class FlagChangeForm(forms.ModelForm):
    """Description and owner of an existing flag (a boolean flag's variants are fixed)."""

    class Meta:
        model = Flag
        fields = ["description", "owner"]


class FlagVariantsChangeForm(FlagChangeForm):
    """Description, owner and variants of an existing string or JSON flag."""

    variants = JSONTextField(
        example=VARIANTS_EXAMPLE,
        rows=12,
        help_text=f"A list of named values, e.g. {VARIANTS_EXAMPLE}. A variant that an "
        "environment serves or names in a rule cannot be removed or renamed.",
    )

    class Meta:
        model = Flag
        fields = ["description", "owner", "variants"]

    def clean_variants(self) -> Any:
        variants = self.cleaned_data.get("variants")
        try:
            canonical = schema.validate_variants(self.instance.kind, variants)
            # The service checks this again under the lock; here it lands next to the field.
            check_variants_in_use(self.instance, schema.variant_names(canonical))
        except schema.RulesError as exc:
            raise ValidationError(exc.messages) from None
        except ValidationError as exc:
            raise ValidationError(exc.message_dict.get("variants", exc.messages)) from None
        return canonical


RULES_EXAMPLE = '[{"users": ["user-17"], "variant": "on"}]'


class FlagRulesForm(forms.Form):
    """A flag's rules and default/off variants in one environment."""

    default_variant = forms.ChoiceField(
        help_text="Served while the flag is on and no rule matches."
    )
    off_variant = forms.ChoiceField(help_text="Served to everyone while the flag is off.")
    rules = JSONTextField(example=RULES_EXAMPLE, rows=18, help_text=RULES_HELP)
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: why — kept in the flag's history.",
    )
    revision = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, flag: Flag, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [
            (name, f"{name} = {json.dumps(flag.variant_value(name), ensure_ascii=False)[:60]}")
            for name in flag.variant_names
        ]
        for name in ("default_variant", "off_variant"):
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)  # noqa: S101 - as declared
            field.choices = choices

    def clean_rules(self) -> Any:
        value = self.cleaned_data.get("rules")
        return [] if value is None else value

    def clean_reason(self) -> str:
        try:
            return validate_reason(self.cleaned_data["reason"], required=False)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["reason"]) from None


class ReasonForm(forms.Form):
    """The reason of a switch (required for the kill switch)."""

    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why — kept in the flag's history.",
    )

    def __init__(self, *args: Any, required: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reason_required = required
        if required:
            self.fields["reason"].widget.attrs["required"] = True

    def clean_reason(self) -> str:
        try:
            return validate_reason(self.cleaned_data["reason"], required=self.reason_required)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["reason"]) from None


class EvaluateForm(forms.Form):
    """Who to evaluate a flag for, on the flag's "evaluate for a user" page."""

    environment = forms.ModelChoiceField(queryset=Environment.objects.all(), empty_label=None)
    targeting_key = forms.CharField(
        required=False, label="User (targeting key)", help_text="e.g. user-123"
    )
    context = JSONTextField(
        example='{"country": "DE", "plan": "pro"}',
        rows=4,
        label="Context",
        help_text='Attributes as a JSON object, e.g. {"country": "DE", "app_version": "2.4.1"}.',
    )

    def clean_context(self) -> dict[str, Any]:
        value = self.cleaned_data.get("context")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValidationError('must be a JSON object, e.g. {"country": "DE"}.')
        return value


class ToolGateAddForm(forms.Form):
    """A tool of an agent, gated by a boolean flag; services.flags.create_tool_gate adds it."""

    agent = forms.ModelChoiceField(queryset=Agent.objects.all())
    tool_name = forms.CharField(
        max_length=64,
        help_text="As listed in the agent's configuration, e.g. web_search. Runtimes receive "
        "the tool only when the flag is on for their user, whatever the version.",
    )
    flag = forms.ModelChoiceField(
        queryset=Flag.objects.filter(kind=FlagKind.BOOLEAN).select_related("agent"),
        help_text="A boolean flag, global or scoped to the same agent.",
    )
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why. Required where an environment needs approval: a gate changes the "
        "tools of every environment, so it is then opened as a change request.",
    )
