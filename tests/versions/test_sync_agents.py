"""versions.sync and `manage.py sync_agents`: import a folder of agent files, all or nothing."""

import json
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Forbidden
from agentconfig.models import Agent
from tests import factories
from tests.versions.git_helpers import agent_yaml
from versions.models import AgentVersion, Source
from versions.services import create_version
from versions.sync import SyncError, sync_agents

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
ACTOR = Actor.system("tests")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """An agent folder with support-bot and faq-bot."""
    root = tmp_path / "agents"
    write(root, "support-bot.yaml", agent_yaml("support-bot"))
    write(root, "faq-bot.yaml", agent_yaml("faq-bot", prompt="Answer from the FAQ."))
    return root


def errors_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(SyncError) as excinfo:
        sync_agents(path=path, actor=ACTOR, **kwargs)
    return excinfo.value.errors


def assert_nothing_written() -> None:
    assert Agent.objects.count() == 0
    assert AgentVersion.objects.count() == 0


# Writing


def test_sync_agents__new_folder__creates_each_agent_with_v1_from_the_file(db, folder):
    report = sync_agents(path=folder, actor=ACTOR)

    assert [(r.slug, r.action, r.version_number) for r in report.results] == [
        ("faq-bot", "created", 1),
        ("support-bot", "created", 1),
    ]
    version = AgentVersion.objects.get(agent__slug="support-bot")
    assert version.version_number == 1
    assert version.system_prompt == "You are helpful.\n"
    assert version.source == Source.FILE_IMPORT
    assert version.source_path == "support-bot.yaml"
    assert version.change_description == "Imported from support-bot.yaml"
    assert version.created_by_label == "tests"
    agent = Agent.objects.get(slug="support-bot")
    assert agent.name == "Support Bot"
    assert agent.history.count() == 1


def test_sync_agents__example_fixture_folder__subfolder_path_and_file_change_description(db):
    sync_agents(path=FIXTURES, actor=ACTOR)

    version = AgentVersion.objects.get(agent__slug="support-bot")
    assert version.source_path == "support/support-bot.yaml"
    assert version.change_description == "First version from the repository."
    assert version.tools == ["lookup_order", "refund_order"]
    assert version.guardrails == {
        "blocked_topics": ["medical advice", "legal advice"],
        "max_turns": 20,
    }
    assert version.system_prompt == (
        "You are the support agent of Example Shop.\n"
        "# Not a YAML comment: inside a literal block, this line is part of the prompt.\n"
        "Tone: friendly, brief.\n"
    )
    assert Agent.objects.get(slug="faq-bot").description == "Answers questions from the public FAQ."


def test_sync_agents__run_twice__second_run_writes_nothing(db, folder):
    sync_agents(path=folder, actor=ACTOR)
    history_rows = Agent.history.count()

    report = sync_agents(path=folder, actor=ACTOR)

    assert Agent.objects.count() == 2
    assert AgentVersion.objects.count() == 2
    assert Agent.history.count() == history_rows
    assert {r.action for r in report.results} == {"unchanged"}
    assert report.summary() == (
        f"Synced 2 agent files from {folder}: 0 created, 0 new versions, 2 unchanged."
    )


def test_sync_agents__one_prompt_changed__v2_for_that_agent_only(db, folder):
    sync_agents(path=folder, actor=ACTOR)
    write(folder, "support-bot.yaml", agent_yaml("support-bot", prompt="You are very helpful."))

    report = sync_agents(path=folder, actor=ACTOR)

    assert [(r.slug, r.action, r.version_number) for r in report.results] == [
        ("faq-bot", "unchanged", 1),
        ("support-bot", "new_version", 2),
    ]
    v1, v2 = AgentVersion.objects.filter(agent__slug="support-bot").order_by("version_number")
    assert v2.system_prompt == "You are very helpful.\n"
    assert v2.derived_from == v1
    assert AgentVersion.objects.filter(agent__slug="faq-bot").count() == 1


def test_sync_agents__only_key_order_and_defaults_differ__no_new_version(db, folder):
    sync_agents(path=folder, actor=ACTOR)
    write(
        folder,
        "support-bot.yaml",
        "config:\n"
        "  system_prompt: |\n"
        "    You are helpful.\n"
        "  tools: []\n"
        "  max_tokens: 800\n"
        "  temperature: 0.20\n"
        "  model: gpt-4o-mini\n"
        "name: Support Bot\n"
        "slug: support-bot\n",
    )

    sync_agents(path=folder, actor=ACTOR)

    assert AgentVersion.objects.filter(agent__slug="support-bot").count() == 1


def test_sync_agents__file_back_to_an_older_config__new_version_compared_to_latest(db, folder):
    sync_agents(path=folder, actor=ACTOR)
    original = (folder / "support-bot.yaml").read_text()
    write(folder, "support-bot.yaml", agent_yaml("support-bot", prompt="Changed."))
    sync_agents(path=folder, actor=ACTOR)
    write(folder, "support-bot.yaml", original)

    sync_agents(path=folder, actor=ACTOR)

    numbers = AgentVersion.objects.filter(agent__slug="support-bot").values_list(
        "version_number", flat=True
    )
    assert sorted(numbers) == [1, 2, 3]


def test_sync_agents__agent_exists_without_versions__gets_v1_from_the_file(db, folder):
    factories.create_agent(slug="support-bot", name="Support Bot")

    report = sync_agents(path=folder, actor=ACTOR)

    assert ("support-bot", "new_version", 1) in [
        (r.slug, r.action, r.version_number) for r in report.results
    ]
    assert Agent.objects.count() == 2


def test_sync_agents__agent_has_newer_version_from_the_admin__file_becomes_next_version(db, folder):
    sync_agents(path=folder, actor=ACTOR)
    agent = Agent.objects.get(slug="support-bot")
    create_version(
        agent=agent,
        actor=ACTOR,
        config=factories.config(),
        change_description="Edited in the admin.",
        source=Source.BROWSER,
    )

    sync_agents(path=folder, actor=ACTOR)

    latest = agent.versions.order_by("-version_number").first()
    assert (latest.version_number, latest.source) == (3, Source.FILE_IMPORT)
    assert latest.system_prompt == "You are helpful.\n"


def test_sync_agents__name_and_description_changed__agent_updated_with_history(db, folder):
    sync_agents(path=folder, actor=ACTOR)
    write(
        folder,
        "support-bot.yaml",
        agent_yaml("support-bot", name="Customer support", extra="description: Orders.\n"),
    )

    report = sync_agents(path=folder, actor=ACTOR)

    agent = Agent.objects.get(slug="support-bot")
    assert (agent.name, agent.description) == ("Customer support", "Orders.")
    result = next(r for r in report.results if r.slug == "support-bot")
    assert (result.action, result.updated_fields) == ("unchanged", ("name", "description"))
    assert result.describe() == (
        "support-bot: updated name and description; unchanged at v1 (support-bot.yaml)"
    )
    latest_history = agent.history.first()
    assert latest_history.history_type == "~"
    assert latest_history.history_change_reason == "tests: from support-bot.yaml"
    assert agent.versions.count() == 1


# Validation: nothing is written unless every file is valid


def test_sync_agents__one_invalid_file_among_valid__nothing_written_and_error_names_it(db, folder):
    write(folder, "billing-bot.yaml", agent_yaml("billing-bot", config_extra="  temprature: 1\n"))

    errors = errors_of(folder)

    assert errors == [
        f"{folder}/billing-bot.yaml: config.temprature: unknown field. Did you mean "
        "'temperature'? Allowed: system_prompt, model, temperature, max_tokens, tools, guardrails."
    ]
    assert_nothing_written()


def test_sync_agents__several_invalid_files__every_error_listed(db, folder):
    write(folder, "a-bot.yaml", agent_yaml("a-bot", extra="owner: me\n"))
    write(folder, "b-bot.yaml", agent_yaml("b-bot", config_extra="  tools: [not valid!]\n"))
    write(folder, "c-bot.yaml", agent_yaml("other-slug"))
    write(folder, "d-bot.yaml", "slug: d-bot\nname: [unclosed\n")

    with pytest.raises(SyncError) as excinfo:
        sync_agents(path=folder, actor=ACTOR)

    errors = excinfo.value.errors
    assert [error.split(": ")[:2] for error in errors] == [
        [f"{folder}/a-bot.yaml", "owner"],
        [f"{folder}/b-bot.yaml", "config.tools"],
        [f"{folder}/c-bot.yaml", "slug"],
        [f"{folder}/d-bot.yaml", "line 3, column 1"],
    ]
    assert excinfo.value.message.splitlines()[0] == (
        f"Nothing was written: 4 problems in 4 files under {folder}:"
    )
    assert_nothing_written()


def test_sync_agents__unknown_top_level_key__refused_with_suggestion(db, folder):
    write(folder, "faq-bot.yaml", agent_yaml("faq-bot", extra="descriptoin: typo\n"))

    errors = errors_of(folder)

    assert errors[0].startswith(
        f"{folder}/faq-bot.yaml: descriptoin: unknown field. Did you mean 'description'?"
    )
    assert_nothing_written()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            agent_yaml("faq"),
            "slug: 'faq' does not match the file name 'faq-bot.yaml'. "
            "Rename the file to 'faq.yaml' or set slug: faq-bot.",
            id="slug-differs-from-file-name",
        ),
        pytest.param(
            "slug: faq-bot\nname: FAQ\nconfig:\n  model: a: b\n",
            "line 4, column 11: invalid YAML: mapping values are not allowed here",
            id="yaml-syntax-error-line-and-column",
        ),
        pytest.param(
            agent_yaml("faq-bot", extra="name: Second name\n"),
            "line 3, column 1: duplicate key 'name' (first defined on line 2). "
            "Remove one of them: only one value can apply.",
            id="duplicate-key-with-line",
        ),
        pytest.param(
            "- slug: faq-bot\n",
            "the top level must be a mapping with the keys slug, name, "
            "description, change_description, config, not a list.",
            id="top-level-is-a-list",
        ),
    ],
)
def test_sync_agents__malformed_file__refused_with_where_and_why(db, folder, text, message):
    write(folder, "faq-bot.yaml", text)

    errors = errors_of(folder)

    assert errors == [f"{folder}/faq-bot.yaml: {message}"]


def test_sync_agents__credential_in_prompt__refused_with_its_location(db, folder):
    write(
        folder,
        "faq-bot.yaml",
        agent_yaml("faq-bot", prompt="Be kind.\n    Use key sk-proj-abcdefghijklmnopqrstuvwx0123"),
    )

    errors = errors_of(folder)

    assert len(errors) == 1
    assert errors[0].startswith(
        f"{folder}/faq-bot.yaml: config.system_prompt: system_prompt, line 2, column 9 looks "
        "like an OpenAI API key (sk-pro…). Remove it"
    )
    assert "abcdefghij" not in errors[0]
    assert_nothing_written()


def test_sync_agents__credential_in_guardrails__refused_with_its_path(db, folder):
    write(
        folder,
        "faq-bot.yaml",
        agent_yaml(
            "faq-bot", config_extra="  guardrails:\n    webhook: https://u:pw@example.com\n"
        ),
    )

    errors = errors_of(folder)

    assert errors[0].startswith(
        f"{folder}/faq-bot.yaml: config.guardrails: guardrails.webhook (line 1, column 1) looks "
        "like a password in a URL"
    )


def test_sync_agents__invalid_name_and_slug_pattern__model_rules_applied(db, tmp_path):
    write(tmp_path, "Support_Bot.yaml", agent_yaml("Support_Bot", name="x" * 201))

    errors = errors_of(tmp_path)

    assert [error.split(": ")[1] for error in errors] == ["slug", "name"]
    assert "lowercase letters, digits and hyphens" in errors[0]
    assert "at most 200 characters" in errors[1]


def test_sync_agents__blank_change_description__refused(db, folder):
    write(folder, "faq-bot.yaml", agent_yaml("faq-bot", extra="change_description: '  '\n"))

    errors = errors_of(folder)

    assert errors == [
        f"{folder}/faq-bot.yaml: change_description: is required: say what changed and why, "
        "in a sentence."
    ]


def test_sync_agents__same_slug_in_two_subfolders__refused(db, folder):
    write(folder, "team-a/faq-bot.yaml", agent_yaml("faq-bot"))

    errors = errors_of(folder)

    assert errors == [
        f"{folder}/team-a/faq-bot.yaml: slug: the agent 'faq-bot' is also defined in "
        f"{folder}/faq-bot.yaml. Each agent must have exactly one file."
    ]


def test_sync_agents__yml_extension__refused_not_skipped(db, folder):
    write(folder, "billing-bot.yml", agent_yaml("billing-bot"))

    errors = errors_of(folder)

    assert errors == [
        f"{folder}/billing-bot.yml: agent files must end in '.yaml'. "
        "Rename it to 'billing-bot.yaml'."
    ]


def test_sync_agents__hidden_and_other_files__ignored(db, folder):
    write(folder, ".git/config.yaml", "not: an agent\n")
    write(folder, ".faq-bot.yaml.swp", "garbage")
    write(folder, "README.md", "# Agents\n")

    report = sync_agents(path=folder, actor=ACTOR)

    assert [r.slug for r in report.results] == ["faq-bot", "support-bot"]


def test_sync_agents__empty_folder__clear_error(db, tmp_path):
    write(tmp_path, "README.md", "nothing here\n")

    assert errors_of(tmp_path) == [
        f"{tmp_path}: no agent files found. Expected one <slug>.yaml file per agent "
        "(for example support-bot.yaml)."
    ]


def test_sync_agents__path_does_not_exist__clear_error(db, tmp_path):
    assert errors_of(tmp_path / "missing") == [
        f"{tmp_path}/missing: does not exist. Give the folder that holds the agent files."
    ]


def test_sync_agents__path_is_a_file__clear_error(db, folder):
    errors = errors_of(folder / "faq-bot.yaml")

    assert errors == [
        f"{folder}/faq-bot.yaml: is not a folder. Give the folder that holds the <slug>.yaml "
        "agent files."
    ]


def test_sync_agents__not_utf8__refused(db, folder):
    (folder / "faq-bot.yaml").write_bytes(agent_yaml("faq-bot").encode("latin-1") + b"\xe9\n")

    errors = errors_of(folder)

    assert errors == [f"{folder}/faq-bot.yaml: line 9: is not UTF-8 text. Save the file as UTF-8."]


# All or nothing, permissions


def test_sync_agents__database_error_half_way__nothing_written(db, folder):
    inserts = []

    def fail_on_second_version(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "versions_agentversion"'):
            inserts.append(sql)
            if len(inserts) == 2:
                raise OperationalError("simulated outage")
        return execute(sql, params, many, context)

    with (
        connection.execute_wrapper(fail_on_second_version),
        pytest.raises(OperationalError, match="simulated outage"),
    ):
        sync_agents(path=folder, actor=ACTOR)

    assert len(inserts) == 2
    assert_nothing_written()


def test_sync_agents__user_without_add_agent__refused_before_writing(db, folder):
    user = factories.user_with("versions.add_agentversion")

    with pytest.raises(Forbidden, match="may not create agents"):
        sync_agents(path=folder, actor=Actor.of(user))

    assert_nothing_written()


def test_sync_agents__user_with_permissions__versions_credited_to_the_user(db, folder):
    user = factories.user_with("agentconfig.add_agent", "versions.add_agentversion")

    sync_agents(path=folder, actor=Actor.of(user))

    assert set(AgentVersion.objects.values_list("created_by", flat=True)) == {user.pk}


# Whitespace: stored and served exactly as written


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("|\n    Line one.\n    Line two.\n", "Line one.\nLine two.\n"),
        ("|-\n    No trailing newline.\n", "No trailing newline."),
        ("|+\n    Keep the blank lines.\n\n\n", "Keep the blank lines.\n\n\n"),
        (
            "|2\n      Two leading spaces.\n\n\n    Two blank lines above.\n",
            "  Two leading spaces.\n\n\nTwo blank lines above.\n",
        ),
        ('"Trailing spaces   \\n  and leading ones."\n', "Trailing spaces   \n  and leading ones."),
    ],
    ids=["literal", "strip", "keep", "indent-and-blank-lines", "double-quoted"],
)
def test_sync_agents__prompt_whitespace__stored_and_served_exactly(
    folder, block, expected, production, api_key, client, django_capture_on_commit_callbacks
):
    write(
        folder,
        "support-bot.yaml",
        "slug: support-bot\nname: Support bot\nconfig:\n  model: gpt-4o-mini\n"
        f"  temperature: 0.2\n  max_tokens: 800\n  system_prompt: {block}",
    )

    sync_agents(path=folder, actor=ACTOR)

    version = AgentVersion.objects.get(agent__slug="support-bot")
    assert version.system_prompt == expected
    with django_capture_on_commit_callbacks(execute=True):
        factories.deploy(version, production)
    response = client.get(
        reverse("runtime-config", args=["support-bot"]), HTTP_AUTHORIZATION=f"Bearer {api_key}"
    )
    assert response.status_code == 200
    assert json.loads(response.content)["config"]["system_prompt"] == expected


# --check


def test_sync_agents__check_only__validates_without_touching_the_database(
    db, folder, django_assert_num_queries
):
    with django_assert_num_queries(0):
        report = sync_agents(path=folder, actor=ACTOR, check_only=True)

    assert [(r.slug, r.action) for r in report.results] == [
        ("faq-bot", "valid"),
        ("support-bot", "valid"),
    ]
    assert_nothing_written()


def test_sync_agents__check_only_with_invalid_file__same_errors(db, folder):
    write(folder, "faq-bot.yaml", agent_yaml("faq-bot", config_extra="  temprature: 1\n"))

    errors = errors_of(folder, check_only=True)

    assert errors[0].startswith(f"{folder}/faq-bot.yaml: config.temprature: unknown field.")


# The command


def test_command__valid_folder__one_line_per_agent_and_a_summary(db, folder, capsys):
    call_command("sync_agents", str(folder))
    write(folder, "faq-bot.yaml", agent_yaml("faq-bot", prompt="Answer briefly."))
    capsys.readouterr()

    call_command("sync_agents", str(folder))

    assert capsys.readouterr().out.splitlines() == [
        "faq-bot: new version v2 (faq-bot.yaml)",
        "support-bot: unchanged at v1 (support-bot.yaml)",
        f"Synced 2 agent files from {folder}: 0 created, 1 new version, 1 unchanged.",
    ]


def test_command__first_run__reports_created_agents(db, folder, capsys):
    call_command("sync_agents", str(folder))

    assert capsys.readouterr().out.splitlines() == [
        "faq-bot: created agent, v1 (faq-bot.yaml)",
        "support-bot: created agent, v1 (support-bot.yaml)",
        f"Synced 2 agent files from {folder}: 2 created, 0 new versions, 0 unchanged.",
    ]


def test_command__invalid_files__command_error_listing_every_problem(db, folder):
    write(folder, "faq-bot.yaml", agent_yaml("faq-bot", config_extra="  temprature: 1\n"))
    write(folder, "support-bot.yaml", "- not a mapping\n")

    with pytest.raises(CommandError) as excinfo:
        call_command("sync_agents", str(folder))

    lines = str(excinfo.value).splitlines()
    assert lines[0] == f"Nothing was written: 2 problems in 2 files under {folder}:"
    assert lines[1].startswith(
        f"{folder}/faq-bot.yaml: config.temprature: unknown field. Did you mean 'temperature'?"
    )
    assert lines[2].startswith(f"{folder}/support-bot.yaml: the top level must be a mapping")
    assert_nothing_written()


def test_command__check__writes_nothing_and_says_so(db, folder, capsys):
    call_command("sync_agents", str(folder), "--check")

    assert capsys.readouterr().out.splitlines() == [
        "faq-bot: valid (faq-bot.yaml)",
        "support-bot: valid (support-bot.yaml)",
        f"2 agent files in {folder}: all valid. Nothing was written (--check).",
    ]
    assert_nothing_written()


def test_command__database_error__command_error_and_nothing_written(db, folder):
    def fail_on_version_insert(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "versions_agentversion"'):
            raise OperationalError("simulated outage")
        return execute(sql, params, many, context)

    with (
        connection.execute_wrapper(fail_on_version_insert),
        pytest.raises(CommandError, match="database error: simulated outage"),
    ):
        call_command("sync_agents", str(folder))

    assert_nothing_written()


def test_command__actor__cli_label_recorded(db, folder):
    call_command("sync_agents", str(folder))

    labels = set(AgentVersion.objects.values_list("created_by_label", flat=True))
    assert len(labels) == 1
    assert labels.pop().startswith("sync_agents (cli, ")


def test_command__fixture_folder_copied__imports_every_agent(db, tmp_path):
    target = tmp_path / "repo-agents"
    shutil.copytree(FIXTURES, target)

    call_command("sync_agents", str(target))

    assert sorted(Agent.objects.values_list("slug", flat=True)) == ["faq-bot", "support-bot"]
