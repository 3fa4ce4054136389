"""What changed between two agent configurations, computed as plain data.

Pure module (no Django). `diff_configs(old, new)` takes two configuration mappings (the
six fields of versions.config; a missing field counts as empty, so `{}` stands for
"nothing deployed yet") and returns a ConfigDiff that templates render with autoescaping
and CSS classes. Nothing here produces markup.

The system prompt is compared in two passes, as RECIPES.md prescribes: a line-level diff
with diff-match-patch in line mode aligns the two sides; inside each pair of similar
lines a word-level diff (tokens encoded one character each, then `diff_cleanupSemantic`)
gives the highlights. Long unchanged stretches are folded, keeping context around edits.

Invariants:
- Nothing is lost: concatenating the `old` segments of all prompt rows, in order, gives
  the old prompt exactly, and the `new` segments the new one (whitespace and line ends
  included). Folding only groups rows; it never drops one.
- diff-match-patch keeps its default Diff_Timeout of 1 s. Never 0: two unrelated prompts
  would then take minutes. The line-level diff compares one character per line and sets
  aside lines found in one text only, so it is fast for similar and for unrelated prompts;
  the line and paragraph passes share one Diff_Timeout (only a prompt with its lines
  shuffled gets near it), and the word-level diffs share WORD_DIFF_BUDGET_SECONDS, after
  which a pair of lines degrades to "removed, added" rather than making the page slow.
- A prompt that changed is never summarised as "no changes": a change that touches no
  word says "whitespace only", and whitespace-only edits render visibly (· ↵ →).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from diff_match_patch import diff_match_patch

Op = Literal["equal", "delete", "insert"]
RowKind = Literal["equal", "delete", "insert", "change", "replace"]
GuardrailChangeKind = Literal["added", "removed", "changed"]

CONTEXT_LINES = 3
# Folding fewer lines than this hides less than the fold itself takes up.
MIN_FOLDED_LINES = 4
# Two lines (or paragraphs) count as "the same line, edited" when the Dice coefficient of
# their sets of words and punctuation marks reaches this; below it they are shown as one
# removed and one added line, because word highlights between unrelated lines are noise.
MIN_PAIR_SIMILARITY = 0.5
# Pairing a run of m removed with n added lines is an O(m*n) alignment; beyond this many
# cells the lines are paired by position instead (only unrelated texts get there).
MAX_PAIRING_CELLS = 40_000
WORD_DIFF_BUDGET_SECONDS = 0.25

MINUS = "\u2212"  # the typographic minus of "\u22121 paragraph", not a hyphen
EN_DASH = "\u2013"
SCALAR_FIELDS = (("model", "Model"), ("temperature", "Temperature"), ("max_tokens", "Max tokens"))

_OPS: dict[int, Op] = {
    diff_match_patch.DIFF_EQUAL: "equal",
    diff_match_patch.DIFF_DELETE: "delete",
    diff_match_patch.DIFF_INSERT: "insert",
}
# Words, runs of horizontal whitespace, a line break, or one other character: together
# they cover every character, so joining the tokens gives the text back.
_TOKEN = re.compile(r"\w+|[^\S\n]+|\n|[^\w\s]")
_WORD = re.compile(r"\w+")
_SIMILARITY_TOKEN = re.compile(r"\w+|[^\w\s]")
_VISIBLE_WHITESPACE = {" ": "·", "\t": "→", "\n": "↵", "\r": "␍"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MISSING: Any = object()


class Segment(NamedTuple):
    """Part of a line: in both versions ("equal"), only the old ("delete") or only the new."""

    op: Op
    text: str

    @property
    def is_edit(self) -> bool:
        return self.op != "equal"

    @property
    def is_whitespace(self) -> bool:
        """An edit made only of whitespace: shown with visible symbols, or it would be invisible."""
        return self.op != "equal" and self.text.isspace()

    @property
    def plain(self) -> str:
        """The text without the line's own line break (for whole lines)."""
        return self.text.removesuffix("\n")

    @property
    def shown(self) -> str:
        """The text as displayed: without the line's own break, whitespace edits made visible."""
        if self.is_whitespace:
            return "".join(_VISIBLE_WHITESPACE.get(ch, "·") for ch in self.text)
        return self.text.removesuffix("\n")


@dataclass(frozen=True)
class PromptRow:
    """One row of the side-by-side view: a line of the old prompt, of the new one, or both.

    kind: "equal" (same line on both sides), "delete" (old side only), "insert" (new side
    only), "change" (a line and its edited version, with word-level segments) or "replace"
    (a removed and an added line that are unrelated, shown next to each other).
    """

    kind: RowKind
    old_number: int | None
    new_number: int | None
    old: tuple[Segment, ...] = ()
    new: tuple[Segment, ...] = ()
    words_changed: int = 0

    @property
    def old_text(self) -> str:
        return "".join(segment.text for segment in self.old)

    @property
    def new_text(self) -> str:
        return "".join(segment.text for segment in self.new)

    @property
    def plain(self) -> str:
        """An unchanged line's text without its line break (the same on both sides)."""
        return self.old_text.removesuffix("\n")

    @property
    def old_marker(self) -> str:
        return MINUS if self.kind in ("delete", "change", "replace") else ""

    @property
    def new_marker(self) -> str:
        return "+" if self.kind in ("insert", "change", "replace") else ""

    @property
    def word_level(self) -> bool:
        """True when the segments mark edited words (not a whole line added or removed)."""
        return self.kind == "change"


@dataclass(frozen=True)
class PromptBlock:
    """Consecutive rows; a folded block holds only unchanged lines and is shown collapsed."""

    rows: tuple[PromptRow, ...]
    folded: bool = False

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def old_range(self) -> str:
        return _line_range([row.old_number for row in self.rows])

    @property
    def new_range(self) -> str:
        return _line_range([row.new_number for row in self.rows])


@dataclass(frozen=True)
class PromptSummary:
    """Counts for the one-line summary, e.g. "+2 paragraphs, \u22121 paragraph, 143 words changed".

    A paragraph is a block of lines separated by blank lines; an edited paragraph counts as
    changed, not as removed and added. Words changed: for each run of edits, the larger of
    the words removed and the words added (replacing one word is one word changed).
    """

    changed: bool = False
    paragraphs_added: int = 0
    paragraphs_removed: int = 0
    paragraphs_changed: int = 0
    lines_added: int = 0
    lines_removed: int = 0
    lines_changed: int = 0
    words_changed: int = 0

    @property
    def parts(self) -> tuple[tuple[str, str], ...]:
        """(kind, text) pieces of the summary; kind is a CSS-friendly word."""
        if not self.changed:
            return (("none", "no changes"),)
        parts: list[tuple[str, str]] = []
        if self.paragraphs_added:
            parts.append(("added", f"+{_plural(self.paragraphs_added, 'paragraph')}"))
        if self.paragraphs_removed:
            parts.append(("removed", f"{MINUS}{_plural(self.paragraphs_removed, 'paragraph')}"))
        if self.paragraphs_changed:
            parts.append(("changed", f"{_plural(self.paragraphs_changed, 'paragraph')} changed"))
        if self.words_changed:
            parts.append(("words", f"{_plural(self.words_changed, 'word')} changed"))
        else:
            parts.append(("whitespace", "whitespace only"))
        return tuple(parts)

    @property
    def text(self) -> str:
        return ", ".join(text for _, text in self.parts)


@dataclass(frozen=True)
class PromptDiff:
    blocks: tuple[PromptBlock, ...]
    summary: PromptSummary
    old_line_count: int
    new_line_count: int

    @property
    def changed(self) -> bool:
        return self.summary.changed

    @property
    def rows(self) -> tuple[PromptRow, ...]:
        return tuple(row for block in self.blocks for row in block.rows)


@dataclass(frozen=True)
class ScalarRow:
    """model, temperature or max_tokens before and after; `old` is None when there was none."""

    field: str
    label: str
    old: Any
    new: Any
    changed: bool

    @property
    def old_text(self) -> str:
        return _scalar_text(self.old)

    @property
    def new_text(self) -> str:
        return _scalar_text(self.new)


@dataclass(frozen=True)
class ToolsDiff:
    """Tool names added (in the new order), removed (in the old order) and kept."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    order_changed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.order_changed)


@dataclass(frozen=True)
class GuardrailChange:
    """One leaf value of the guardrails, by JSON path (e.g. `pii.redact[1]`), as compact JSON."""

    path: str
    kind: GuardrailChangeKind
    old: str | None
    new: str | None


@dataclass(frozen=True)
class GuardrailsDiff:
    changes: tuple[GuardrailChange, ...] = ()
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def count(self, kind: GuardrailChangeKind) -> int:
        return sum(1 for change in self.changes if change.kind == kind)

    @property
    def added(self) -> int:
        return self.count("added")

    @property
    def removed(self) -> int:
        return self.count("removed")

    @property
    def modified(self) -> int:
        return self.count("changed")


@dataclass(frozen=True)
class ConfigDiff:
    prompt: PromptDiff
    scalars: tuple[ScalarRow, ...]
    tools: ToolsDiff
    guardrails: GuardrailsDiff

    @property
    def changed(self) -> bool:
        return bool(self.changed_fields)

    @property
    def changed_fields(self) -> tuple[str, ...]:
        """The configuration fields that differ, in versions.config.CONFIG_FIELDS order."""
        fields = ["system_prompt"] if self.prompt.changed else []
        fields += [row.field for row in self.scalars if row.changed]
        fields += ["tools"] if self.tools.changed else []
        fields += ["guardrails"] if self.guardrails.changed else []
        return tuple(fields)


def diff_configs(
    old: Mapping[str, Any], new: Mapping[str, Any], *, context: int = CONTEXT_LINES
) -> ConfigDiff:
    """Every difference between two configurations; pass `{}` as `old` for a first deploy."""
    return ConfigDiff(
        prompt=diff_prompts(
            old.get("system_prompt") or "", new.get("system_prompt") or "", context=context
        ),
        scalars=tuple(
            _scalar_row(field, label, old.get(field, _MISSING), new.get(field, _MISSING))
            for field, label in SCALAR_FIELDS
        ),
        tools=diff_tools(old.get("tools") or (), new.get("tools") or ()),
        guardrails=diff_guardrails(old.get("guardrails") or {}, new.get("guardrails") or {}),
    )


# --- the system prompt ---------------------------------------------------------------


def new_matcher() -> diff_match_patch:
    """A diff-match-patch instance with its default 1 s timeout (see the module docstring)."""
    return diff_match_patch()


def diff_prompts(old: str, new: str, *, context: int = CONTEXT_LINES) -> PromptDiff:
    """The side-by-side rows, folded blocks and summary of two prompts."""
    dmp = new_matcher()
    started = time.time()
    # One Diff_Timeout for the line and the paragraph pass together, so even a prompt whose
    # lines were all shuffled costs about a second, not two.
    deadline = started + dmp.Diff_Timeout
    word_deadline = started + WORD_DIFF_BUDGET_SECONDS
    rows = _slide_rows(_rows(dmp, _line_diff(dmp, old, new, deadline), word_deadline))
    paragraphs = _paragraph_counts(dmp, old, new, deadline)
    summary = PromptSummary(
        changed=old != new,
        paragraphs_added=paragraphs[0],
        paragraphs_removed=paragraphs[1],
        paragraphs_changed=paragraphs[2],
        lines_added=sum(1 for row in rows if row.kind in ("insert", "replace")),
        lines_removed=sum(1 for row in rows if row.kind in ("delete", "replace")),
        lines_changed=sum(1 for row in rows if row.kind == "change"),
        words_changed=sum(row.words_changed for row in rows),
    )
    return PromptDiff(
        blocks=_fold(rows, context),
        summary=summary,
        old_line_count=len(_lines(old)),
        new_line_count=len(_lines(new)),
    )


def _lines(text: str) -> list[str]:
    """Lines with their line breaks, split on "\\n" only, exactly as diff_linesToChars does."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    return [*lines, parts[-1]] if parts[-1] else lines


def _line_diff(
    dmp: diff_match_patch, old: str, new: str, deadline: float
) -> list[tuple[Op, list[str]]]:
    """Line mode: each line becomes one character, so the diff is over lines, not letters.

    Lines found in only one of the texts cannot be common to both, so they are set aside
    before diff_main and put back as removed or added afterwards (GNU diff does the same).
    The common lines, and so the alignment, are unchanged; but two unrelated prompts, which
    share little more than blank lines, no longer make diff_main search for minutes' worth
    of alignments it then throws away.
    """
    chars_old, chars_new, line_array = dmp.diff_linesToChars(old, new)
    in_old, in_new = set(chars_old), set(chars_new)
    kept_old = "".join(char for char in chars_old if char in in_new)
    kept_new = "".join(char for char in chars_new if char in in_old)
    diffs = dmp.diff_main(kept_old, kept_new, False, deadline)
    ops: list[tuple[Op, str]] = []
    at_old = at_new = 0

    def set_aside_up_to_kept() -> None:
        # Lines set aside before the next kept line of each text go back here.
        nonlocal at_old, at_new
        while at_old < len(chars_old) and chars_old[at_old] not in in_new:
            ops.append(("delete", chars_old[at_old]))
            at_old += 1
        while at_new < len(chars_new) and chars_new[at_new] not in in_old:
            ops.append(("insert", chars_new[at_new]))
            at_new += 1

    for op, chars in diffs:
        for _ in chars:
            set_aside_up_to_kept()
            if op == diff_match_patch.DIFF_EQUAL:
                ops.append(("equal", chars_old[at_old]))
                at_old += 1
                at_new += 1
            elif op == diff_match_patch.DIFF_DELETE:
                ops.append(("delete", chars_old[at_old]))
                at_old += 1
            else:
                ops.append(("insert", chars_new[at_new]))
                at_new += 1
    ops += [("delete", char) for char in chars_old[at_old:]]
    ops += [("insert", char) for char in chars_new[at_new:]]
    # diff_charsToLines, keeping one list entry per line: rows are built line by line.
    grouped: list[tuple[Op, list[str]]] = []
    for op, char in ops:
        if grouped and grouped[-1][0] == op:
            grouped[-1][1].append(line_array[ord(char)])
        else:
            grouped.append((op, [line_array[ord(char)]]))
    return grouped


def _slide_rows(rows: list[PromptRow]) -> list[PromptRow]:
    """Move each run of only-removed or only-added lines to where it reads as paragraphs.

    A run next to unchanged lines can often sit at several positions with the same meaning
    ("blank line, paragraph" or "paragraph, blank line"). Like git's diff heuristics,
    prefer the position that starts on a non-blank line right after a blank one.
    """
    rows = list(rows)
    start = 0
    while start < len(rows):
        kind = rows[start].kind
        if kind not in ("delete", "insert"):
            start += 1
            continue
        end = start
        while end < len(rows) and rows[end].kind == kind:
            end += 1
        first = start
        while first > 0 and rows[first - 1].kind == "equal":
            first -= 1
        last = end
        while last < len(rows) and rows[last].kind == "equal":
            last += 1
        window = rows[first:last]
        texts = [row.old_text if row.kind != "insert" else row.new_text for row in window]
        at, size = start - first, end - start
        low = at
        while low > 0 and texts[low - 1] == texts[low + size - 1]:
            low -= 1
        high = at
        while high + size < len(texts) and texts[high + size] == texts[high]:
            high += 1
        best = max(range(low, high + 1), key=lambda p: (_slide_score(texts, p), p == at))
        if best != at:
            rows[first:last] = _renumber(window, texts, best, size, kind)
        start = end
    return rows


def _slide_score(texts: Sequence[str], at: int) -> int:
    starts_with_text = bool(texts[at].strip())
    follows_blank = at == 0 or not texts[at - 1].strip()
    return int(starts_with_text) + int(follows_blank)


def _renumber(
    window: Sequence[PromptRow], texts: Sequence[str], at: int, size: int, kind: RowKind
) -> list[PromptRow]:
    """The window's rows with the run of `kind` rows moved to position `at`."""
    old_number = next(row.old_number for row in window if row.old_number is not None)
    new_number = next(row.new_number for row in window if row.new_number is not None)
    rebuilt: list[PromptRow] = []
    for position, text in enumerate(texts):
        if at <= position < at + size:
            words = _word_count(text)
            if kind == "delete":
                edit = (Segment("delete", text),)
                rebuilt.append(PromptRow("delete", old_number, None, old=edit, words_changed=words))
                old_number += 1
            else:
                edit = (Segment("insert", text),)
                rebuilt.append(PromptRow("insert", None, new_number, new=edit, words_changed=words))
                new_number += 1
        else:
            segment = (Segment("equal", text),)
            rebuilt.append(PromptRow("equal", old_number, new_number, segment, segment))
            old_number += 1
            new_number += 1
    return rebuilt


def _rows(
    dmp: diff_match_patch, ops: list[tuple[Op, list[str]]], word_deadline: float
) -> list[PromptRow]:
    rows: list[PromptRow] = []
    old_number = new_number = 1
    removed: list[str] = []
    added: list[str] = []

    def flush() -> None:
        nonlocal old_number, new_number
        for old_index, new_index, paired in _align(removed, added):
            old_line = removed[old_index] if old_index is not None else None
            new_line = added[new_index] if new_index is not None else None
            row = _edit_row(dmp, old_line, new_line, paired, word_deadline)
            rows.append(
                PromptRow(
                    kind=row.kind,
                    old_number=old_number if old_line is not None else None,
                    new_number=new_number if new_line is not None else None,
                    old=row.old,
                    new=row.new,
                    words_changed=row.words_changed,
                )
            )
            old_number += old_line is not None
            new_number += new_line is not None
        removed.clear()
        added.clear()

    for op, lines in ops:
        if op == "delete":
            removed.extend(lines)
        elif op == "insert":
            added.extend(lines)
        else:
            flush()
            for line in lines:
                segment = (Segment("equal", line),)
                rows.append(PromptRow("equal", old_number, new_number, segment, segment))
                old_number += 1
                new_number += 1
    flush()
    return rows


def _edit_row(
    dmp: diff_match_patch,
    old_line: str | None,
    new_line: str | None,
    paired: bool,
    word_deadline: float,
) -> PromptRow:
    """A row for a removed and/or added line (numbers are filled in by the caller)."""
    if old_line is not None and new_line is not None:
        if old_line == new_line:
            segment = (Segment("equal", old_line),)
            return PromptRow("equal", None, None, segment, segment)
        if paired:
            segments = _word_diff(dmp, old_line, new_line, word_deadline)
            return PromptRow(
                "change",
                None,
                None,
                old=_merged(s for s in segments if s.op != "insert"),
                new=_merged(s for s in segments if s.op != "delete"),
                words_changed=_words_changed(segments),
            )
        return PromptRow(
            "replace",
            None,
            None,
            old=(Segment("delete", old_line),),
            new=(Segment("insert", new_line),),
            words_changed=max(_word_count(old_line), _word_count(new_line)),
        )
    if old_line is not None:
        return PromptRow(
            "delete",
            None,
            None,
            old=(Segment("delete", old_line),),
            words_changed=_word_count(old_line),
        )
    text = new_line or ""
    return PromptRow(
        "insert", None, None, new=(Segment("insert", text),), words_changed=_word_count(text)
    )


def _word_diff(dmp: diff_match_patch, old: str, new: str, deadline: float) -> list[Segment]:
    """Word-level segments of two lines: one character per token, then semantic cleanup."""
    table: list[str] = [""]  # index 0 unused, as in diff_linesToChars
    index: dict[str, int] = {}

    def encode(text: str) -> str:
        chars = []
        for token in _TOKEN.findall(text):
            code = index.get(token)
            if code is None:
                code = index[token] = len(table)
                table.append(token)
            chars.append(chr(code))
        return "".join(chars)

    encoded_old, encoded_new = encode(old), encode(new)
    diffs = dmp.diff_main(encoded_old, encoded_new, False, deadline)
    decoded = [(op, "".join(table[ord(char)] for char in chars)) for op, chars in diffs]
    dmp.diff_cleanupSemantic(decoded)
    return [Segment(_OPS[op], text) for op, text in decoded if text]


def _merged(segments: Iterable[Segment]) -> tuple[Segment, ...]:
    """Adjacent segments of the same kind joined (one side of a line loses the other's edits)."""
    merged: list[Segment] = []
    for segment in segments:
        if merged and merged[-1].op == segment.op:
            merged[-1] = Segment(segment.op, merged[-1].text + segment.text)
        else:
            merged.append(segment)
    return tuple(merged)


def _words_changed(segments: Sequence[Segment]) -> int:
    total = removed = added = 0
    for segment in [*segments, Segment("equal", "")]:
        if segment.op == "delete":
            removed += _word_count(segment.text)
        elif segment.op == "insert":
            added += _word_count(segment.text)
        else:
            total += max(removed, added)
            removed = added = 0
    return total


def _word_count(text: str) -> int:
    return len(_WORD.findall(text))


def _similarity_key(text: str) -> frozenset[str]:
    return frozenset(token.lower() for token in _SIMILARITY_TOKEN.findall(text))


def _similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice coefficient of two token sets; two blank lines are alike."""
    if not a and not b:
        return 1.0
    return 2 * len(a & b) / (len(a) + len(b))


def _align(old: Sequence[str], new: Sequence[str]) -> Iterator[tuple[int | None, int | None, bool]]:
    """Pair removed with added items: (old index, new index, similar enough for word diffs).

    Similar items are matched by an order-preserving alignment that maximises the total
    similarity; the unmatched ones between two matches are put side by side.
    """
    if not old or not new:
        yield from ((i, None, False) for i in range(len(old)))
        yield from ((None, j, False) for j in range(len(new)))
        return
    old_keys = [_similarity_key(text) for text in old]
    new_keys = [_similarity_key(text) for text in new]
    if len(old) * len(new) > MAX_PAIRING_CELLS:
        for i in range(max(len(old), len(new))):
            a = i if i < len(old) else None
            b = i if i < len(new) else None
            similar = (
                a is not None
                and b is not None
                and _similarity(old_keys[a], new_keys[b]) >= MIN_PAIR_SIMILARITY
            )
            yield a, b, similar
        return
    matches = _best_matches(old_keys, new_keys)
    next_old = next_new = 0
    for match_old, match_new in [*matches, (len(old), len(new))]:
        gap_old = range(next_old, match_old)
        gap_new = range(next_new, match_new)
        for k in range(max(len(gap_old), len(gap_new))):
            yield (
                gap_old[k] if k < len(gap_old) else None,
                gap_new[k] if k < len(gap_new) else None,
                False,
            )
        if match_old < len(old):
            yield match_old, match_new, True
        next_old, next_new = match_old + 1, match_new + 1


def _best_matches(
    old_keys: Sequence[frozenset[str]], new_keys: Sequence[frozenset[str]]
) -> list[tuple[int, int]]:
    """The order-preserving pairs with the highest total similarity (a small DP)."""
    m, n = len(old_keys), len(new_keys)
    score = [[0.0] * (n + 1) for _ in range(m + 1)]
    for i in range(1, m + 1):
        row, above = score[i], score[i - 1]
        key = old_keys[i - 1]
        for j in range(1, n + 1):
            best = max(above[j], row[j - 1])
            similarity = _similarity(key, new_keys[j - 1])
            if similarity >= MIN_PAIR_SIMILARITY:
                best = max(best, above[j - 1] + similarity)
            row[j] = best
    matches: list[tuple[int, int]] = []
    i, j = m, n
    while i and j:
        if score[i][j] == score[i - 1][j]:
            i -= 1
        elif score[i][j] == score[i][j - 1]:
            j -= 1
        else:
            matches.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    return matches[::-1]


def _fold(rows: Sequence[PromptRow], context: int) -> tuple[PromptBlock, ...]:
    """Group rows into blocks, folding unchanged stretches except `context` lines around edits."""
    blocks: list[PromptBlock] = []
    current: list[PromptRow] = []
    start = 0
    while start < len(rows):
        if rows[start].kind != "equal":
            current.append(rows[start])
            start += 1
            continue
        end = start
        while end < len(rows) and rows[end].kind == "equal":
            end += 1
        keep_before = context if start > 0 else 0
        keep_after = context if end < len(rows) else 0
        hidden_from, hidden_to = start + keep_before, end - keep_after
        if hidden_to - hidden_from >= MIN_FOLDED_LINES:
            current.extend(rows[start:hidden_from])
            if current:
                blocks.append(PromptBlock(tuple(current)))
            blocks.append(PromptBlock(tuple(rows[hidden_from:hidden_to]), folded=True))
            current = list(rows[hidden_to:end])
        else:
            current.extend(rows[start:end])
        start = end
    if current:
        blocks.append(PromptBlock(tuple(current)))
    return tuple(blocks)


def _paragraphs(text: str) -> list[str]:
    """Blocks of non-blank lines, separated by blank (or whitespace-only) lines."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def _paragraph_counts(
    dmp: diff_match_patch, old: str, new: str, deadline: float
) -> tuple[int, int, int]:
    """(added, removed, changed) paragraphs; an edited paragraph is changed, not removed+added."""
    old_paragraphs, new_paragraphs = _paragraphs(old), _paragraphs(new)
    table: dict[str, str] = {}

    def encode(paragraphs: list[str]) -> str:
        return "".join(table.setdefault(p, chr(len(table) + 1)) for p in paragraphs)

    diffs = dmp.diff_main(encode(old_paragraphs), encode(new_paragraphs), False, deadline)
    by_char = {char: paragraph for paragraph, char in table.items()}
    added = removed = changed = 0
    gap_old: list[str] = []
    gap_new: list[str] = []
    for op, chars in [*diffs, (diff_match_patch.DIFF_EQUAL, "")]:
        if op == diff_match_patch.DIFF_DELETE:
            gap_old.extend(by_char[char] for char in chars)
        elif op == diff_match_patch.DIFF_INSERT:
            gap_new.extend(by_char[char] for char in chars)
        else:
            for old_index, new_index, paired in _align(gap_old, gap_new):
                if paired:
                    changed += 1
                else:
                    removed += old_index is not None
                    added += new_index is not None
            gap_old, gap_new = [], []
    return added, removed, changed


def _line_range(numbers: Sequence[int | None]) -> str:
    present = [number for number in numbers if number is not None]
    if not present:
        return ""
    return str(present[0]) if present[0] == present[-1] else f"{present[0]}{EN_DASH}{present[-1]}"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


# --- model, temperature, max_tokens, tools -------------------------------------------


def _scalar_row(field: str, label: str, old: Any, new: Any) -> ScalarRow:
    return ScalarRow(
        field=field,
        label=label,
        old=None if old is _MISSING else old,
        new=None if new is _MISSING else new,
        changed=old is _MISSING or new is _MISSING or _compact_json(old) != _compact_json(new),
    )


def _scalar_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return _compact_json(value)


def diff_tools(old: Sequence[str], new: Sequence[str]) -> ToolsDiff:
    """Tools added and removed; `order_changed` if the kept tools are in another order."""
    old_set, new_set = set(old), set(new)
    kept_old_order = [name for name in old if name in new_set]
    kept_new_order = [name for name in new if name in old_set]
    return ToolsDiff(
        added=tuple(name for name in new if name not in old_set),
        removed=tuple(name for name in old if name not in new_set),
        unchanged=tuple(kept_new_order),
        order_changed=kept_old_order != kept_new_order,
    )


# --- guardrails ----------------------------------------------------------------------


def diff_guardrails(old: Any, new: Any) -> GuardrailsDiff:
    """Leaf values added, removed or changed, by JSON path; lists are compared by index."""
    old_leaves = dict(_leaves(old))
    new_leaves = dict(_leaves(new))
    changes: list[GuardrailChange] = []
    unchanged = 0
    for key in sorted(old_leaves.keys() | new_leaves.keys()):
        path = _path_text(key)
        if key not in new_leaves:
            changes.append(GuardrailChange(path, "removed", _compact_json(old_leaves[key]), None))
        elif key not in old_leaves:
            changes.append(GuardrailChange(path, "added", None, _compact_json(new_leaves[key])))
        else:
            before, after = _compact_json(old_leaves[key]), _compact_json(new_leaves[key])
            if before == after:
                unchanged += 1
            else:
                changes.append(GuardrailChange(path, "changed", before, after))
    return GuardrailsDiff(changes=tuple(changes), unchanged=unchanged)


PathKey = tuple[tuple[int, int | str], ...]


def _leaves(value: Any, key: PathKey = ()) -> Iterator[tuple[PathKey, Any]]:
    """(path, value) of every leaf; an empty object or list is a leaf of its own."""
    if isinstance(value, Mapping) and value:
        for name, item in value.items():
            yield from _leaves(item, (*key, (1, str(name))))
    elif isinstance(value, list | tuple) and value:
        for position, item in enumerate(value):
            yield from _leaves(item, (*key, (0, position)))
    elif key or not isinstance(value, Mapping | list | tuple):
        # The root is only a leaf when it is not an object or list (not valid guardrails).
        yield key, value


def _path_text(key: PathKey) -> str:
    """`pii.redact[1]`; keys that are not plain names are quoted: `["max tokens"].soft`."""
    if not key:
        return "(whole value)"
    parts: list[str] = []
    for kind, step in key:
        if kind == 0:
            parts.append(f"[{step}]")
        elif _IDENTIFIER.match(str(step)):
            parts.append(f".{step}" if parts else str(step))
        else:
            parts.append(f"[{json.dumps(step, ensure_ascii=False)}]")
    return "".join(parts)


def _compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
