"""versions.git_sync and `sync_agents --repo`: agents from a git repository at a commit.

Every test builds a real repository with the git command (tests/versions/git_helpers.py).
"""

from __future__ import annotations

import os
import time
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from agentconfig.core.actors import Actor
from agentconfig.core.errors import ImmutableRecord
from agentconfig.models import Agent
from deployments.models import DeploymentRequest, Environment, Pointer, ReleaseLogEntry
from deployments.services.git_releases import sync_and_release
from tests import factories
from tests.versions.git_helpers import (
    BOB,
    agent_yaml,
    commit,
    commit_time,
    git,
    init_repo,
)
from versions.export import render_agent_file
from versions.git_source import GitError, check_location, open_repository, run_git
from versions.git_sync import sync_agents_from_git
from versions.models import AgentVersion, GitConfirmation, Source
from versions.selectors import get_drift
from versions.services import create_version
from versions.sync import SyncError

ACTOR = Actor.system("tests")
SUPPORT = "agents/support/support-bot.yaml"
FAQ = "agents/faq-bot.yaml"


pytestmark = pytest.mark.usefixtures("git_config")


@pytest.fixture
def repo(tmp_path) -> Path:
    """A work tree with support-bot (in a subfolder) and faq-bot, one commit."""
    path = init_repo(tmp_path / "repo")
    commit(
        path,
        "Add the support and FAQ agents",
        {
            SUPPORT: agent_yaml("support-bot"),
            FAQ: agent_yaml("faq-bot", prompt="Answer from the FAQ."),
            "README.md": "# Agents\n",
        },
    )
    return path


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def sync(repo: Path | str, ref: str = "HEAD", **kwargs) -> list[tuple[str, str, int | None]]:
    report = sync_agents_from_git(
        repo=str(repo), ref=ref, folder=kwargs.pop("folder", "agents"), actor=ACTOR, **kwargs
    )
    return [(r.slug, r.action, r.version_number) for r in report.results]


def errors_of(repo: Path | str, ref: str = "HEAD", **kwargs) -> SyncError:
    with pytest.raises(SyncError) as excinfo:
        sync(repo, ref, **kwargs)
    return excinfo.value


def command(*args: str) -> list[str]:
    out = StringIO()
    call_command("sync_agents", *args, stdout=out)
    return out.getvalue().splitlines()


def versions_of(slug: str) -> list[AgentVersion]:
    return list(AgentVersion.objects.filter(agent__slug=slug).order_by("version_number"))


def edit_in_browser(slug: str, **config) -> AgentVersion:
    agent = Agent.objects.get(slug=slug)
    return create_version(
        agent=agent,
        actor=ACTOR,
        config=factories.config(**config),
        change_description="Hotfix in the browser.",
        source=Source.BROWSER,
    )


# Provenance


def test_sync_from_git__first_commit__versions_record_commit_author_time_message_and_path(db, repo):
    sha = head(repo)

    results = sync(repo, sha)

    assert results == [("faq-bot", "created", 1), ("support-bot", "created", 1)]
    version = AgentVersion.objects.get(agent__slug="support-bot")
    assert version.source == Source.GIT
    assert version.source_commit == sha
    assert version.source_commit_author == "Alice Example <alice@example.com>"
    assert version.source_commit_time == commit_time(repo, sha)
    assert version.source_commit_message == "Add the support and FAQ agents"
    assert version.change_description == "Add the support and FAQ agents"
    assert version.source_path == SUPPORT
    assert version.system_prompt == "You are helpful.\n"


def test_sync_from_git__file_gives_change_description__it_wins_over_the_commit_message(db, repo):
    commit(
        repo,
        "Tidy up",
        {FAQ: agent_yaml("faq-bot", prompt="Short.", extra="change_description: Shorter.\n")},
        author=BOB,
    )

    sync(repo)

    version = AgentVersion.objects.get(agent__slug="faq-bot")
    assert version.change_description == "Shorter."
    assert version.source_commit_message == "Tidy up"
    assert version.source_commit_author == "Bob Example <bob@example.com>"


def test_sync_from_git__long_commit_message__description_cut_full_message_kept(db, repo):
    message = "Rewrite the FAQ prompt\n\n" + "Because. " * 400
    commit(repo, message, {FAQ: agent_yaml("faq-bot", prompt="New.")})

    sync(repo)

    version = AgentVersion.objects.get(agent__slug="faq-bot")
    assert len(version.change_description) == 2000
    assert version.change_description.endswith("…")
    assert version.source_commit_message == message.rstrip()


def test_sync_from_git__whole_repository_by_default__paths_from_the_root(db, tmp_path):
    path = init_repo(tmp_path / "flat")
    commit(path, "One agent at the root", {"billing-bot.yaml": agent_yaml("billing-bot")})

    sync(path, folder="")

    assert AgentVersion.objects.get().source_path == "billing-bot.yaml"


# Idempotency and the next commits


def test_sync_from_git__same_commit_twice__second_run_writes_nothing(db, repo):
    sync(repo)
    history_rows = Agent.history.count()

    lines = command("--repo", str(repo), "--ref", head(repo), "--path", "agents/")

    assert AgentVersion.objects.count() == 2
    assert Agent.history.count() == history_rows
    assert GitConfirmation.objects.count() == 0
    assert lines[1:] == [
        "faq-bot: unchanged at v1 (agents/faq-bot.yaml); already synced at this commit",
        f"support-bot: unchanged at v1 ({SUPPORT}); already synced at this commit",
        f"Synced 2 agent files from {repo} at {head(repo)[:12]} (agents/): 0 created, "
        "0 new versions, 2 unchanged.",
    ]
    assert lines[0].startswith(f"Commit {head(repo)} by Alice Example <alice@example.com>, ")


def test_sync_from_git__prompt_changed_in_next_commit__new_version_for_that_agent_only(db, repo):
    first = head(repo)
    sync(repo, first)
    second = commit(repo, "Friendlier support", {SUPPORT: agent_yaml(prompt="Be friendly.")})

    results = sync(repo, second)

    assert results == [("faq-bot", "unchanged", 1), ("support-bot", "new_version", 2)]
    v1, v2 = versions_of("support-bot")
    assert (v1.source_commit, v2.source_commit) == (first, second)
    assert v2.derived_from == v1
    assert v2.change_description == "Friendlier support"
    assert versions_of("faq-bot")[0].source_commit == first


def test_sync_from_git__commit_that_changes_nothing__nothing_written(db, repo):
    sync(repo)
    commit(repo, "Docs only", {"README.md": "# Agents, documented\n"})

    results = sync(repo)

    assert results == [("faq-bot", "unchanged", 1), ("support-bot", "unchanged", 1)]
    assert AgentVersion.objects.count() == 2


def test_sync_from_git__name_changed__agent_updated_with_commit_in_history(db, repo):
    sync(repo)
    sha = commit(
        repo, "Rename", {FAQ: agent_yaml("faq-bot", prompt="Answer from the FAQ.", name="FAQ")}
    )

    sync(repo)

    agent = Agent.objects.get(slug="faq-bot")
    assert agent.name == "FAQ"
    assert agent.history.first().history_change_reason == f"tests: from {FAQ} at {sha[:12]}"


# Older commits


def test_sync_from_git__older_commit_after_newer__refused_and_nothing_written(db, repo):
    # Given v1 synced from the first commit and v2 from the second
    first = head(repo)
    sync(repo, first)
    second = commit(repo, "Friendlier", {SUPPORT: agent_yaml(prompt="Be friendly.")})
    sync(repo, second)

    # When a stale job syncs the first commit again
    error = errors_of(repo, first)

    # Then
    assert error.message.splitlines()[0] == (
        f"Nothing was written: {first[:12]} is not newer than the last sync of 1 agent, and "
        "syncing it would take it back in time. Sync a newer commit, or pass --allow-revert "
        "if going back is what you want:"
    )
    assert error.errors == [
        f"support-bot: {first[:12]} is older than {second[:12]}, the commit v2 was synced from "
        f"(it is an ancestor of it); its {SUPPORT} differs from v2, so this sync would make an "
        "older state the newest version."
    ]
    assert len(versions_of("support-bot")) == 2


def test_sync_from_git__older_commit_with_allow_revert__creates_the_older_state_as_new_version(
    db, repo
):
    first = head(repo)
    sync(repo, first)
    second = commit(repo, "Friendlier", {SUPPORT: agent_yaml(prompt="Be friendly.")})
    sync(repo, second)

    lines = command("--repo", str(repo), "--ref", first, "--path", "agents", "--allow-revert")

    v1, _, v3 = versions_of("support-bot")
    assert v3.config_hash == v1.config_hash
    assert v3.source_commit == first
    assert (
        f"support-bot: new version v3 ({SUPPORT}); {first[:12]} is older than {second[:12]} "
        "(--allow-revert)"
    ) in lines


def test_sync_from_git__older_commit_where_the_file_is_the_same__nothing_to_refuse(db, repo):
    # Given v1 (prompt A), v2 (prompt B) and v3 (prompt A again), each synced
    first = head(repo)
    sync(repo)
    commit(repo, "B", {SUPPORT: agent_yaml(prompt="Be friendly.")})
    sync(repo)
    commit(repo, "Back to A", {SUPPORT: agent_yaml()})
    sync(repo)

    # When the first commit is synced again: older, but its file is the latest version's
    results = sync(repo, first, folder="agents/support")

    assert results == [("support-bot", "unchanged", 3)]
    assert len(versions_of("support-bot")) == 3


def test_sync_from_git__commit_on_another_branch__not_older_so_synced(db, repo):
    # Given main moved on and was synced, and a branch forked from the first commit
    first = head(repo)
    sync(repo)
    commit(repo, "Main: friendlier", {SUPPORT: agent_yaml(prompt="Be friendly.")})
    sync(repo)
    git(repo, "switch", "--quiet", "-c", "experiment", first)
    branch = commit(repo, "Experiment: terse", {SUPPORT: agent_yaml(prompt="Be terse.")})

    results = sync(repo, branch)

    assert ("support-bot", "new_version", 3) in results


def test_sync_from_git__last_commit_missing_from_repository__refused_with_hint(db, repo, tmp_path):
    # Given support-bot synced from `repo`, and an unrelated repository with another prompt
    sync(repo)
    other = init_repo(tmp_path / "other")
    commit(other, "Elsewhere", {SUPPORT: agent_yaml(prompt="Different.")})

    error = errors_of(other)

    assert error.errors == [
        f"support-bot: cannot tell whether {head(other)[:12]} is newer than {head(repo)[:12]}, "
        f"the commit v1 was synced from: that commit is not in {other} (was the history "
        "rewritten, or is this another repository?)."
    ]
    assert ("support-bot", "new_version", 2) in sync(other, allow_revert=True)


# Validation: all or nothing


def test_sync_from_git__bad_file_in_a_commit__nothing_written_every_error_listed(db, repo):
    commit(
        repo,
        "Break two files",
        {
            FAQ: agent_yaml("faq-bot", config_extra="  temprature: 1\n"),
            "agents/billing-bot.yaml": "slug: billing-bot\nname: [unclosed\n",
            "agents/legacy.yml": agent_yaml("legacy"),
        },
    )

    error = errors_of(repo)

    sha = head(repo)[:12]
    assert error.message.splitlines()[0] == (
        f"Nothing was written: 3 problems in 3 files at {repo} at {sha} (agents/):"
    )
    assert [line.split(": ")[:2] for line in error.errors] == [
        ["agents/billing-bot.yaml", "line 3, column 1"],
        ["agents/faq-bot.yaml", "config.temprature"],
        ["agents/legacy.yml", "agent files must end in '.yaml'. Rename it to 'legacy.yaml'."],
    ]
    assert Agent.objects.count() == 0
    assert AgentVersion.objects.count() == 0


def test_sync_from_git__bad_file_fixed_in_next_commit__that_commit_syncs(db, repo):
    commit(repo, "Oops", {FAQ: "- not a mapping\n"})
    errors_of(repo)
    commit(repo, "Fix", {FAQ: agent_yaml("faq-bot", prompt="Fixed.")})

    assert sync(repo) == [("faq-bot", "created", 1), ("support-bot", "created", 1)]


def test_sync_from_git__symlinked_agent_file__refused(db, repo):
    os.symlink("support/support-bot.yaml", repo / "agents" / "other-bot.yaml")
    commit(repo, "Link", {})

    error = errors_of(repo)

    assert error.errors == [
        "agents/other-bot.yaml: is a symbolic link; commit the agent file itself."
    ]


def test_sync_from_git__same_slug_in_two_folders__refused(db, repo):
    commit(repo, "Copy", {"agents/team/faq-bot.yaml": agent_yaml("faq-bot")})

    error = errors_of(repo)

    assert error.errors == [
        "agents/team/faq-bot.yaml: slug: the agent 'faq-bot' is also defined in "
        "agents/faq-bot.yaml. Each agent must have exactly one file."
    ]


def test_sync_from_git__folder_missing_at_commit__clear_error(db, repo):
    error = errors_of(repo, folder="prompts")

    assert error.errors == [
        f"{repo} at {head(repo)[:12]}: --path prompts/ holds no files at this commit. "
        "Check --path and --ref."
    ]


def test_sync_from_git__unknown_ref__clear_error(db, repo):
    error = errors_of(repo, "release-9")

    assert error.errors == [
        f"{repo}: --ref 'release-9' is not a branch, tag or commit of this repository."
    ]


def test_sync_from_git__tag_and_branch_names__resolve_to_their_commit(db, repo):
    git(repo, "tag", "v1.0")

    sync(repo, "v1.0")

    assert AgentVersion.objects.filter(source_commit=head(repo)).count() == 2


# Renames and deletions


def test_sync_from_git__file_moved_to_another_folder__same_agent_no_new_version(db, repo):
    sync(repo)
    (repo / "agents" / "customers").mkdir()
    git(repo, "mv", SUPPORT, "agents/customers/support-bot.yaml")
    commit(repo, "Group by team", {})

    lines = command("--repo", str(repo), "--path", "agents")

    assert (
        f"support-bot: unchanged at v1 (agents/customers/support-bot.yaml); moved from {SUPPORT}"
    ) in lines
    assert len(versions_of("support-bot")) == 1
    commit(repo, "Change", {"agents/customers/support-bot.yaml": agent_yaml(prompt="Moved.")})
    sync(repo)
    assert versions_of("support-bot")[-1].source_path == "agents/customers/support-bot.yaml"


def test_sync_from_git__file_renamed_to_another_slug__new_agent_old_one_left_alone(db, repo):
    sync(repo)
    commit(
        repo,
        "Rename faq-bot to help-bot",
        {FAQ: None, "agents/help-bot.yaml": agent_yaml("help-bot", prompt="Answer from the FAQ.")},
    )

    results = sync(repo)

    assert results == [
        ("help-bot", "created", 1),
        ("support-bot", "unchanged", 1),
        ("faq-bot", "missing", 1),
    ]
    assert Agent.objects.filter(slug="faq-bot").exists()
    assert len(versions_of("faq-bot")) == 1


def test_sync_from_git__agent_file_deleted__agent_and_versions_kept_and_reported(db, repo):
    # Given faq-bot with two versions from git, deployed
    sync(repo)
    commit(repo, "FAQ v2", {FAQ: agent_yaml("faq-bot", prompt="Answer from the new FAQ.")})
    sync(repo)
    factories.deploy(versions_of("faq-bot")[-1], factories.environment("staging"))

    # When its file is deleted
    sha = commit(repo, "Retire faq-bot", {FAQ: None})
    lines = command("--repo", str(repo), "--path", "agents")

    # Then nothing about it changed
    assert lines[1:] == [
        f"support-bot: unchanged at v1 ({SUPPORT})",
        f"faq-bot: no file at this commit; left unchanged at v2; last synced from {FAQ} at "
        f"{versions_of('faq-bot')[-1].source_commit[:12]}",
        f"Synced 1 agent file from {repo} at {sha[:12]} (agents/): 0 created, 0 new versions, "
        "1 unchanged, 1 agent without a file left unchanged.",
    ]
    assert len(versions_of("faq-bot")) == 2
    assert Pointer.objects.get(agent__slug="faq-bot").stable_version == versions_of("faq-bot")[-1]


def test_sync_from_git__agent_from_another_folder__not_reported_missing(db, repo):
    sync(repo, folder="agents/support")

    results = sync(repo, folder="agents")

    assert ("faq-bot", "created", 1) in results
    assert sync(repo, folder="agents/support") == [("support-bot", "unchanged", 1)]


# Drift: versions made outside git


def test_sync_from_git__browser_edit_then_unrelated_commit__browser_version_kept(db, repo):
    # Given v1 from git and v2 made in the browser
    sync(repo)
    v2 = edit_in_browser("support-bot")

    # When an unrelated change is merged and synced
    commit(repo, "FAQ only", {FAQ: agent_yaml("faq-bot", prompt="New FAQ.")})
    lines = command("--repo", str(repo), "--path", "agents")

    # Then the browser version is not undone, and the report says why
    assert versions_of("support-bot")[-1] == v2
    assert (
        f"support-bot: kept v2 ({SUPPORT}); v2 was made outside git after v1, and the file has "
        "not changed since v1; download v2's file from the admin and commit it, or change the "
        "file"
    ) in lines
    assert get_drift(v2.agent).latest == v2


def test_sync_from_git__browser_edit_then_file_changed_in_git__git_wins(db, repo):
    sync(repo)
    edit_in_browser("support-bot")
    commit(repo, "New prompt", {SUPPORT: agent_yaml(prompt="From git.")})

    lines = command("--repo", str(repo), "--path", "agents")

    v3 = versions_of("support-bot")[-1]
    assert (v3.version_number, v3.source, v3.system_prompt) == (3, Source.GIT, "From git.\n")
    assert f"support-bot: new version v3 ({SUPPORT}); replaces v2, made outside git" in lines
    assert get_drift(v3.agent) is None


def test_sync_from_git__browser_edit_then_same_commit_again__nothing_written(db, repo):
    sync(repo)
    v2 = edit_in_browser("support-bot")

    lines = command("--repo", str(repo), "--path", "agents")

    assert versions_of("support-bot")[-1] == v2
    assert (
        f"support-bot: kept v2 ({SUPPORT}); already synced at this commit as v1; v2 was made "
        "outside git since"
    ) in lines


def browser_version_committed(repo) -> tuple[AgentVersion, str]:
    """v1 synced from git, v2 made in the browser, and v2's file then committed as the admin
    offers it: v2 and that commit's sha."""
    sync(repo)
    v2 = edit_in_browser("support-bot")
    return v2, commit(repo, "Commit the hotfix", {SUPPORT: render_agent_file(v2)})


def test_sync_from_git__browser_version_committed__confirmed_in_git_and_drift_gone(db, repo):
    # Given v2 made in the browser, whose file is then committed as the admin offers it
    v2, sha = browser_version_committed(repo)

    # When
    results = sync(repo)

    # Then no new version; git is recorded as holding v2
    assert ("support-bot", "unchanged", 2) in results
    confirmation = GitConfirmation.objects.get()
    assert (confirmation.version, confirmation.source_commit) == (v2, sha)
    assert confirmation.source_path == SUPPORT
    assert confirmation.source_commit_message == "Commit the hotfix"
    assert get_drift(v2.agent) is None
    # and a re-run writes nothing more
    sync(repo)
    assert GitConfirmation.objects.count() == 1


def test_sync_from_git__agent_made_in_browser_with_same_config__confirmed_not_duplicated(db, repo):
    agent = factories.create_agent(slug="support-bot", name="Support Bot")
    create_version(
        agent=agent,
        actor=ACTOR,
        config=factories.config(system_prompt="You are helpful.\n", tools=[], guardrails={}),
        change_description="Made by hand.",
        source=Source.BROWSER,
    )

    sync(repo)

    assert len(versions_of("support-bot")) == 1
    assert GitConfirmation.objects.get().version.agent == agent


def test_sync_from_git__confirmation_commit__counts_for_the_older_commit_rule(db, repo):
    first = head(repo)
    _, confirmed_at = browser_version_committed(repo)
    sync(repo)

    error = errors_of(repo, first)

    assert f"{confirmed_at[:12]}, the commit v2 was synced from" in error.errors[0]


# Repository locations and safety


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("file:///tmp/repo", "file:// URLs are not accepted"),
        ("ext::sh -c touch% /tmp/pwned", "remote helpers"),
        ("fd::3", "remote helpers"),
        ("http://example.com/repo.git", "plain http is not accepted"),
        ("git://example.com/repo.git", "the git:// protocol"),
        ("ftp://example.com/repo.git", "the ftp:// scheme is not accepted"),
        ("--upload-pack=touch /tmp/pwned", "starts with '-'"),
        ("-u touch /tmp/pwned", "starts with '-'"),
        ("ssh://-oProxyCommand=touch%20/tmp/pwned/x", "the host or user starts with '-'"),
        ("-oProxyCommand=x@host:repo", "starts with '-'"),
        ("host:-repo", "the path starts with '-'"),
        ("https:///no-host", "the URL has no host"),
        ("/no/such/folder", "no such folder"),
        ("git@host:repo.git -oProxyCommand=x", "cannot contain spaces"),
    ],
)
def test_check_location__not_allowed__refused_before_git_runs(location, reason):
    with pytest.raises(GitError) as excinfo:
        check_location(location)

    assert reason in excinfo.value.message


@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("https://github.com/example/agents.git", "remote"),
        ("ssh://git@github.com/example/agents.git", "remote"),
        ("git@github.com:example/agents.git", "remote"),
    ],
)
def test_check_location__https_ssh_and_scp_like__accepted(location, kind):
    assert check_location(location).kind == kind


def test_command__upload_pack_injection__refused_and_nothing_runs(db, tmp_path):
    marker = tmp_path / "pwned"

    with pytest.raises(CommandError, match="starts with '-', which git would read as an option"):
        call_command("sync_agents", f"--repo=--upload-pack=touch {marker}", "--ref", "main")
    with pytest.raises(CommandError, match="remote helpers"):
        call_command("sync_agents", "--repo", f"ext::sh -c touch% {marker}")

    assert not marker.exists()


def test_command__option_in_ref__refused(db, repo, tmp_path):
    marker = tmp_path / "out"

    with pytest.raises(CommandError, match="must not start with '-'"):
        call_command("sync_agents", "--repo", str(repo), f"--ref=--output={marker}")

    assert not marker.exists()


def test_command__path_outside_repository__refused(db, repo):
    with pytest.raises(CommandError, match="must stay inside the repository"):
        call_command("sync_agents", "--repo", str(repo), "--path", "../elsewhere")


def test_sync_from_git__remote_url__cloned_to_temporary_folder_and_removed(
    db, repo, tmp_path, monkeypatch, git_config
):
    # Given a bare repository standing in for a server, reached through an https URL
    server = init_repo(tmp_path / "server.git", bare=True)
    git(repo, "push", "--quiet", str(server), "main")
    url = "https://git.example.com/team/agents.git"
    git_config.write_text(f'[url "{server}"]\n\tinsteadOf = {url}\n')
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)

    # When
    lines = command("--repo", url, "--ref", "main", "--path", "agents")

    # Then
    assert lines[-1] == (
        f"Synced 2 agent files from {url} at {head(repo)[:12]} (agents/): 2 created, "
        "0 new versions, 0 unchanged."
    )
    assert AgentVersion.objects.filter(source_commit=head(repo)).count() == 2
    assert list(scratch.iterdir()) == []


def test_sync_from_git__remote_commit_not_on_a_branch__fetched_by_sha(
    db, repo, tmp_path, git_config
):
    # Given a server whose main is the first commit, and a newer commit only under a pull ref
    server = init_repo(tmp_path / "server.git", bare=True)
    git(repo, "push", "--quiet", str(server), "main")
    pull = commit(repo, "Proposed", {FAQ: agent_yaml("faq-bot", prompt="Proposed.")})
    git(repo, "push", "--quiet", str(server), f"{pull}:refs/pull/1/head")
    url = "https://git.example.com/team/agents.git"
    git_config.write_text(f'[url "{server}"]\n\tinsteadOf = {url}\n')

    results = sync(url, "refs/pull/1/head")

    assert ("faq-bot", "created", 1) in results
    assert AgentVersion.objects.get(agent__slug="faq-bot").source_commit == pull


def test_sync_from_git__hooks_in_repository_and_clone_template__never_run(
    db, repo, tmp_path, git_config
):
    # Given a post-checkout hook in the repository and in the clone template, which a
    # plain `git clone` runs (checked below, so the test can fail)
    marker = tmp_path / "hook-ran"
    hook = f"#!/bin/sh\ntouch {marker}\n"
    templates = tmp_path / "templates"
    for hooks in (repo / ".git" / "hooks", templates / "hooks"):
        hooks.mkdir(parents=True, exist_ok=True)
        (hooks / "post-checkout").write_text(hook)
        (hooks / "post-checkout").chmod(0o755)
    server = init_repo(tmp_path / "server.git", bare=True)
    git(repo, "push", "--quiet", str(server), "main")
    url = "https://git.example.com/team/agents.git"
    git_config.write_text(
        f'[init]\n\ttemplateDir = {templates}\n[url "{server}"]\n\tinsteadOf = {url}\n'
    )

    # When reading the local repository in place, and cloning the "remote" one
    sync(repo)
    sync(url, "main")

    # Then no hook ran
    assert not marker.exists()
    git(tmp_path, "clone", "--quiet", url, str(tmp_path / "plain-clone"))
    assert marker.exists()


def test_run_git__command_hangs__killed_after_the_timeout_with_a_clear_error(tmp_path):
    marker = tmp_path / "still-running"
    started = time.monotonic()

    with pytest.raises(GitError, match=r"no answer from git within 0\.5 seconds"):
        run_git(["-c", f"alias.slow=!sleep 3 && touch {marker}", "slow"], timeout=0.5)

    assert time.monotonic() - started < 2.5
    time.sleep(3)
    assert not marker.exists()  # the whole process group was killed, not only git


def test_open_repository__not_a_repository__clear_error(tmp_path):
    with pytest.raises(GitError, match="not a git repository"), open_repository(str(tmp_path)):
        pass


# --check


def test_command__check_from_git__validates_without_the_database(
    db, repo, django_assert_num_queries
):
    with django_assert_num_queries(0):
        lines = command("--repo", str(repo), "--path", "agents", "--check")

    assert lines[1:] == [
        f"faq-bot: valid ({FAQ})",
        f"support-bot: valid ({SUPPORT})",
        f"2 agent files in {repo} at {head(repo)[:12]} (agents/): all valid. Nothing was "
        "written (--check).",
    ]
    assert AgentVersion.objects.count() == 0


def test_command__check_from_git_with_bad_file__command_error_lists_it(db, repo):
    commit(repo, "Bad", {FAQ: agent_yaml("faq-bot", extra="owner: me\n")})

    with pytest.raises(CommandError) as excinfo:
        command("--repo", str(repo), "--path", "agents", "--check")

    assert "agents/faq-bot.yaml: owner: unknown field." in str(excinfo.value)


# Command options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either a folder"),
        (("agents/", "--repo", "."), "give either a folder"),
        (("agents/", "--path", "x"), "--path: only with --repo"),
        (("agents/", "--allow-revert", "--deploy-to", "staging"), "--allow-revert, --deploy-to"),
        (("--repo", ".", "--check", "--deploy-to", "staging"), "--check writes nothing"),
    ],
)
def test_command__inconsistent_options__refused(db, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("sync_agents", *args)


# --deploy-to and --request


def test_command__deploy_to_staging__new_versions_deployed_naming_the_commit(db, repo, staging):
    sha = head(repo)

    lines = command("--repo", str(repo), "--path", "agents", "--deploy-to", "staging")

    assert "Deployed faq-bot v1 to staging." in lines
    assert "Deployed support-bot v1 to staging." in lines
    entries = ReleaseLogEntry.objects.filter(environment=staging)
    assert entries.count() == 2
    assert {entry.reason for entry in entries} == {
        f"Synced from git commit {sha}: Add the support and FAQ agents"
    }
    # Re-running at the same commit deploys nothing again.
    lines = command("--repo", str(repo), "--path", "agents", "--deploy-to", "staging")
    assert "No new versions: nothing to deploy or request." in lines
    assert ReleaseLogEntry.objects.count() == 2


def test_command__deploy_to_only_changed_agents__unchanged_ones_not_redeployed(db, repo, staging):
    command("--repo", str(repo), "--path", "agents", "--deploy-to", "staging")
    commit(repo, "FAQ v2", {FAQ: agent_yaml("faq-bot", prompt="v2")})

    lines = command("--repo", str(repo), "--path", "agents", "--deploy-to", "staging")

    assert [line for line in lines if line.startswith("Deployed")] == [
        "Deployed faq-bot v2 to staging."
    ]


def test_command__deploy_to_unknown_environment__refused_before_reading(db, repo):
    with pytest.raises(CommandError, match="there is no environment 'qa'"):
        command("--repo", str(repo), "--deploy-to", "qa")

    assert AgentVersion.objects.count() == 0


@pytest.mark.skipif(
    not hasattr(Environment, "required_approvals"), reason="approvals not installed"
)
def test_command__deploy_to_environment_needing_approval__refused_naming_request(
    db, repo, production
):
    with pytest.raises(CommandError) as excinfo:
        command("--repo", str(repo), "--deploy-to", "production")

    assert str(excinfo.value) == (
        "production requires approval before a deploy, so --deploy-to production cannot "
        "deploy there. Use --request production to open deployment requests instead."
    )
    assert AgentVersion.objects.count() == 0


def test_sync_from_git__deploy_refused__sync_rolled_back_too(db, repo, staging):
    # Given a user who may create agents and versions but not deploy
    user = factories.user_with("agentconfig.add_agent", "versions.add_agentversion")

    with pytest.raises(SyncError) as excinfo:
        sync_and_release(
            repo=str(repo), ref="HEAD", folder="agents", actor=Actor.of(user), deploy_to="staging"
        )

    assert excinfo.value.message.startswith("Nothing was written: a new version could not be")
    assert "may not deploy versions" in excinfo.value.errors[0]
    assert Agent.objects.count() == 0
    assert AgentVersion.objects.count() == 0


def test_command__request_production__one_request_per_new_version_naming_the_commit(
    db, repo, staging, production
):
    sha = head(repo)

    lines = command(
        "--repo",
        str(repo),
        "--path",
        "agents",
        "--deploy-to",
        "staging",
        "--request",
        "production",
    )

    requests = DeploymentRequest.objects.filter(environment=production)
    assert sorted(r.version.agent.slug for r in requests) == ["faq-bot", "support-bot"]
    assert all(sha in r.reason for r in requests)
    assert "Requested a deploy of faq-bot v1 to production (waiting for approval)." in lines


# Provenance rows are append-only


def test_git_version__provenance_and_confirmation__cannot_be_changed(db, repo):
    browser_version_committed(repo)
    sync(repo)
    confirmation = GitConfirmation.objects.get()

    with pytest.raises(ImmutableRecord):
        AgentVersion.objects.filter(source=Source.GIT).update(source_commit="0" * 40)
    with pytest.raises(ImmutableRecord):
        confirmation.delete()


def test_git_version__commit_without_git_source__refused_by_the_database(db, repo):
    sync(repo)
    version = AgentVersion.objects.get(agent__slug="faq-bot")

    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO versions_agentversion (id, agent_id, version_number, system_prompt, "
            "model, temperature, max_tokens, tools, guardrails, config_hash, "
            "change_description, source, source_path, created_by_label, created_at, "
            "source_commit, source_commit_author, source_commit_message) "
            "SELECT %s, agent_id, 2, system_prompt, model, temperature, max_tokens, tools, "
            "guardrails, config_hash, change_description, 'browser', '', 'x', created_at, "
            "source_commit, '', '' FROM versions_agentversion WHERE id = %s",
            [uuid.uuid4().hex, version.pk.hex],
        )


@pytest.mark.postgres
def test_git_confirmation__raw_sql_update_and_delete__refused_by_database(db, repo):
    browser_version_committed(repo)
    sync(repo)
    confirmation = GitConfirmation.objects.get()

    for sql in (
        "UPDATE versions_gitconfirmation SET source_commit_message = 'hacked' WHERE id = %s",
        "DELETE FROM versions_gitconfirmation WHERE id = %s",
    ):
        with (
            pytest.raises(IntegrityError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [confirmation.pk])
