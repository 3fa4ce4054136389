"""Semantic versions (semver.org 2.0.0) for the semver_* targeting operators.

Invariants:
- Only MAJOR.MINOR.PATCH with optional -prerelease and +build is accepted, with an
  optional leading "v" (app versions are often written "v2.4.0"). "2.4" is refused:
  guessing the missing part would make "2.4" equal to "2.4.0" in one rule and
  unparsable in another tool.
- Precedence follows the specification: build metadata is ignored; a pre-release sorts
  before its release; pre-release identifiers compare numerically when both are numeric,
  numeric identifiers sort before alphanumeric ones, and a shorter list sorts first when
  all preceding identifiers are equal.

Pure module (no Django).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = r"0|[1-9]\d*"
_PRE_ID = r"0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*"
_SEMVER = re.compile(
    rf"^v?(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>(?:{_PRE_ID})(?:\.(?:{_PRE_ID}))*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$",
    re.ASCII,
)
MAX_LENGTH = 128


@dataclass(frozen=True, order=False)
class Version:
    """A parsed version; compare with the methods or with `key`."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()

    @property
    def key(self) -> tuple[object, ...]:
        # A release (no pre-release) sorts after every pre-release of the same triple.
        # Identifiers become (0, n) or (1, text): numbers first, then tuple order gives
        # "shorter list first when the common prefix is equal".
        if not self.prerelease:
            return (self.major, self.minor, self.patch, 1, ())
        ids = tuple((0, p) if isinstance(p, int) else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0, ids)

    def __lt__(self, other: Version) -> bool:
        return self.key < other.key

    def __le__(self, other: Version) -> bool:
        return self.key <= other.key

    def __gt__(self, other: Version) -> bool:
        return self.key > other.key

    def __ge__(self, other: Version) -> bool:
        return self.key >= other.key

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return f"{text}-{'.'.join(str(p) for p in self.prerelease)}" if self.prerelease else text


def parse(text: object) -> Version | None:
    """The version `text` denotes, or None if it is not a semantic version."""
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        return None
    match = _SEMVER.match(text.strip())
    if match is None:
        return None
    pre = match.group("pre")
    prerelease = tuple(int(p) if p.isdigit() else p for p in pre.split(".")) if pre else ()
    return Version(
        int(match.group("major")), int(match.group("minor")), int(match.group("patch")), prerelease
    )
