"""Find what looks like a credential in a prompt or guardrails before it is saved.

A version can never be edited or deleted, so a key pasted into a prompt would be kept
forever. Pure module. Patterns are high-precision token formats (provider prefixes,
PEM headers, bearer headers), not entropy guesses, which would flag ordinary prose;
docs/decisions/0003-credential-scanning.md explains why we do not use detect-secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("a private key block", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
        ("an Anthropic API key", r"\bsk-ant-[A-Za-z0-9]+-[A-Za-z0-9_-]{20,}"),
        ("an OpenAI API key", r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"),
        ("an AWS access key id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
        ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
        ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
        ("a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        ("a Stripe secret key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
        ("a Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
        ("a Groq API key", r"\bgsk_[A-Za-z0-9]{40,}"),
        ("an xAI API key", r"\bxai-[A-Za-z0-9]{40,}"),
        ("an agentconfig API key", r"\bacfg_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}"),
        ("a JSON Web Token", r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
        ("a bearer token", r"\b[Bb]earer\s+[A-Za-z0-9._~+/=-]{20,}"),
        ("a password in a URL", r"\b[a-z][a-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@"),
    )
)


@dataclass(frozen=True)
class Finding:
    field: str
    location: str  # "line 3, column 14" in text, or a JSON path inside guardrails
    kind: str
    excerpt: str  # the first characters only: never repeat a whole secret back

    def message(self) -> str:
        return (
            f"{self.location} looks like {self.kind} ({self.excerpt}…). Remove it: a version can "
            "never be edited or deleted, so a credential saved here could never be taken out. "
            "Keep credentials in the runtime's secret store."
        )


def scan_text(text: str, field: str, path: str = "") -> list[Finding]:
    """Every credential-like token in `text`, with its line and column."""
    findings: list[Finding] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue  # an earlier, more specific pattern already reported this token
            taken.append((start, end))
            line = text.count("\n", 0, start) + 1
            column = start - (text.rfind("\n", 0, start) + 1) + 1
            where = f"line {line}, column {column}"
            location = f"{path or field} ({where})" if path else f"{field}, {where}"
            findings.append(Finding(field, location, kind, match.group()[:6]))
    return sorted(findings, key=lambda f: f.location)


def scan_json(value: Any, field: str, path: str | None = None) -> list[Finding]:
    """Every credential-like token in the keys and string values of a JSON value."""
    path = path or field
    found: list[Finding] = []
    for sub_path, text in _strings(value, path):
        found.extend(scan_text(text, field, sub_path))
    return found


def scan_config(config: Mapping[str, Any]) -> list[Finding]:
    """Credentials in the free-text parts of a configuration: the prompt and the guardrails."""
    return scan_text(config.get("system_prompt") or "", "system_prompt") + scan_json(
        config.get("guardrails") or {}, "guardrails"
    )


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield f"{path} key {key!r}", str(key)
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
