"""versions.file_format: parsing and validating one agent file, and writing it back."""

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from versions.config import MAX_PROMPT_CHARS
from versions.file_format import AgentFile, AgentFileError, dump_agent_file, parse_agent_file

CONFIG = {
    "system_prompt": "You are helpful.\n",
    "model": "gpt-4o-mini",
    "temperature": 0.2,
    "max_tokens": 800,
    "tools": ["lookup_order"],
    "guardrails": {"blocked_topics": ["medical advice"]},
}


def agent_file(**config: object) -> AgentFile:
    return AgentFile(
        slug="support-bot",
        name="Support bot",
        description="Helps customers.",
        change_description="Shorter answers.",
        config={**CONFIG, **config},
    )


def parse(text: str, stem: str = "support-bot") -> AgentFile:
    return parse_agent_file(textwrap.dedent(text), file_stem=stem)


def problems(text: str, stem: str = "support-bot") -> list[str]:
    with pytest.raises(AgentFileError) as excinfo:
        parse(text, stem)
    return [str(problem) for problem in excinfo.value.problems]


def with_prompt_block(block: str) -> str:
    """A valid file whose system_prompt is `block` (YAML, starting at the indicator)."""
    return (
        "slug: support-bot\n"
        "name: Support bot\n"
        "config:\n"
        "  model: gpt-4o-mini\n"
        "  temperature: 0.2\n"
        "  max_tokens: 800\n"
        f"  system_prompt: {block}"
    )


# Parsing


def test_parse_agent_file__complete_file__all_fields_and_normalised_config():
    result = parse("""\
        slug: support-bot
        name: "  Support bot  "
        description: Helps customers.
        change_description: Shorter answers.
        config:
          model: gpt-4o-mini
          temperature: 1
          max_tokens: 800
          system_prompt: |
            You are helpful.
        """)

    assert result == AgentFile(
        slug="support-bot",
        name="Support bot",
        description="Helps customers.",
        change_description="Shorter answers.",
        config={**CONFIG, "temperature": 1.0, "tools": [], "guardrails": {}},
    )


def test_parse_agent_file__optional_keys_missing__empty_description_and_no_change_description():
    result = parse(with_prompt_block("Be brief.\n"))

    assert (result.description, result.change_description) == ("", None)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("|\n    Line one.\n    Line two.\n", "Line one.\nLine two.\n"),
        ("|-\n    No trailing newline.\n", "No trailing newline."),
        ("|+\n    Keep both.\n\n", "Keep both.\n\n"),
        ("|\n    First.\n\n\n    After two blank lines.\n", "First.\n\n\nAfter two blank lines.\n"),
        ("|2\n      Two leading spaces.\n    None.\n", "  Two leading spaces.\nNone.\n"),
        ("|\n    # not a comment: key: value\n", "# not a comment: key: value\n"),
        ('"  quoted, with a trailing space \\n"\n', "  quoted, with a trailing space \n"),
    ],
    ids=["literal", "strip", "keep", "blank-lines", "leading-spaces", "hash-and-colon", "quoted"],
)
def test_parse_agent_file__block_scalar_styles__prompt_kept_exactly(block, expected):
    result = parse_agent_file(with_prompt_block(block), file_stem="support-bot")

    assert result.config["system_prompt"] == expected


def test_parse_agent_file__unknown_top_level_key__error_names_it_and_suggests():
    found = problems(with_prompt_block("Be brief.\n") + "descripton: typo\n")

    assert found == [
        "descripton: unknown field. Did you mean 'description'? "
        "Allowed: slug, name, description, change_description, config."
    ]


def test_parse_agent_file__unknown_config_key__error_names_config_field_and_suggests():
    found = problems(with_prompt_block("Be brief.\n") + "  temprature: 0.5\n")

    assert found[0].startswith(
        "config.temprature: unknown field. Did you mean 'temperature'? Allowed: system_prompt,"
    )
    assert len(found) == 1


def test_parse_agent_file__slug_differs_from_file_name__refused_with_both_names():
    found = problems(with_prompt_block("Be brief.\n"), stem="support")

    assert found == [
        "slug: 'support-bot' does not match the file name 'support.yaml'. "
        "Rename the file to 'support-bot.yaml' or set slug: support."
    ]


def test_parse_agent_file__required_keys_missing__each_reported():
    found = problems("description: only this\n")

    assert found == ["slug: is required.", "name: is required.", "config: is required."]


def test_parse_agent_file__wrong_types__each_reported_by_field():
    found = problems("""\
        slug: support-bot
        name: 42
        description: 2024-01-01
        change_description: [a, b]
        config: just text
        """)

    assert found == [
        "name: must be text, not a number. Put it in quotes.",
        "description: must be text, not a date. Put it in quotes.",
        "change_description: must be text, not a list.",
        "config: must be a mapping with the keys system_prompt, model, temperature, "
        "max_tokens, tools, guardrails, not text.",
    ]


def test_parse_agent_file__several_config_problems__all_reported_at_once():
    found = problems("""\
        slug: support-bot
        name: Support bot
        config:
          system_prompt: "   "
          model: gpt 4o
          temperature: 3
          max_tokens: 800
        """)

    assert [problem.split(":")[0] for problem in found] == [
        "config.system_prompt",
        "config.model",
        "config.temperature",
    ]


def test_parse_agent_file__yaml_syntax_error__line_and_column_given():
    found = problems("""\
        slug: support-bot
        name: Support bot
        config:
          model: gpt-4o-mini: latest
        """)

    assert found == ["line 4, column 21: invalid YAML: mapping values are not allowed here"]


def test_parse_agent_file__unclosed_bracket__line_of_the_opening_given():
    found = problems("slug: support-bot\nname: [Support bot\nconfig: {}\n")

    assert len(found) == 1
    assert found[0].startswith("line 3, column 7: invalid YAML: ")
    assert "(while parsing a flow sequence on line 2)" in found[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "slug: support-bot\nname: A\nname: B\n",
            "line 3, column 1: duplicate key 'name' (first defined on line 2). "
            "Remove one of them: only one value can apply.",
        ),
        (
            "slug: support-bot\nconfig:\n  temperature: 0.2\n  model: m\n  temperature: 0.9\n",
            "line 5, column 3: duplicate key 'temperature' (first defined on line 3). "
            "Remove one of them: only one value can apply.",
        ),
    ],
    ids=["top-level", "inside-config"],
)
def test_parse_agent_file__duplicate_key__refused_with_both_lines(text, expected):
    assert problems(text) == [expected]


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- slug: support-bot\n", "a list"), ("just some text\n", "text"), ("42\n", "a number")],
)
def test_parse_agent_file__top_level_not_a_mapping__refused(text, kind):
    assert problems(text) == [
        "the top level must be a mapping with the keys slug, name, description, "
        f"change_description, config, not {kind}."
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_parse_agent_file__empty__refused_with_expected_keys(text):
    assert problems(text) == [
        "the file is empty. Expected the keys slug, name, description, change_description, config."
    ]


def test_parse_agent_file__alias__refused():
    found = problems("slug: &s support-bot\nname: *s\n")

    assert found == [
        "line 2, column 7: aliases such as *s are not supported in agent files; "
        "write the value out in full."
    ]


def test_parse_agent_file__second_document__refused():
    found = problems(with_prompt_block("Be brief.\n") + "---\nslug: other\n")

    assert found == [
        "line 8, column 1: a second YAML document starts here ('---'); write one agent per file."
    ]


def test_parse_agent_file__python_tag__refused_not_executed():
    found = problems("slug: !!python/object/apply:os.getcwd []\n")

    assert len(found) == 1
    assert found[0].startswith("line 1, column 7: could not determine a constructor")


# Writing and the round trip


def test_dump_agent_file__multiline_prompt__literal_block_after_the_short_fields():
    text = dump_agent_file(agent_file(system_prompt="Line one.\n\nLine two.\n"))

    assert text == textwrap.dedent("""\
        slug: support-bot
        name: Support bot
        description: Helps customers.
        change_description: Shorter answers.
        config:
          model: gpt-4o-mini
          temperature: 0.2
          max_tokens: 800
          tools:
            - lookup_order
          guardrails:
            blocked_topics:
              - medical advice
          system_prompt: |
            Line one.

            Line two.
        """)


def test_dump_agent_file__no_description_or_change_description__keys_left_out():
    original = AgentFile(slug="faq-bot", name="FAQ", config=CONFIG)

    text = dump_agent_file(original)

    assert "description" not in text
    assert parse_agent_file(text, file_stem="faq-bot") == original


@pytest.mark.parametrize(
    "prompt",
    [
        "Line one.\nLine two.\n",
        "No trailing newline.\nSecond line.",
        "Two trailing newlines.\n\n",
        "\n\nTwo leading blank lines.\n",
        "  Leading spaces.\nNone here.\n",
        "Ünïcödé, 日本語, emoji 🙂\nand a second line\n",
        "# a hash\nkey: value\n- a dash\n",
        "Colon: space. Quote ' and \" and a backslash \\.\n",
        "---\n...\n",
        "single line",
        "single line with key: value and # hash",
        " padded ",
        "yes",
        "123",
        "null",
        "Tab\tinside\nand\tagain\n",
    ],
)
def test_dump_agent_file__prompt__parses_back_identical(prompt):
    original = agent_file(system_prompt=prompt)

    assert parse_agent_file(dump_agent_file(original), file_stem="support-bot") == original


def test_dump_agent_file__multiline_prompt_that_a_literal_block_can_hold__written_as_block():
    text = dump_agent_file(agent_file(system_prompt="  Leading spaces.\nTab\tinside.\n"))

    assert "  system_prompt: |2\n      Leading spaces.\n    Tab\tinside.\n" in text


@pytest.mark.parametrize(
    ("prompt", "written_as"),
    [
        ("Trailing space \nnext line\n", '"Trailing space \\nnext line\\n"'),
        ("Trailing tab\t\nnext line\n", '"Trailing tab\\t\\nnext line\\n"'),
        ("Windows\r\nline end\n", '"Windows\\r\\nline end\\n"'),
        ("Control \x07 character\nnext\n", '"Control \\a character\\nnext\\n"'),
        ("Next-line\x85character\n", '"Next-line\\Ncharacter\\n"'),
        ("Line\u2028separator\n", '"Line\\Lseparator\\n"'),
        ("Ends with spaces\n  ", '"Ends with spaces\\n  "'),
    ],
    ids=["trailing-space", "trailing-tab", "crlf", "bell", "nel", "line-separator", "end-space"],
)
def test_dump_agent_file__literal_block_would_not_read_back__double_quoted_and_identical(
    prompt, written_as
):
    original = agent_file(system_prompt=prompt)

    text = dump_agent_file(original)

    assert f"  system_prompt: {written_as}\n" in text
    assert parse_agent_file(text, file_stem="support-bot") == original


prompts = st.text(min_size=1, max_size=300).filter(
    lambda text: text.strip() and "\x00" not in text and len(text) <= MAX_PROMPT_CHARS
)
# Lines built from a YAML-hostile alphabet, so whitespace and indicators meet line breaks often.
hostile_prompts = (
    st.lists(
        st.text(alphabet=" \t#:-|>'\"\\\u00e9\u2028\x85\rab", max_size=12), min_size=1, max_size=8
    )
    .map("\n".join)
    .filter(lambda text: text.strip())
)
texts = st.text(max_size=80).filter(lambda text: "\x00" not in text)
# Text the store accepts: no NUL (PostgreSQL) and no lone surrogates (UTF-8).
storable_chars = st.characters(codec="utf-8", exclude_characters="\x00")
plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(storable_chars, max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(storable_chars, max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)  # timing varies on shared CI machines
@given(
    prompt=prompts | hostile_prompts,
    name=texts.map(str.strip).filter(bool),
    description=texts.map(str.strip),
    change_description=st.none() | texts,
    guardrails=st.dictionaries(st.text(storable_chars, max_size=8), plain_json, max_size=3),
)
def test_dump_agent_file__arbitrary_text__parses_back_identical(
    prompt, name, description, change_description, guardrails
):
    original = AgentFile(
        slug="support-bot",
        name=name,
        description=description,
        change_description=change_description,
        config={**CONFIG, "system_prompt": prompt, "guardrails": guardrails},
    )

    assert parse_agent_file(dump_agent_file(original), file_stem="support-bot") == original
