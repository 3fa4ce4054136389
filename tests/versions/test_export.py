"""versions.export and `manage.py export_agents`: agents written back as agent files."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from agentconfig.core.actors import Actor
from agentconfig.models import Agent
from tests import factories
from tests.versions.git_helpers import agent_yaml, commit, git, init_repo
from versions.export import export_agents, render_agent_file
from versions.file_format import parse_agent_file
from versions.git_sync import sync_agents_from_git
from versions.models import AgentVersion, GitConfirmation, Source
from versions.selectors import get_drift
from versions.services import create_version
from versions.sync import sync_agents

ACTOR = Actor.system("tests")
PROMPT = "You are the support agent.\n\nRules:\n  - be brief\n  - never guess\n"


pytestmark = pytest.mark.usefixtures("git_config")


@pytest.fixture
def agents(db) -> dict[str, AgentVersion]:
    """support-bot at v2 (a multi-line prompt) and faq-bot at v1, latest versions by slug."""
    support = factories.create_agent(slug="support-bot", description="Helps with orders.")
    factories.create_version(support)
    faq = factories.create_agent(slug="faq-bot")
    return {
        "support-bot": factories.create_version(
            support, system_prompt=PROMPT, guardrails={"blocked_topics": ["legal advice"]}
        ),
        "faq-bot": factories.create_version(faq, tools=[], guardrails={}),
    }


def export(directory: Path, *args: str) -> list[str]:
    out = StringIO()
    call_command("export_agents", str(directory), *args, stdout=out)
    return out.getvalue().splitlines()


def test_render_agent_file__multi_line_prompt__readable_block_that_parses_back(agents):
    version = agents["support-bot"]

    text = render_agent_file(version)

    assert (
        "  system_prompt: |\n    You are the support agent.\n\n    Rules:\n      - be brief\n"
        in (text)
    )
    assert "change_description" not in text
    parsed = parse_agent_file(text, file_stem="support-bot")
    assert parsed.config == version.config
    assert (parsed.name, parsed.description) == ("Support Bot", "Helps with orders.")


def test_export_agents__all_agents__latest_version_of_each_written(agents, tmp_path):
    lines = export(tmp_path / "out")

    assert lines == [
        f"faq-bot: v1 -> {tmp_path}/out/faq-bot.yaml (written)",
        f"support-bot: v2 -> {tmp_path}/out/support-bot.yaml (written)",
        f"Exported 2 agents to {tmp_path}/out: 2 written, 0 unchanged.",
    ]
    text = (tmp_path / "out" / "support-bot.yaml").read_text()
    assert text == render_agent_file(agents["support-bot"])


def test_export_then_sync_folder__round_trip_creates_nothing(agents, tmp_path):
    export(tmp_path)

    report = sync_agents(path=tmp_path, actor=ACTOR)

    assert {result.action for result in report.results} == {"unchanged"}
    assert AgentVersion.objects.count() == 3
    assert Agent.history.filter(history_type="~").count() == 0


def test_export_then_commit_then_sync_git__round_trip_creates_nothing(agents, tmp_path):
    # Given the export committed to a repository
    repo = init_repo(tmp_path / "repo")
    export(repo / "agents")
    commit(repo, "Export from the database", {})

    # When the repository is synced
    report = sync_agents_from_git(repo=str(repo), ref="HEAD", folder="agents", actor=ACTOR)

    # Then nothing new; git is recorded as holding each latest version
    assert [(r.slug, r.action) for r in report.results] == [
        ("faq-bot", "unchanged"),
        ("support-bot", "unchanged"),
    ]
    assert AgentVersion.objects.count() == 3
    assert set(GitConfirmation.objects.values_list("version", flat=True)) == {
        v.pk for v in agents.values()
    }


def test_export_after_browser_edit__committed_file_clears_drift(db, tmp_path):
    # Given an agent synced from git, then edited in the browser
    repo = init_repo(tmp_path / "repo")
    commit(repo, "Add", {"agents/support-bot.yaml": agent_yaml()})
    sync_agents_from_git(repo=str(repo), ref="HEAD", folder="agents", actor=ACTOR)
    agent = Agent.objects.get()
    edited = create_version(
        agent=agent,
        actor=ACTOR,
        config={**agent.versions.get().config, "system_prompt": PROMPT},
        change_description="Hotfix.",
        source=Source.BROWSER,
    )
    assert get_drift(agent).latest == edited

    # When the export of that agent is committed and synced
    export(repo / "agents", "--agent", "support-bot")
    commit(repo, "Bring the hotfix into git", {})
    sync_agents_from_git(repo=str(repo), ref="HEAD", folder="agents", actor=ACTOR)

    # Then
    assert agent.versions.count() == 2
    assert get_drift(agent) is None


def test_export_agents__existing_file_in_subfolder__updated_in_place(agents, tmp_path):
    (tmp_path / "support").mkdir()
    (tmp_path / "support" / "support-bot.yaml").write_text("old\n")

    export(tmp_path)

    assert (tmp_path / "support" / "support-bot.yaml").read_text() == render_agent_file(
        agents["support-bot"]
    )
    assert not (tmp_path / "support-bot.yaml").exists()


def test_export_agents__two_files_for_one_slug__refused_and_nothing_written(agents, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "support-bot.yaml").write_text("old\n")

    with pytest.raises(CommandError, match="several files for it"):
        export(tmp_path)

    assert not (tmp_path / "faq-bot.yaml").exists()


def test_export_agents__run_twice__second_run_rewrites_nothing(agents, tmp_path):
    out = tmp_path / "out"
    export(out)
    mtime = (out / "faq-bot.yaml").stat().st_mtime_ns

    lines = export(out)

    assert lines[-1] == f"Exported 2 agents to {out}: 0 written, 2 unchanged."
    assert (out / "faq-bot.yaml").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in out.iterdir()) == ["faq-bot.yaml", "support-bot.yaml"]


def test_export_agents__one_agent__only_its_file(agents, tmp_path):
    out = tmp_path / "out"

    lines = export(out, "--agent", "faq-bot")

    assert lines[-1] == f"Exported 1 agent to {out}: 1 written, 0 unchanged."
    assert [p.name for p in out.iterdir()] == ["faq-bot.yaml"]


def test_export_agents__environment__the_active_version_not_the_latest(agents, tmp_path, staging):
    v1 = AgentVersion.objects.get(agent__slug="support-bot", version_number=1)
    factories.deploy(v1, staging)

    lines = export(tmp_path, "--environment", "staging")

    assert lines == [
        f"support-bot: v1 -> {tmp_path}/support-bot.yaml (written)",
        "faq-bot: not deployed to staging; skipped",
        f"Exported 1 agent to {tmp_path}: 1 written, 0 unchanged, 1 skipped.",
    ]
    assert (tmp_path / "support-bot.yaml").read_text() == render_agent_file(v1)


def test_export_agents__agent_not_deployed_there__clear_error(agents, tmp_path, staging):
    with pytest.raises(CommandError, match="faq-bot is not deployed to staging"):
        export(tmp_path, "--agent", "faq-bot", "--environment", "staging")


def test_export_agents__unknown_agent__clear_error(agents, tmp_path):
    with pytest.raises(CommandError, match="there is no agent 'nope'"):
        export(tmp_path, "--agent", "nope")


def test_export_agents__agent_without_versions__skipped(db, tmp_path):
    factories.create_agent(slug="empty-bot")

    report = export_agents(directory=tmp_path)

    assert report.files == ()
    assert report.skipped == ("empty-bot: no versions",)


def test_export_agents__directory_is_a_file__clear_error(agents, tmp_path):
    target = tmp_path / "file"
    target.write_text("")

    with pytest.raises(CommandError, match="is a file"):
        export(target)


def test_export_agents__round_trip_through_git_history__sync_of_each_export_is_exact(db, tmp_path):
    # Given several configs, each exported and committed in turn
    repo = init_repo(tmp_path / "repo")
    agent = factories.create_agent(slug="support-bot")
    for prompt in ("One.\n", "Two\nlines.\n", "Trailing spaces   \nkept.", "\tTabbed.\n"):
        version = factories.create_version(agent, system_prompt=prompt)
        export(repo, "--agent", "support-bot")
        sha = commit(repo, f"Export v{version.version_number}", {})

        # When / Then: each commit's file syncs back to exactly that version
        sync_agents_from_git(repo=str(repo), ref=sha, actor=ACTOR)
        assert agent.versions.count() == version.version_number
        assert git(repo, "show", f"{sha}:support-bot.yaml") + "\n" == render_agent_file(version)
