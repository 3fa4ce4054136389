"""versions.diff: side-by-side prompt rows, word highlights, folding, summaries, other fields."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from versions.diff import (
    CONTEXT_LINES,
    EN_DASH,
    MIN_FOLDED_LINES,
    MINUS,
    PromptDiff,
    Segment,
    diff_configs,
    diff_guardrails,
    diff_prompts,
    diff_tools,
    new_matcher,
)

CONFIG = {
    "system_prompt": "You help with billing.\n",
    "model": "gpt-4o-mini",
    "temperature": 0.3,
    "max_tokens": 800,
    "tools": ["lookup_invoice", "escalate_to_human"],
    "guardrails": {"blocked_topics": ["legal advice"], "pii": {"redact": ["iban", "card"]}},
}


def _old_side(diff: PromptDiff) -> str:
    return "".join(segment.text for row in diff.rows for segment in row.old)


def _new_side(diff: PromptDiff) -> str:
    return "".join(segment.text for row in diff.rows for segment in row.new)


def _kinds(diff: PromptDiff) -> list[str]:
    return [row.kind for row in diff.rows]


def _paragraph(seed: int, words: int, vocabulary: list[str] | None = None) -> str:
    """A paragraph of `words` words wrapped at about 80 characters."""
    rng = random.Random(seed)
    vocabulary = vocabulary or [f"w{seed}x{i}" for i in range(40)]
    lines, line = [], []
    for _ in range(words):
        line.append(rng.choice(vocabulary))
        if len(" ".join(line)) > 72:
            lines.append(" ".join(line))
            line = []
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines)


def _prompt(paragraphs: list[str]) -> str:
    return "\n\n".join(paragraphs) + "\n"


# --- alignment ------------------------------------------------------------------------


def test_diff_prompts__identical__no_changes_and_every_row_equal():
    text = "Line one.\n\nLine two.\n"

    diff = diff_prompts(text, text)

    assert not diff.changed
    assert diff.summary.text == "no changes"
    assert set(_kinds(diff)) == {"equal"}
    assert [(r.old_number, r.new_number) for r in diff.rows] == [(1, 1), (2, 2), (3, 3)]


def test_diff_prompts__inserted_line__right_side_only():
    diff = diff_prompts("a\nc\n", "a\nb\nc\n")

    assert _kinds(diff) == ["equal", "insert", "equal"]
    inserted = diff.rows[1]
    assert (inserted.old_number, inserted.new_number) == (None, 2)
    assert inserted.old == ()
    assert inserted.new == (Segment("insert", "b\n"),)
    assert inserted.new_marker == "+"
    assert inserted.old_marker == ""
    assert (diff.rows[2].old_number, diff.rows[2].new_number) == (2, 3)


def test_diff_prompts__deleted_line__left_side_only():
    diff = diff_prompts("a\nb\nc\n", "a\nc\n")

    assert _kinds(diff) == ["equal", "delete", "equal"]
    deleted = diff.rows[1]
    assert (deleted.old_number, deleted.new_number) == (2, None)
    assert deleted.old == (Segment("delete", "b\n"),)
    assert deleted.new == ()
    assert deleted.old_marker == MINUS


def test_diff_prompts__changed_line__word_level_segments_on_each_side():
    diff = diff_prompts("Be brief and polite.\n", "Be brief and friendly.\n")

    (row,) = diff.rows
    assert row.kind == "change"
    assert row.word_level
    assert row.old == (
        Segment("equal", "Be brief and "),
        Segment("delete", "polite"),
        Segment("equal", ".\n"),
    )
    assert row.new == (
        Segment("equal", "Be brief and "),
        Segment("insert", "friendly"),
        Segment("equal", ".\n"),
    )
    assert diff.summary.words_changed == 1
    assert diff.summary.text == "1 paragraph changed, 1 word changed"


def test_diff_prompts__line_removed_between_edited_lines__pairs_similar_lines_only():
    # Given three lines; the first and last are edited, the middle one removed
    old = "Answer in English.\nAlways mention the refund policy first.\nNever guess prices.\n"
    new = "Answer in French.\nNever guess any prices.\n"

    diff = diff_prompts(old, new)

    # Then the edited lines face their new versions and the removed line has no partner
    assert _kinds(diff) == ["change", "delete", "change"]
    assert diff.rows[1].old_text == "Always mention the refund policy first.\n"
    assert diff.rows[1].new == ()
    assert [(r.old_number, r.new_number) for r in diff.rows] == [(1, 1), (2, None), (3, 2)]


def test_diff_prompts__unrelated_lines__side_by_side_without_word_highlights():
    diff = diff_prompts("Greet warmly.\n", "Escalate refunds above 50 EUR.\n")

    (row,) = diff.rows
    assert row.kind == "replace"
    assert not row.word_level
    assert row.old == (Segment("delete", "Greet warmly.\n"),)
    assert row.new == (Segment("insert", "Escalate refunds above 50 EUR.\n"),)


def test_diff_prompts__removed_paragraph__starts_on_its_first_line_not_the_blank_before():
    # Given paragraphs separated by blank lines; the middle one goes
    old = "First.\n\nBilling rules.\nMore billing.\n\nLast.\n"
    new = "First.\n\nLast.\n"

    diff = diff_prompts(old, new)

    removed = [row.old_text for row in diff.rows if row.kind == "delete"]
    assert removed == ["Billing rules.\n", "More billing.\n", "\n"]


# --- folding --------------------------------------------------------------------------


def test_diff_prompts__long_unchanged_stretches__folded_with_context_around_the_change():
    # Given 100 lines where only line 50 changes
    old_lines = [f"Rule number {i} stays as it is.\n" for i in range(1, 101)]
    new_lines = list(old_lines)
    new_lines[49] = "Rule number 50 is stricter now.\n"

    diff = diff_prompts("".join(old_lines), "".join(new_lines))

    # Then only the change and CONTEXT_LINES lines on each side of it stay visible
    folded = [block for block in diff.blocks if block.folded]
    visible = [block for block in diff.blocks if not block.folded]
    assert [block.size for block in folded] == [49 - CONTEXT_LINES, 50 - CONTEXT_LINES]
    assert folded[0].old_range == f"1{EN_DASH}46"
    assert folded[1].new_range == f"54{EN_DASH}100"
    assert all(row.kind == "equal" for block in folded for row in block.rows)
    (shown,) = visible
    assert [row.old_number for row in shown.rows] == list(range(47, 54))
    assert shown.rows[CONTEXT_LINES].kind == "change"
    assert len(diff.rows) == 100  # folding hides rows, it never drops one


def test_diff_prompts__short_unchanged_stretch__not_folded():
    lines = [f"line {i}\n" for i in range(2 * CONTEXT_LINES + MIN_FOLDED_LINES - 1)]

    # Given a stretch between two changes, one line short of being worth folding
    old = "old start\n" + "".join(lines) + "old end\n"
    new = "new start\n" + "".join(lines) + "new end\n"

    diff = diff_prompts(old, new)

    assert not any(block.folded for block in diff.blocks)


def test_diff_prompts__identical_long_prompts__one_folded_block():
    text = "".join(f"line {i}\n" for i in range(40))

    diff = diff_prompts(text, text)

    assert [(block.folded, block.size) for block in diff.blocks] == [(True, 40)]


# --- summary --------------------------------------------------------------------------


def test_diff_prompts__3000_word_prompt_one_paragraph_removed__summary_and_left_side_only():
    # Given a 3,000-word prompt of 30 paragraphs; v2 drops paragraph 17
    paragraphs = [_paragraph(seed, 100) for seed in range(30)]
    removed = paragraphs[17]
    old, new = _prompt(paragraphs), _prompt(paragraphs[:17] + paragraphs[18:])
    assert len(old.split()) == 3000

    diff = diff_prompts(old, new)

    # Then the summary says exactly that, and the paragraph is on the left only
    assert diff.summary.text == f"{MINUS}1 paragraph, 100 words changed"
    assert (diff.summary.paragraphs_removed, diff.summary.paragraphs_added) == (1, 0)
    deleted = "".join(row.old_text for row in diff.rows if row.kind == "delete")
    assert deleted.strip() == removed
    assert set(_kinds(diff)) == {"equal", "delete"}
    assert removed.splitlines()[0] not in _new_side(diff)
    assert _old_side(diff) == old
    assert _new_side(diff) == new


def test_diff_prompts__paragraphs_added_removed_and_words__summary_text():
    # Given a removed 43-word paragraph and two added 50-word paragraphs elsewhere
    kept = [_paragraph(seed, 30) for seed in range(4)]
    gone = _paragraph(100, 43)
    added = [_paragraph(200, 50), _paragraph(201, 50)]
    old = _prompt([kept[0], gone, kept[1], kept[2], kept[3]])
    new = _prompt([kept[0], kept[1], kept[2], *added, kept[3]])

    diff = diff_prompts(old, new)

    assert diff.summary.text == f"+2 paragraphs, {MINUS}1 paragraph, 143 words changed"
    assert [kind for kind, _ in diff.summary.parts] == ["added", "removed", "words"]


def test_diff_prompts__empty_old__everything_inserted():
    new = "You are Ada.\n\nBe brief.\n"

    diff = diff_prompts("", new)

    assert _kinds(diff) == ["insert", "insert", "insert"]
    assert [row.new_number for row in diff.rows] == [1, 2, 3]
    assert diff.summary.text == "+2 paragraphs, 5 words changed"
    assert (diff.old_line_count, diff.new_line_count) == (0, 3)


def test_diff_prompts__trailing_whitespace_only__visible_and_not_no_changes():
    diff = diff_prompts("Be brief.\nBye.\n", "Be brief.  \nBye.\n")

    row = diff.rows[0]
    assert row.kind == "change"
    edits = [segment for segment in row.new if segment.is_edit]
    assert [(s.op, s.shown) for s in edits] == [("insert", "··")]
    assert edits[0].is_whitespace
    assert diff.summary.text == "1 paragraph changed, whitespace only"


def test_diff_prompts__final_line_break_added__visible_as_a_symbol():
    diff = diff_prompts("a\nb", "a\nb\n")

    assert diff.changed
    (edit,) = [segment for row in diff.rows for segment in row.new if segment.is_edit]
    assert edit.shown == "↵"
    assert diff.summary.text == "whitespace only"


def test_segment_shown__whitespace_edits__visible_symbols_equal_text_untouched():
    assert Segment("delete", " \t\n").shown == "·→↵"
    assert Segment("insert", "\u00a0").shown == "·"
    assert Segment("equal", "  kept  \n").shown == "  kept  "
    assert Segment("delete", "word \n").shown == "word "
    assert Segment("delete", "\n").plain == ""


def test_diff_prompts__unicode__words_highlighted_whole():
    old = "Réponds en français 🇫🇷 et sois bref.\n日本語で答えてください。\n"
    new = "Réponds en allemand 🇩🇪 et sois bref.\n日本語で答えてください。\n"

    diff = diff_prompts(old, new)

    row = diff.rows[0]
    assert row.kind == "change"
    assert "".join(s.text for s in row.old if s.is_edit).startswith("français")
    assert "".join(s.text for s in row.new if s.is_edit).startswith("allemand")
    assert diff.rows[1].kind == "equal"
    assert _old_side(diff) == old
    assert _new_side(diff) == new


def test_diff_prompts__script_markup__kept_as_text_for_the_template_to_escape():
    diff = diff_prompts("Hello\n", "<script>alert(1)</script>\n")

    assert "<script>alert(1)</script>\n" in _new_side(diff)


# --- every character accounted for ----------------------------------------------------

lines = st.sampled_from(
    ["", "  ", "alpha beta", "alpha gamma", "delta", "é ü 🙂", "tab\there", "<b>x</b>", "x y z"]
)
prompts = st.lists(lines, max_size=25).map("\n".join) | st.text(max_size=80)


@settings(max_examples=300, deadline=None)
@given(old=prompts, new=prompts)
def test_diff_prompts__any_texts__sides_rebuild_both_prompts_and_numbers_count_up(old, new):
    diff = diff_prompts(old, new)

    assert _old_side(diff) == old
    assert _new_side(diff) == new
    old_numbers = [row.old_number for row in diff.rows if row.old_number is not None]
    new_numbers = [row.new_number for row in diff.rows if row.new_number is not None]
    assert old_numbers == list(range(1, len(old_numbers) + 1))
    assert new_numbers == list(range(1, len(new_numbers) + 1))
    assert diff.changed == (old != new)
    assert (diff.summary.text == "no changes") == (old == new)
    for row in diff.rows:
        assert (row.old_number is None) == (row.old == ())
        assert (row.new_number is None) == (row.new == ())


# --- large prompts: behaviour, not timings (bench/diff_speed.py prints those) ------------


def test_new_matcher__default_timeout__never_unbounded():
    # Diff_Timeout = 0 lets two unrelated 20,000-character prompts take ~90 s (RECIPES.md).
    assert new_matcher().Diff_Timeout == 1.0


def test_diff_prompts__50k_similar_with_scattered_edits__exactly_the_edited_lines():
    # Given a 50,000-character prompt and a copy with every 40th line edited
    paragraphs = [_paragraph(seed, 60) for seed in range(150)]
    old = _prompt(paragraphs)[:50_000]
    old_lines = old.splitlines(keepends=True)
    edited = {i for i in range(5, len(old_lines), 40) if " " in old_lines[i]}
    new_lines = [
        line.replace(" ", " NEW ", 1) if i in edited else line for i, line in enumerate(old_lines)
    ]
    new = "".join(new_lines)

    diff = diff_prompts(old, new)

    changed = [row.old_number - 1 for row in diff.rows if row.kind != "equal"]
    assert changed == sorted(edited)
    assert all(row.kind == "change" for row in diff.rows if row.kind != "equal")
    assert diff.summary.words_changed == len(edited)


def test_diff_prompts__50k_unrelated__whole_lines_without_word_noise():
    old = _prompt([_paragraph(seed, 60) for seed in range(0, 150)])[:50_000]
    new = _prompt([_paragraph(seed, 60) for seed in range(1000, 1150)])[:50_000]

    diff = diff_prompts(old, new)

    assert _old_side(diff) == old
    assert _new_side(diff) == new
    assert not any(row.kind == "change" for row in diff.rows)
    assert diff.summary.paragraphs_removed == len(old.strip().split("\n\n"))


# --- model, temperature, max_tokens, tools, guardrails ----------------------------------


def test_diff_configs__scalars__rows_with_changed_flags():
    diff = diff_configs(CONFIG, {**CONFIG, "temperature": 0.5})

    rows = {row.field: row for row in diff.scalars}
    assert [row.field for row in diff.scalars] == ["model", "temperature", "max_tokens"]
    assert rows["temperature"].changed
    assert (rows["temperature"].old_text, rows["temperature"].new_text) == ("0.3", "0.5")
    assert not rows["model"].changed
    assert not rows["max_tokens"].changed
    assert diff.changed_fields == ("temperature",)


def test_diff_configs__nothing_before__every_field_new():
    diff = diff_configs({}, CONFIG)

    assert all(row.changed and row.old is None and row.old_text == "—" for row in diff.scalars)
    assert diff.tools.added == ("lookup_invoice", "escalate_to_human")
    assert {change.kind for change in diff.guardrails.changes} == {"added"}
    assert diff.changed_fields == (
        "system_prompt",
        "model",
        "temperature",
        "max_tokens",
        "tools",
        "guardrails",
    )


def test_diff_configs__same_config__nothing_changed():
    diff = diff_configs(CONFIG, dict(CONFIG))

    assert not diff.changed
    assert diff.changed_fields == ()


def test_diff_tools__added_removed_unchanged__in_order():
    diff = diff_tools(["a", "b", "c", "d"], ["d", "e", "b", "f"])

    assert diff.added == ("e", "f")
    assert diff.removed == ("a", "c")
    assert diff.unchanged == ("d", "b")
    assert diff.order_changed
    assert diff.changed


def test_diff_tools__same_tools__unchanged():
    diff = diff_tools(["a", "b"], ["a", "b"])

    assert (diff.added, diff.removed, diff.order_changed, diff.changed) == ((), (), False, False)


def test_diff_guardrails__nested_and_list_changes__by_json_path():
    old = {
        "blocked_topics": ["legal advice"],
        "pii": {"redact": ["iban", "card"], "mode": "mask"},
        "max_turns": 8,
        "limits": {"soft": 1},
    }
    new = {
        "blocked_topics": ["legal advice", "medical advice"],
        "pii": {"redact": ["iban", "email"]},
        "max_turns": 8.5,
        "limits": True,
        "spaced key": {"a.b": None},
        "empty": [],
    }

    diff = diff_guardrails(old, new)

    assert [(c.path, c.kind, c.old, c.new) for c in diff.changes] == [
        ("blocked_topics[1]", "added", None, '"medical advice"'),
        ("empty", "added", None, "[]"),
        ("limits", "added", None, "true"),
        ("limits.soft", "removed", "1", None),
        ("max_turns", "changed", "8", "8.5"),
        ("pii.mode", "removed", '"mask"', None),
        ("pii.redact[1]", "changed", '"card"', '"email"'),
        ('["spaced key"]["a.b"]', "added", None, "null"),
    ]
    assert diff.unchanged == 2
    assert (diff.added, diff.removed, diff.modified) == (4, 2, 2)


def test_diff_guardrails__type_of_value_changes__reported_as_changed():
    diff = diff_guardrails({"strict": 1, "level": "1"}, {"strict": True, "level": 1})

    assert [(c.path, c.old, c.new) for c in diff.changes] == [
        ("level", '"1"', "1"),
        ("strict", "1", "true"),
    ]


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_values = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(old=st.dictionaries(st.text(max_size=4), json_values, max_size=4), new=json_values)
def test_diff_guardrails__any_values__no_change_with_itself_and_paths_unique(old, new):
    assert diff_guardrails(old, old).changes == ()
    guard_new = new if isinstance(new, dict) else {"value": new}

    diff = diff_guardrails(old, guard_new)

    paths = [change.path for change in diff.changes]
    assert len(paths) == len(set(paths))
    assert diff.changed == (old != guard_new) or old == guard_new


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("a\n", "a\n", "no changes"),
        ("Be brief.\n", "Be short.\n", "1 paragraph changed, 1 word changed"),
        ("Be brief.\n", "Escalate.\n", f"+1 paragraph, {MINUS}1 paragraph, 2 words changed"),
        ("a\n\nb\n", "a\n", f"{MINUS}1 paragraph, 1 word changed"),
        ("a\n", "a\n\nb c\n", "+1 paragraph, 2 words changed"),
        ("a\n\nb\n", "a\n\n\nb\n", "whitespace only"),
    ],
)
def test_prompt_summary__text(old, new, expected):
    assert diff_prompts(old, new).summary.text == expected
