"""Sync agents from a git repository at a commit: `sync_agents_from_git(repo=..., ref=...)`.

The files under a folder of the repository at one commit are read (versions.git_source),
validated exactly like a folder sync (versions.sync), and compared with each agent's
versions. Every version made here has source "git" and records the commit's SHA, author,
author date and message, and the file's path from the repository root; its change
description is the file's `change_description`, else the commit message.

The rules, per agent file (T is the commit being synced):
1. A new slug creates the agent and its v1.
2. If the agent's newest version in git came from T, nothing happens: re-running a sync
   at the same commit writes nothing, even if the agent was edited outside git since.
3. If T is *older* than that version's commit P (T is an ancestor of P, by
   `git merge-base --is-ancestor`), or P is not in the repository so the order cannot be
   told, nothing is written for the agent, and if its file differs from the latest
   version the whole sync is refused: it would take the agent back in time. A stale CI
   job re-run after newer merges is the typical cause. `allow_revert=True` lifts the
   rule. A commit that is neither older nor newer (another branch) is not "older".
4. A file equal to the latest version changes nothing. If that version was made outside
   git, a GitConfirmation records that git now holds it (so it is no longer drift).
5. A file that has not changed since the agent's newest version in git, while a newer
   version was made outside git, leaves that newer version alone ("kept"): an unrelated
   merge must not silently undo a change made in the browser. The admin shows the drift
   and offers the version's file to commit.
6. Otherwise the file becomes the next version (replacing, if so, a version made
   outside git: the file changed in git, and git is the source of truth).

Name and description follow the file (not versioned, as in the folder sync), except in
cases 2 and 3. An agent synced from git before that has no file under the folder at T is
left alone and reported ("no file at this commit; left unchanged"): deleting a file never
deletes an agent or a version. A file moved to another folder keeps its agent (the slug is
the file name); a file renamed to another slug is another agent, because slugs never
change (they are in URLs and in every runtime's requests).

Invariants:
- Every file is validated before anything is written, and every older-commit refusal
  is found before anything is written; either way SyncError lists them all.
- Versions, confirmations, name changes, deploys and deployment requests are written in
  one transaction: if deploying one new version fails, nothing is written, so re-running
  the same command retries all of it.
- Agents are locked in slug order before their versions are compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from django.db import transaction
from django.db.models import Q

from agentconfig.core.actors import Actor
from agentconfig.models import Agent
from versions.git_source import (
    Commit,
    GitError,
    Repository,
    TreeFile,
    check_folder,
    open_repository,
)
from versions.models import AgentVersion, GitConfirmation, Source
from versions.selectors import GitState, list_git_states
from versions.services import (
    MAX_CHANGE_DESCRIPTION,
    commit_fields,
    create_agent,
    create_version,
)
from versions.sync import (
    MAX_FILE_BYTES,
    AgentResult,
    Entry,
    FileError,
    FileInput,
    SyncError,
    SyncReport,
    changed_fields,
    classify_name,
    misnamed_problem,
    plural,
    too_large_problem,
    update_agent_from_file,
    validate_files,
)

# T relative to an agent's last commit in git; "not_older" includes another branch.
Order = Literal["same", "not_older", "older", "unknown"]


# Given the versions a sync created and the commit, do what the caller asked (deploy them,
# open requests) inside the sync's transaction; the lines to report. Raise SyncError to
# refuse: the whole sync is then rolled back.
ReleaseStep = Callable[[list[AgentVersion], Commit], tuple[str, ...]]


@dataclass(frozen=True)
class _Plan:
    """What the sync will do for one agent file; decided before anything is written."""

    entry: Entry
    agent: Agent | None
    state: GitState
    action: Literal["created", "new_version", "unchanged", "kept"]
    confirm: bool = False  # record that git now holds the latest version
    update: bool = True  # bring name and description in line with the file
    note: str = ""


def sync_agents_from_git(
    *,
    repo: str,
    ref: str,
    folder: str = "",
    actor: Actor,
    check_only: bool = False,
    allow_revert: bool = False,
    release: ReleaseStep | None = None,
) -> SyncReport:
    """Sync the agent files under `folder` of `repo` at `ref`; then, in the same
    transaction, hand the versions it created to `release` (deployments.services.
    git_releases deploys them or opens requests), so a refused release writes nothing."""
    try:
        folder = check_folder(folder)
        with open_repository(repo) as repository:
            commit = repository.resolve(ref)
            where = f"{repo} at {commit.short}" + (f" ({folder}/)" if folder else "")
            entries = _read_and_validate(repository, commit, folder, where)
            if check_only:
                results = tuple(
                    AgentResult(e.agent_file.slug, e.source_path, "valid") for e in entries
                )
                return SyncReport(
                    path=where, check_only=True, results=results, heading=_heading(commit)
                )
            with transaction.atomic():
                results = _write(entries, repository, commit, folder, actor, allow_revert)
                created = _created_versions(results, commit)
                releases = release(created, commit) if release is not None else ()
    except GitError as exc:
        raise SyncError([exc.message]) from None
    return SyncReport(
        path=where,
        check_only=False,
        results=results,
        releases=releases,
        heading=_heading(commit),
    )


def _heading(commit: Commit) -> str:
    return f"Commit {commit.sha} by {commit.author}, {commit.time.isoformat()}: {commit.subject}"


# --- reading -----------------------------------------------------------------------------


def _read_and_validate(
    repository: Repository, commit: Commit, folder: str, where: str
) -> list[Entry]:
    prefix = f"{folder}/" if folder else ""
    agent_files: list[TreeFile] = []
    errors: list[FileError] = []
    for file in repository.list_files(commit, folder):
        kind = classify_name(file.path[len(prefix) :])
        if kind == "misnamed":
            errors.append(FileError(file.path, misnamed_problem(file.path)))
        elif kind == "agent":
            agent_files.append(file)
    if not agent_files and not errors:
        raise SyncError(
            [
                f"{where}: no agent files found. Expected one <slug>.yaml file per agent "
                "(for example support-bot.yaml); check --path."
            ]
        )
    readable = [f for f in agent_files if not f.is_symlink and f.size <= MAX_FILE_BYTES]
    blobs = repository.read(readable)
    inputs = [_input(file, blobs) for file in agent_files]
    return validate_files(inputs, errors, where=f"at {where}")


def _input(file: TreeFile, blobs: dict[str, bytes]) -> FileInput:
    try:
        file.path.encode("utf-8")
    except UnicodeEncodeError:
        shown = file.path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return FileInput(shown, shown, None, "the file name is not UTF-8; rename it.")
    if file.is_symlink:
        return FileInput(
            file.path, file.path, None, "is a symbolic link; commit the agent file itself."
        )
    if file.size > MAX_FILE_BYTES:
        return FileInput(file.path, file.path, None, too_large_problem())
    return FileInput(file.path, file.path, blobs[file.path])


# --- deciding and writing ----------------------------------------------------------------


def _write(
    entries: list[Entry],
    repository: Repository,
    commit: Commit,
    folder: str,
    actor: Actor,
    allow_revert: bool,
) -> tuple[AgentResult, ...]:
    slugs = sorted(entry.agent_file.slug for entry in entries)
    existing = {
        agent.slug: agent
        for agent in Agent.objects.select_for_update().filter(slug__in=slugs).order_by("slug")
    }
    states = list_git_states(agent.pk for agent in existing.values())
    order = _Ordering(repository, commit)

    plans: list[_Plan] = []
    refusals: list[str] = []
    for entry in entries:
        agent = existing.get(entry.agent_file.slug)
        state = states[agent.pk] if agent else GitState(latest=None, in_git=None)
        plan, refusal = _decide(entry, agent, state, commit, order, allow_revert)
        plans.append(plan)
        if refusal:
            refusals.append(refusal)
    if refusals:
        raise SyncError(
            refusals,
            heading=(
                f"Nothing was written: {commit.short} is not newer than the last sync of "
                f"{plural(len(refusals), 'agent')}, and syncing it would take "
                f"{'it' if len(refusals) == 1 else 'them'} back in time. Sync a newer "
                "commit, or pass --allow-revert if going back is what you want:"
            ),
        )

    _check_permissions(plans, actor)
    results = [_apply(plan, commit, actor) for plan in plans]
    results += _missing(slugs, folder)
    return tuple(results)


class _Ordering:
    """Where T stands relative to each agent's last commit in git, asked once per commit."""

    def __init__(self, repository: Repository, commit: Commit) -> None:
        self.repository = repository
        self.commit = commit
        self._known: dict[str, Order] = {}

    def of(self, previous: str) -> Order:
        if previous == self.commit.sha:
            return "same"
        if previous not in self._known:
            if not self.repository.ensure_commit(previous):
                self._known[previous] = "unknown"
            elif self.repository.is_ancestor(self.commit.sha, previous):
                self._known[previous] = "older"
            else:
                self._known[previous] = "not_older"
        return self._known[previous]

    def unknown_hint(self) -> str:
        if self.repository.is_shallow():
            return (
                " (this is a shallow clone: fetch the full history, for example "
                "actions/checkout with fetch-depth: 0)"
            )
        return " (was the history rewritten, or is this another repository?)"


def _decide(
    entry: Entry,
    agent: Agent | None,
    state: GitState,
    commit: Commit,
    order: _Ordering,
    allow_revert: bool,
) -> tuple[_Plan, str | None]:
    """The plan for one file, and the refusal if it would go back in time."""
    if agent is None or state.latest is None:
        return _Plan(entry, agent, state, "created" if agent is None else "new_version"), None
    latest, in_git = state.latest, state.in_git
    moved = (
        f"moved from {state.path}"
        if in_git and state.path and state.path != entry.source_path
        else ""
    )
    if in_git is None:
        if latest.config_hash == entry.config_hash:
            return _Plan(entry, agent, state, "unchanged", confirm=True, note=moved), None
        return _Plan(entry, agent, state, "new_version", note=moved), None

    relation = order.of(state.commit)
    if relation == "same":
        if latest.pk == in_git.pk:
            note = "already synced at this commit"
            return _Plan(entry, agent, state, "unchanged", update=False, note=note), None
        note = (
            f"already synced at this commit as {in_git.label}; {latest.label} was made outside "
            "git since"
        )
        return _Plan(entry, agent, state, "kept", update=False, note=note), None

    if latest.config_hash == entry.config_hash:
        plan = _Plan(entry, agent, state, "unchanged", confirm=latest.pk != in_git.pk, note=moved)
    elif in_git.config_hash == entry.config_hash:
        plan = _Plan(
            entry,
            agent,
            state,
            "kept",
            note=(
                f"{latest.label} was made outside git after {in_git.label}, and the file has "
                f"not changed since {in_git.label}; download {latest.label}'s file from the "
                "admin and commit it, or change the file"
            ),
        )
    else:
        replaced = f"replaces {latest.label}, made outside git" if latest.pk != in_git.pk else ""
        plan = _Plan(entry, agent, state, "new_version", note=_join(moved, replaced))

    if relation == "not_older":
        return plan, None
    if allow_revert:
        why = "older than" if relation == "older" else "not comparable with"
        note = f"{commit.short} is {why} {state.commit[:12]} (--allow-revert)"
        return dataclasses.replace(plan, note=_join(plan.note, note)), None
    left = _Plan(
        entry,
        agent,
        state,
        "unchanged" if plan.action == "unchanged" else "kept",
        update=False,
        note=f"at a commit older than {state.commit[:12]}, where {in_git.label} came from; "
        "left unchanged",
    )
    if plan.action != "new_version":
        return left, None
    slug = entry.agent_file.slug
    if relation == "older":
        refusal = (
            f"{slug}: {commit.short} is older than {state.commit[:12]}, the commit "
            f"{in_git.label} was synced from (it is an ancestor of it); its {entry.source_path} "
            f"differs from {latest.label}, so this sync would make an older state the newest "
            "version."
        )
    else:
        refusal = (
            f"{slug}: cannot tell whether {commit.short} is newer than {state.commit[:12]}, "
            f"the commit {in_git.label} was synced from: that commit is not in "
            f"{order.repository.display}{order.unknown_hint()}."
        )
    return left, refusal


def _join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def _check_permissions(plans: list[_Plan], actor: Actor) -> None:
    """Refuse before any write rather than half-way."""
    if any(plan.action == "created" for plan in plans):
        actor.require("agentconfig.add_agent", "create agents")
    if any(
        plan.update and plan.agent and changed_fields(plan.agent, plan.entry.agent_file)
        for plan in plans
    ):
        actor.require("agentconfig.change_agent", "change agents")
    if any(plan.action in ("created", "new_version") for plan in plans):
        actor.require("versions.add_agentversion", "create versions")
    if any(plan.confirm for plan in plans):
        actor.require("versions.add_gitconfirmation", "record versions as in git")


def _apply(plan: _Plan, commit: Commit, actor: Actor) -> AgentResult:
    entry, file = plan.entry, plan.entry.agent_file
    if plan.agent is None:
        agent = create_agent(
            slug=file.slug, name=file.name, description=file.description, actor=actor
        )
        version = _create_version(agent, entry, commit, actor)
        return AgentResult(file.slug, entry.source_path, "created", version.version_number)
    agent, latest = plan.agent, plan.state.latest
    updated = (
        update_agent_from_file(agent, file, actor, f"{entry.source_path} at {commit.short}")
        if plan.update
        else ()
    )
    if plan.action == "new_version":
        version = _create_version(agent, entry, commit, actor)
        number = version.version_number
    else:
        assert latest is not None  # noqa: S101 - only a new agent has no latest version
        number = latest.version_number
        if plan.confirm:
            GitConfirmation.objects.create(
                version=latest,
                source_path=entry.source_path,
                created_by=actor.user,
                created_by_label=actor.label,
                **commit_fields(commit),
            )
    note = _join(plan.note, "now recorded as in git" if plan.confirm else "")
    return AgentResult(file.slug, entry.source_path, plan.action, number, updated, note)


def _create_version(agent: Agent, entry: Entry, commit: Commit, actor: Actor) -> AgentVersion:
    return create_version(
        agent=agent,
        actor=actor,
        config=entry.agent_file.config,
        change_description=entry.change_description or _description_from(commit, entry),
        source=Source.GIT,
        source_path=entry.source_path,
        commit=commit,
    )


def _description_from(commit: Commit, entry: Entry) -> str:
    message = commit.message.replace("\x00", "").strip()
    if not message:
        return f"Synced from {entry.source_path} at {commit.short}"
    if len(message) > MAX_CHANGE_DESCRIPTION:
        # The whole message stays on the version (source_commit_message).
        return message[: MAX_CHANGE_DESCRIPTION - 1] + "…"
    return message


def _missing(synced_slugs: list[str], folder: str) -> list[AgentResult]:
    """Agents synced from git before whose file is not under `folder` at this commit."""
    prefix = f"{folder}/" if folder else ""
    candidates = (
        Agent.objects.filter(
            Q(versions__source=Source.GIT) | Q(versions__git_confirmation__isnull=False)
        )
        .exclude(slug__in=synced_slugs)
        .distinct()
        .values_list("pk", flat=True)
    )
    results = []
    for state in list_git_states(candidates).values():
        if state.in_git is None or state.latest is None or not state.path.startswith(prefix):
            continue
        results.append(
            AgentResult(
                state.latest.agent.slug,
                state.path,
                "missing",
                state.latest.version_number,
                note=f"last synced from {state.path} at {state.commit[:12]}",
            )
        )
    return sorted(results, key=lambda result: result.slug)


# --- what the sync creates, for a release step ------------------------------------------


def _created_versions(results: tuple[AgentResult, ...], commit: Commit) -> list[AgentVersion]:
    """The versions this sync created, in the order of `results`."""
    created = [r for r in results if r.action in ("created", "new_version")]
    versions: dict[tuple[str, int | None], AgentVersion] = {
        (version.agent.slug, version.version_number): version
        for version in AgentVersion.objects.select_related("agent").filter(
            Q(agent__slug__in=[r.slug for r in created]), source_commit=commit.sha
        )
    }
    return [versions[(result.slug, result.version_number)] for result in created]
