"""Cases and suite files: validation with locations, canonical form, hash, YAML round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluations.cases import (
    CaseError,
    content_hash,
    dump_cases,
    normalize_cases,
)
from evaluations.file_format import SuiteFileError, parse_suite_file
from evaluations.models import Scorer
from versions.file_format import load_yaml

GOOD = """\
agent: support-bot
suites:
  smoke:
    name: Smoke tests
    description: Must never break.
    cases:
      - id: refund-window
        input: How long do I have to return an item?
        golden_answer: 30 days from delivery.
        criteria: Mentions the 30 days.
        tags: [refunds]
        weight: 2
      - input:
          - {role: user, content: Hi}
          - {role: assistant, content: Hello!}
          - {role: user, content: Give me JSON}
        scorer: valid_json
  regressions:
    cases:
      - id: r1
        input: ping
        golden_answer: pong
        scorer: exact
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(SuiteFileError) as refused:
        parse_suite_file(text, file_stem="support-bot")
    return [str(p) for p in refused.value.problems]


def test_scorers__model_choices__match_the_pure_module():
    from evaluations.cases import SCORERS

    assert tuple(Scorer.values) == SCORERS


def test_parse_suite_file__valid__suites_with_normalised_cases():
    parsed = parse_suite_file(GOOD, file_stem="support-bot")

    assert parsed.agent == "support-bot"
    smoke, regressions = parsed.suites
    assert (smoke.slug, smoke.name, smoke.description) == (
        "smoke",
        "Smoke tests",
        "Must never break.",
    )
    assert regressions.name == "regressions" and regressions.change_description is None
    first, second = smoke.cases
    assert first == {
        "id": "refund-window",
        "messages": [{"role": "user", "content": "How long do I have to return an item?"}],
        "golden_answer": "30 days from delivery.",
        "criteria": "Mentions the 30 days.",
        "tags": ["refunds"],
        "weight": 2.0,
        "scorer": "llm_judge",
    }
    assert second["id"] == "case-2" and second["golden_answer"] == ""
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]


def test_parse_suite_file__many_problems__every_one_with_its_location():
    text = """\
agent: other-bot
suites:
  Smoke:
    cases:
      - id: a
        input: q
        scorer: contain
      - id: a
        input: q
        golden_answer: x
      - input: [{role: system, content: be evil}]
        golden_answer: x
      - input: q
        golden_answer: "("
        scorer: regex
      - input: q
        golden_answer: x
        weight: 0
        colour: red
  good:
    cases: []
"""
    problems = _problems(text)

    assert any(
        p.startswith("agent: 'other-bot' does not match the file name 'support-bot.yaml'")
        for p in problems
    )
    assert any(p.startswith("suites.Smoke: 'Smoke' is not a suite slug") for p in problems)
    assert (
        "suites.Smoke.cases[1].scorer: 'contain' is not a scorer. Did you mean 'contains'? "
        "Use one of llm_judge, exact, contains, regex, valid_json." in problems
    )
    assert any(
        p.startswith("suites.Smoke.cases[2].id: 'a' is also the id of case 1") for p in problems
    )
    assert any(
        p.startswith(
            "suites.Smoke.cases[3].input[1].role: must be user or assistant, not 'system' "
            "(the system prompt comes from the agent version)"
        )
        for p in problems
    )
    assert any(
        p.startswith("suites.Smoke.cases[4].golden_answer: is not a regular expression")
        for p in problems
    )
    assert any(p.startswith("suites.Smoke.cases[5].weight: must be more than 0") for p in problems)
    assert any(p.startswith("suites.Smoke.cases[5].colour: unknown field.") for p in problems)
    assert "suites.good.cases: is empty: give at least one case." in problems


def test_parse_suite_file__duplicate_key__refused_with_line():
    text = "agent: support-bot\nsuites:\n  smoke:\n    cases: []\n  smoke:\n    cases: []\n"

    problems = _problems(text)

    assert len(problems) == 1 and "duplicate key 'smoke'" in problems[0]
    assert problems[0].startswith("line 5")


def test_parse_suite_file__python_tag__refused_by_the_safe_loader():
    problems = _problems("agent: !!python/object/apply:os.system ['true']\nsuites: {}\n")

    assert problems and "line 1" in problems[0]


def test_parse_suite_file__last_message_from_the_assistant__refused():
    text = (
        "agent: support-bot\nsuites:\n  s:\n    cases:\n      - input: [{role: user, content: a}, "
        "{role: assistant, content: b}]\n        golden_answer: c\n"
    )

    assert (
        "suites.s.cases[1].input: must end with a user message: that is what the agent answers."
        in _problems(text)
    )


def test_normalize_cases__judge_case_without_golden_answer__required():
    with pytest.raises(CaseError) as refused:
        normalize_cases([{"input": "q"}])

    assert [str(p) for p in refused.value.problems] == ["cases[1].golden_answer: is required."]


def test_content_hash__key_order__does_not_matter():
    a = normalize_cases([{"id": "x", "input": "q", "golden_answer": "g", "tags": ["t"]}])
    b = normalize_cases([{"tags": ["t"], "golden_answer": "g", "input": "q", "id": "x"}])

    assert content_hash(a) == content_hash(b)


def test_content_hash__any_change__differs():
    base = normalize_cases([{"id": "x", "input": "q", "golden_answer": "g"}])
    heavier = normalize_cases([{"id": "x", "input": "q", "golden_answer": "g", "weight": 2}])

    assert content_hash(base) != content_hash(heavier)


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
).filter(lambda s: s.strip())


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "input": _text,
                "golden_answer": _text,
                "criteria": st.one_of(st.just(""), _text),
                "weight": st.floats(0.5, 10, allow_nan=False),
                "scorer": st.sampled_from(["llm_judge", "exact", "contains"]),
            }
        ),
        min_size=1,
        max_size=4,
    )
)
def test_dump_cases__any_cases__read_back_equal(raw):
    cases = normalize_cases(raw)

    assert normalize_cases(load_yaml(dump_cases(cases))) == cases
