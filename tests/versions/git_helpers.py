"""Real git repositories for the tests, built with the git command in a temporary folder.

Commits get fixed authors and dates (one day apart), so SHAs and times are deterministic
within a test. `isolate_git` keeps the developer's own git configuration
(hooks, signing, templates) out of the tests.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

import pytest

START = datetime.datetime(2024, 5, 1, 9, 30, tzinfo=datetime.UTC)
ALICE = ("Alice Example", "alice@example.com")
BOB = ("Bob Example", "bob@example.com")


def isolate_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give the test (and the code under test) an empty global git config; its path."""
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return config


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args],  # noqa: S607 - the tests need git on PATH, like the code under test
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return result.stdout.strip()


def init_repo(path: Path, *, bare: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", "--initial-branch=main", *(["--bare"] if bare else []))
    return path


def commit(
    repo: Path,
    message: str,
    files: dict[str, str | None],
    *,
    author: tuple[str, str] = ALICE,
) -> str:
    """Write (or, for None, delete) `files`, commit them, and return the commit's SHA."""
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    git(repo, "add", "--all")
    count = int(git(repo, "rev-list", "--count", "--all") or 0)
    when = (START + datetime.timedelta(days=count)).isoformat()
    name, email = author
    git(
        repo,
        "-c",
        f"user.name={name}",
        "-c",
        f"user.email={email}",
        "commit",
        "--quiet",
        "--allow-empty",
        "--no-verify",
        "-m",
        message,
        env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when},
    )
    return git(repo, "rev-parse", "HEAD")


def commit_time(repo: Path, sha: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(git(repo, "log", "-1", "--format=%aI", sha))


def agent_yaml(
    slug: str = "support-bot",
    *,
    prompt: str = "You are helpful.",
    name: str | None = None,
    extra: str = "",
    config_extra: str = "",
) -> str:
    """A valid agent file; `extra` and `config_extra` are appended at their level."""
    return (
        f"slug: {slug}\n"
        f"name: {name or slug.replace('-', ' ').title()}\n"
        f"{extra}"
        "config:\n"
        "  model: gpt-4o-mini\n"
        "  temperature: 0.2\n"
        "  max_tokens: 800\n"
        f"{config_extra}"
        "  system_prompt: |\n"
        f"    {prompt}\n"
    )
