"""Forms of the evaluation pages: suites and their cases (as YAML), runs, policies, overrides.

They parse input; the services validate everything again when called, and their
refusals land on these forms next to the field they name.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from agentconfig.models import Agent
from deployments.forms import GovernedModelForm
from deployments.models import Environment
from deployments.services.environments import fingerprint
from evaluations.cases import dump_cases
from evaluations.models import (
    GLOBAL_KEY_VARIABLE,
    EvaluationPolicy,
    SuiteVersion,
    allowed_key_variables,
)
from evaluations.services.policies import NO_POLICY_STATE, POLICY_FIELDS, evaluation_policy_values
from versions.file_format import AgentFileError, load_yaml
from versions.models import AgentVersion

CASES_HELP = (
    "The cases as YAML, the same list as under cases: in evals/<agent>.yaml. Each case: id, "
    "input (a message, or a list of {role, content}), golden_answer, and optionally "
    "criteria, tags, weight and scorer (llm_judge, exact, contains, regex, valid_json)."
)
EXAMPLE_CASES = dump_cases(
    [
        {
            "id": "refund-window",
            "messages": [{"role": "user", "content": "How long do I have to return an item?"}],
            "golden_answer": "30 days from delivery.",
            "criteria": "Mentions the 30 days.",
            "tags": [],
            "weight": 1.0,
            "scorer": "llm_judge",
        }
    ]
)


class CasesField(forms.CharField):
    """A YAML list of cases, read with the agent files' strict loader."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "widget",
            forms.Textarea(attrs={"rows": 24, "class": "ac-code-input", "spellcheck": "false"}),
        )
        kwargs.setdefault("help_text", CASES_HELP)
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        try:
            return load_yaml(text.replace("\r\n", "\n"))
        except AgentFileError as exc:
            raise ValidationError([str(problem) for problem in exc.problems]) from None


class SuiteAddForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=Agent.objects.order_by("slug"))
    slug = forms.CharField(
        max_length=64, help_text="e.g. smoke; used in files, the CLI and policies."
    )
    name = forms.CharField(max_length=200, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    cases = CasesField(initial=EXAMPLE_CASES)
    change_description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), initial="First version of the suite."
    )


class SuiteVersionForm(forms.Form):
    cases = CasesField()
    change_description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What changed in the cases and why; kept with the suite version.",
    )


class _VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: AgentVersion) -> str:
        summary = (obj.change_description.splitlines() or [""])[0][:60]
        return f"{obj.agent.slug} {obj.label} · {summary}"


class _SuiteVersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: SuiteVersion) -> str:
        return f"{obj.suite.agent.slug}/{obj.label} · {obj.case_count} cases"


class RunStartForm(forms.Form):
    suite_version = _SuiteVersionChoiceField(
        queryset=SuiteVersion.objects.select_related("suite__agent").order_by(
            "suite__agent__slug", "suite__slug", "-version_number"
        )
    )
    version = _VersionChoiceField(
        queryset=AgentVersion.objects.select_related("agent")
        .defer("system_prompt", "guardrails")
        .order_by("agent__slug", "-version_number"),
        label="Agent version",
    )
    environment = forms.ModelChoiceField(
        queryset=Environment.objects.all(),
        required=False,
        empty_label="global settings",
        help_text="Whose evaluation settings (endpoint, key variable, judge) the run uses. "
        "Runs for a gate should use that environment's.",
    )

    def __init__(self, *args: Any, suite_version: SuiteVersion | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if suite_version is not None:
            self.fields["suite_version"].initial = suite_version.pk
            # Only the suite's own agent's versions make sense here.
            field = self.fields["version"]
            assert isinstance(field, forms.ModelChoiceField)  # noqa: S101 - as declared
            assert field.queryset is not None  # noqa: S101 - as declared
            field.queryset = field.queryset.filter(agent_id=suite_version.suite.agent_id)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None  # noqa: S101 - Form.clean returns cleaned_data
        suite_version, version = data.get("suite_version"), data.get("version")
        if suite_version and version and version.agent_id != suite_version.suite.agent_id:
            self.add_error(
                "version",
                f"{version} is not a version of {suite_version.suite.agent.slug}, whose suite "
                "this is.",
            )
        return data


class EvaluationPolicyForm(GovernedModelForm):
    """An environment's evaluation gate; evaluations.services.policies saves it, with a reason."""

    base_url = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text=EvaluationPolicy._meta.get_field("base_url").help_text,
    )

    api_key_env = forms.ChoiceField(
        label="API key variable",
        required=False,
        help_text=EvaluationPolicy._meta.get_field("api_key_env").help_text,
    )

    class Meta:
        model = EvaluationPolicy
        fields = ["environment", *POLICY_FIELDS]
        widgets = {"judge_prompt": forms.Textarea(attrs={"rows": 10, "class": "ac-code-input"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read per form: EVAL_API_KEY_NAMES is a setting, not part of the code.
        choices = [("", f"{GLOBAL_KEY_VARIABLE} (the global key)")]
        choices += [(name, name) for name in allowed_key_variables()]
        saved = self.instance.api_key_env if self.instance.pk else ""
        if saved and saved not in allowed_key_variables():
            # Shown as it is, so that saving does not silently change it; refused on save.
            choices.append((saved, f"{saved} (not allowed: not in EVAL_API_KEY_NAMES)"))
        field = self.fields["api_key_env"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101 - as declared
        field.choices = choices

    def current_state(self) -> str:
        if self.instance.pk is None:
            return NO_POLICY_STATE
        return fingerprint(evaluation_policy_values(self.instance))


class GateOverrideForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this version may go on despite the evaluation; kept in the audit.",
    )
