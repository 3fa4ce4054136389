"""Read agent files from a git repository at a commit, with the `git` command.

Pure module (no Django). `open_repository(location)` gives a `Repository` that resolves a
ref to a `Commit`, lists the files of a folder at that commit and reads them, and tells
whether one commit is an ancestor of another. Nothing is ever checked out.

Invariants it keeps:
- Only three kinds of location are accepted: `https://` URLs, `ssh://` URLs (or the
  scp-like `user@host:path`), and local paths. Everything else is refused before git
  runs: `file://`, `git://`, `http://`, remote helpers (`ext::`, `fd::`, any
  `transport::address`) and anything starting with `-`, which git would read as an
  option (`--upload-pack=...`). Refs and folders are checked the same way, and every
  user-supplied value is passed after `--` or `--end-of-options` as well.
- A remote's host follows the outbound rules of agentconfig.core.outbound.check_host: a host
  written as a loopback, private, link-local or other non-public address (or localhost)
  is refused unless allow-listed; an https URL carries no user:password@ (git's
  credential helper holds those). git resolves names itself, so a name is not checked
  against what it resolves to.
- git runs from an argument list, never a shell; with no terminal (its own session,
  stdin closed, GIT_TERMINAL_PROMPT=0), so a missing credential fails instead of
  waiting; and with a timeout, after which its whole process group is killed.
- No hook from any repository ever runs: every command gets `core.hooksPath=/dev/null`,
  a remote is cloned `--bare` (no checkout, so no post-checkout), and a local repository
  is only read (rev-parse, ls-tree, cat-file, log, merge-base run no hooks).
- A remote URL is cloned into a temporary folder that is removed afterwards, also when
  reading fails. A local repository is read in place and never written to.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from agentconfig.core.outbound import OutboundRefused, check_host

CLONE_TIMEOUT_SECONDS = 300
COMMAND_TIMEOUT_SECONDS = 60
ALLOWED_SCHEMES = ("https", "ssh")
# Applied to every git command. hooksPath: no hook runs, whatever the repository or a
# clone template holds. fsmonitor: a repository's config cannot name a program to run.
# ext/fd: remote helpers that run commands, refused even when a redirect leads there.
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.ext.allow=never",
    "protocol.fd.allow=never",
    "log.showSignature=false",
)
# Variables that would point git at another repository than the one we name.
_REPOSITORY_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
)
_SHA1 = re.compile(r"[0-9a-f]{40}")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
# user@host:path, the form git treats as ssh when there is no slash before the colon.
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+|\[[^\]/]+\]):(?P<path>.*)$")
_REF_CHARACTERS = re.compile(r"^[A-Za-z0-9._/@{}^~+-]+$")
_COMMIT_FORMAT = "%H%x00%an%x00%ae%x00%aI%x00%B"


class GitError(Exception):
    """git refused, failed or timed out, or a location, ref or folder is not acceptable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Commit:
    """A commit as recorded on the versions made from it."""

    sha: str
    author_name: str
    author_email: str
    time: datetime.datetime  # the author date, timezone-aware
    message: str

    @property
    def short(self) -> str:
        return self.sha[:12]

    @property
    def author(self) -> str:
        return (
            f"{self.author_name} <{self.author_email}>" if self.author_email else self.author_name
        )

    @property
    def subject(self) -> str:
        lines = self.message.strip().splitlines()
        return lines[0] if lines else ""


@dataclass(frozen=True)
class TreeFile:
    """A file in a commit's tree: its path from the repository root, mode and blob."""

    path: str
    mode: str
    object_id: str
    size: int

    @property
    def is_symlink(self) -> bool:
        return self.mode == "120000"


@dataclass(frozen=True)
class Location:
    """A checked repository location: `kind` is "local" or "remote"."""

    kind: str
    value: str  # an absolute path for "local", the URL as given for "remote"


def check_location(location: str) -> Location:
    """The location if it is an https/ssh URL or an existing local folder; GitError if not."""
    allowed = "Give an https:// or ssh:// URL, user@host:path, or the path of a local repository."
    if not location or location != location.strip():
        raise GitError(f"repository {location!r}: empty or surrounded by spaces. {allowed}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in location):
        raise GitError(f"repository {location!r}: contains control characters. {allowed}")
    if location.startswith("-"):
        raise GitError(
            f"repository {location!r}: starts with '-', which git would read as an option "
            f"(for example --upload-pack). {allowed}"
        )
    if _HELPER.match(location):
        raise GitError(
            f"repository {location!r}: remote helpers ('transport::address', such as ext::) "
            f"can run commands and are not accepted. {allowed}"
        )
    remote_like = _SCHEME.match(location) or ":" in location
    if remote_like and not Path(location).exists() and any(ch.isspace() for ch in location):
        raise GitError(f"repository {location!r}: a URL cannot contain spaces. {allowed}")
    scheme = _SCHEME.match(location)
    if scheme:
        return Location("remote", _check_url(location, scheme.group(1).lower(), allowed))
    local = Path(location)
    if local.exists() or "/" in location.split(":", 1)[0]:
        if not local.is_dir():
            what = "is a file, not a folder" if local.exists() else "no such folder"
            raise GitError(f"repository {location}: {what}. {allowed}")
        return Location("local", str(local.resolve()))
    scp = _SCP_LIKE.match(location)
    if scp:
        for part in ("user", "host", "path"):
            if (scp.group(part) or "").startswith("-"):
                raise GitError(
                    f"repository {location!r}: the {part} starts with '-', which ssh or git "
                    f"would read as an option. {allowed}"
                )
        if not scp.group("path"):
            raise GitError(f"repository {location!r}: no path after the ':'. {allowed}")
        _check_remote_host(location, scp.group("host"), 22, allowed)
        return Location("remote", location)
    raise GitError(f"repository {location}: no such folder. {allowed}")


def _check_remote_host(location: str, host: str, port: int, allowed: str) -> None:
    try:
        check_host(host, port, purpose="repository", url=location)
    except OutboundRefused as exc:
        raise GitError(f"{exc.message} {allowed}") from None


def _check_url(url: str, scheme: str, allowed: str) -> str:
    if scheme not in ALLOWED_SCHEMES:
        why = {
            "file": "file:// URLs are not accepted; give the folder's path instead.",
            "http": "plain http is not accepted; use https://.",
            "git": "the git:// protocol is unauthenticated and unencrypted; use https:// or ssh://.",
        }.get(scheme, f"the {scheme}:// scheme is not accepted.")
        raise GitError(f"repository {url!r}: {why} {allowed}")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname or ""
        username = parts.username or ""
        port = parts.port or (443 if scheme == "https" else 22)
    except ValueError as exc:
        raise GitError(f"repository {url!r}: not a valid URL ({exc}). {allowed}") from None
    if not hostname:
        raise GitError(f"repository {url!r}: the URL has no host. {allowed}")
    if hostname.startswith("-") or username.startswith("-"):
        raise GitError(
            f"repository {url!r}: the host or user starts with '-', which ssh would read as "
            f"an option. {allowed}"
        )
    if scheme == "https" and "@" in parts.netloc:
        raise GitError(
            f"repository {parts.scheme}://…@{parts.netloc.rpartition('@')[2]}{parts.path}: "
            "the URL contains credentials, which would be shown wherever the URL is; give "
            f"them to git's credential helper instead. {allowed}"
        )
    _check_remote_host(url, hostname, port, allowed)
    return url


def check_ref(ref: str) -> str:
    """The ref if it can only name a revision (not an option, no spaces); GitError if not."""
    if not ref or ref.startswith("-") or not _REF_CHARACTERS.match(ref) or ".." in ref:
        raise GitError(
            f"--ref {ref!r}: not a branch, tag or commit. Give a name such as main or v1.2, "
            "or a commit SHA; it must not start with '-'."
        )
    return ref


def check_folder(folder: str) -> str:
    """The folder inside the repository as a clean relative path ("" for the root)."""
    raw = folder.replace("\\", "/")
    if raw.startswith("/") or raw.startswith("-") or any(ord(ch) < 32 for ch in raw):
        raise GitError(
            f"--path {folder!r}: give a folder relative to the repository root, such as agents/."
        )
    parts = [part for part in PurePosixPath(raw).parts if part not in (".", "")]
    if ".." in parts:
        raise GitError(f"--path {folder!r}: must stay inside the repository (no '..').")
    return "/".join(parts)


class Repository:
    """A git repository, read at commits without a work tree."""

    def __init__(self, git_dir: str, *, display: str, cloned: bool) -> None:
        self.git_dir = git_dir
        self.display = display
        self.cloned = cloned

    def resolve(self, ref: str) -> Commit:
        """The commit `ref` names; for a clone, fetched first if the clone lacks it."""
        ref = check_ref(ref)
        sha = self._rev_parse(ref)
        if sha is None and self.cloned:
            # Not a branch or tag (for example a commit SHA or refs/pull/1/head): ask for it.
            result = self._git(["fetch", "--quiet", "--no-tags", "origin", "--", ref], check=False)
            if result.returncode == 0:
                sha = self._rev_parse(ref) or self._rev_parse("FETCH_HEAD")
        if sha is None:
            raise GitError(
                f"{self.display}: --ref {ref!r} is not a branch, tag or commit of this repository."
            )
        return self.commit(sha)

    def commit(self, sha: str) -> Commit:
        """Author, date and message of the commit `sha`."""
        out = self._git(
            ["log", "-1", "--no-walk", "--encoding=UTF-8", f"--format={_COMMIT_FORMAT}", sha, "--"]
        ).stdout.decode("utf-8", errors="replace")
        full, name, email, date, message = out.split("\x00", 4)
        return Commit(
            sha=full.strip(),
            author_name=name,
            author_email=email,
            time=datetime.datetime.fromisoformat(date),
            message=message.rstrip(),
        )

    def list_files(self, commit: Commit, folder: str) -> list[TreeFile]:
        """Every file under `folder` ("" for the root) at `commit`, by path; GitError if none."""
        folder = check_folder(folder)
        args = ["ls-tree", "-r", "-z", "-l", "--full-tree", commit.sha]
        out = self._git([*args, "--", folder] if folder else args).stdout
        files: list[TreeFile] = []
        for record in out.split(b"\x00"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, kind, object_id, size = meta.decode().split()
            path = raw_path.decode("utf-8", errors="surrogateescape")
            if folder and not path.startswith(f"{folder}/"):
                if path == folder:
                    raise GitError(
                        f"{self.display} at {commit.short}: --path {folder} is a file, not a "
                        "folder. Give the folder that holds the agent files."
                    )
                continue
            if kind != "blob":
                continue  # a submodule: not ours to read
            files.append(TreeFile(path, mode, object_id, int(size)))
        if not files:
            where = f"--path {folder}/" if folder else "the repository"
            raise GitError(
                f"{self.display} at {commit.short}: {where} holds no files at this commit. "
                "Check --path and --ref."
            )
        return sorted(files, key=lambda file: file.path)

    def read(self, files: Sequence[TreeFile]) -> dict[str, bytes]:
        """The content of each file, by path, read in one git process."""
        if not files:
            return {}
        wanted = "".join(f"{file.object_id}\n" for file in files).encode()
        out = self._git(["cat-file", "--batch"], input=wanted).stdout
        blobs: dict[str, bytes] = {}
        position = 0
        for file in files:
            end = out.index(b"\n", position)
            header = out[position:end].split()
            if len(header) != 3 or header[1] != b"blob":
                raise GitError(f"{self.display}: cannot read {file.path} ({file.object_id}).")
            size = int(header[2])
            blobs[file.path] = out[end + 1 : end + 1 + size]
            position = end + 1 + size + 1  # the content is followed by a newline
        return blobs

    def has_commit(self, sha: str) -> bool:
        """Whether the commit `sha` is in this repository (a shallow clone may lack it)."""
        return (
            _SHA1.fullmatch(sha) is not None
            and self._git(["cat-file", "-e", f"{sha}^{{commit}}"], check=False).returncode == 0
        )

    def ensure_commit(self, sha: str) -> bool:
        """Whether the commit `sha` is here; a clone first asks its origin for it."""
        if self.has_commit(sha):
            return True
        if not self.cloned or _SHA1.fullmatch(sha) is None:
            return False
        self._git(["fetch", "--quiet", "--no-tags", "origin", "--", sha], check=False)
        return self.has_commit(sha)

    def is_ancestor(self, older: str, newer: str) -> bool:
        """Whether `older` is an ancestor of `newer` (a commit is its own ancestor)."""
        result = self._git(["merge-base", "--is-ancestor", older, newer], check=False)
        if result.returncode in (0, 1):
            return result.returncode == 0
        raise GitError(f"{self.display}: git merge-base failed: {_first_line(result.stderr)}")

    def is_shallow(self) -> bool:
        out = self._git(["rev-parse", "--is-shallow-repository"]).stdout
        return out.strip() == b"true"

    def _rev_parse(self, ref: str) -> str | None:
        result = self._git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
            check=False,
        )
        sha = result.stdout.decode().strip()
        if result.returncode != 0 or not sha:
            return None
        if not _SHA1.fullmatch(sha):
            raise GitError(
                f"{self.display}: commit ids of {len(sha)} characters (a SHA-256 repository) "
                "are not supported; versions record 40-character SHA-1 commit ids."
            )
        return sha

    def _git(
        self, args: list[str], *, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return run_git(["--git-dir", self.git_dir, *args], check=check, input=input)


@contextmanager
def open_repository(location: str) -> Iterator[Repository]:
    """The repository at `location`: read in place if local, else cloned to a temporary folder."""
    checked = check_location(location)
    if checked.kind == "local":
        result = run_git(["-C", checked.value, "rev-parse", "--absolute-git-dir"], check=False)
        if result.returncode != 0:
            raise GitError(
                f"repository {location}: not a git repository ({_first_line(result.stderr)})."
            )
        yield Repository(result.stdout.decode().strip(), display=location, cloned=False)
        return
    folder = tempfile.mkdtemp(prefix="agentconfig-clone-")
    try:
        target = os.path.join(folder, "repository.git")
        run_git(
            ["clone", "--bare", "--quiet", "--", checked.value, target],
            timeout=CLONE_TIMEOUT_SECONDS,
            what=f"cloning {location}",
        )
        yield Repository(target, display=location, cloned=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_git(
    args: list[str],
    *,
    check: bool = True,
    input: bytes | None = None,
    timeout: float = COMMAND_TIMEOUT_SECONDS,
    what: str = "",
) -> subprocess.CompletedProcess[bytes]:
    """Run git with `args` (a list: no shell), the safe settings and a timeout."""
    executable = shutil.which("git")
    if executable is None:
        raise GitError("the git command is not installed (or not on PATH); install git.")
    command = [executable]
    for setting in _SAFE_CONFIG:
        command += ["-c", setting]
    command += args
    env = {key: value for key, value in os.environ.items() if key not in _REPOSITORY_ENV}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", GIT_OPTIONAL_LOCKS="0")
    # Its own session: no controlling terminal, so neither git nor ssh can stop to ask
    # for a password, and on timeout the whole group (git, ssh, helpers) can be killed.
    process = subprocess.Popen(  # noqa: S603 - an argument list of checked values, no shell
        command,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise GitError(
            f"{what or 'git'}: no answer from git within {timeout:g} seconds; "
            "check the network and the credentials (git cannot ask for a password here)."
        ) from None
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise GitError(f"{what or 'git'} failed: {_first_line(stderr)}")
    return result


def _first_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    # git's last line is usually the most specific ("fatal: ..."); hints come before it.
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (fatal or lines or ["no error message"])[-1].strip()
