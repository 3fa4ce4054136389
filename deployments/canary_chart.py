"""Error rate per arm over time, as a small inline SVG. Pure: no Django.

Invariants:
- Every piece of text that reaches the SVG goes through html.escape, so a caller may
  mark the result safe and embed it in a page.
- The output stays small whatever the rollout's length: per-minute counts are summed
  into at most about MAX_BUCKETS buckets of a "nice" width (BUCKET_MINUTES).
- Buckets are aligned to the Unix epoch, so counts already summed per hour or per day
  by the database fall into whole buckets.
- A bucket in which an arm has no outcomes is a gap in that arm's line, never 0 %.
- The picture has a <title> and a <desc> (with the totals), named by aria-labelledby.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

STABLE = "stable"
CANARY = "canary"
TRACKS = (STABLE, CANARY)
TRACK_LABELS = {STABLE: "stable", CANARY: "canary"}
# 1, 2, 5, 10, 15, 30 minutes; 1, 2, 3, 6, 12 hours; 1, 2 days; 1 week.
BUCKET_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
MAX_BUCKETS = 60

WIDTH = 640
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 30, 34
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Sample:
    """Outcomes of one arm counted from `start` (one minute, or a longer period)."""

    start: dt.datetime
    track: str
    n: int
    errors: int


@dataclass(frozen=True)
class ArmPoint:
    n: int = 0
    errors: int = 0

    @property
    def rate(self) -> float | None:
        """errors / n, or None when there are no outcomes (a gap, not 0 %)."""
        return self.errors / self.n if self.n else None


@dataclass(frozen=True)
class Bucket:
    start: dt.datetime
    end: dt.datetime
    stable: ArmPoint
    canary: ArmPoint

    def arm(self, track: str) -> ArmPoint:
        return self.stable if track == STABLE else self.canary


@dataclass(frozen=True)
class Marker:
    """A moment worth a vertical line, e.g. the canary moving to 25 %."""

    at: dt.datetime
    label: str


def choose_bucket_minutes(span: dt.timedelta, max_buckets: int = MAX_BUCKETS) -> int:
    """The smallest nice bucket width that shows `span` in at most `max_buckets` buckets."""
    minutes = max(span.total_seconds() / 60, 1.0)
    for size in BUCKET_MINUTES:
        if minutes / size <= max_buckets:
            return size
    week = BUCKET_MINUTES[-1]
    return week * math.ceil(minutes / max_buckets / week)


def bucket_start(moment: dt.datetime, minutes: int) -> dt.datetime:
    """The start of the `minutes`-wide bucket holding `moment`, aligned to the Unix epoch."""
    epoch = _EPOCH if moment.tzinfo is not None else _EPOCH.replace(tzinfo=None)
    delta = moment - epoch
    seconds = delta.days * 86400 + delta.seconds
    width = minutes * 60
    start = epoch + dt.timedelta(seconds=seconds // width * width)
    return start.astimezone(moment.tzinfo) if moment.tzinfo is not None else start


def bucket_samples(samples: Iterable[Sample], *, minutes: int) -> list[Bucket]:
    """Sum samples into `minutes`-wide buckets, oldest first; empty buckets are left out."""
    sums: dict[dt.datetime, dict[str, list[int]]] = {}
    for sample in samples:
        if sample.track not in TRACKS:
            raise ValueError(f"unknown track {sample.track!r}; expected one of {TRACKS}.")
        start = bucket_start(sample.start, minutes)
        arms = sums.setdefault(start, {track: [0, 0] for track in TRACKS})
        arms[sample.track][0] += sample.n
        arms[sample.track][1] += sample.errors
    width = dt.timedelta(minutes=minutes)
    return [
        Bucket(
            start=start,
            end=start + width,
            stable=ArmPoint(*sums[start][STABLE]),
            canary=ArmPoint(*sums[start][CANARY]),
        )
        for start in sorted(sums)
        if sums[start][STABLE][0] or sums[start][CANARY][0]
    ]


def nice_ceiling(rate: float) -> float:
    """The top of the y axis: 1, 2, 2.5 or 5 x 10^k at or above `rate`, between 1 % and 100 %."""
    if rate <= 0.01:
        return 0.01
    if rate >= 1:
        return 1.0
    exponent = math.floor(math.log10(rate))
    for mantissa in (1, 2, 2.5, 5, 10):
        top = mantissa * 10.0**exponent
        if top >= rate * (1 - 1e-9):
            return min(top, 1.0)
    return 1.0  # pragma: no cover - 10 x 10^k always fits


def format_percent(rate: float) -> str:
    return f"{rate * 100:.3g} %"


def format_count(errors: int, n: int) -> str:
    return f"{errors:,} of {n:,}"


def error_rate_svg(
    buckets: Sequence[Bucket],
    *,
    start: dt.datetime,
    end: dt.datetime,
    title: str,
    description: str,
    chart_id: str,
    markers: Sequence[Marker] = (),
    time_zone: str = "UTC",
) -> str:
    """The error rate of both arms per bucket between `start` and `end`, as SVG markup."""
    ident = _safe_id(chart_id)
    end = max(end, start + dt.timedelta(minutes=1))
    span = (end - start).total_seconds()
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM

    def x_of(moment: dt.datetime) -> float:
        share = min(max((moment - start).total_seconds() / span, 0.0), 1.0)
        return LEFT + share * plot_width

    rates = [r for b in buckets for t in TRACKS if (r := b.arm(t).rate) is not None]
    top = nice_ceiling(max(rates, default=0.0))

    def y_of(rate: float) -> float:
        return TOP + plot_height * (1 - rate / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ac-chart" id="{ident}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc">',
        f'<title id="{ident}-title">{_esc(title)}</title>',
        f'<desc id="{ident}-desc">{_esc(_summary(description, buckets, start, end, time_zone))}'
        "</desc>",
    ]
    parts.append('<g class="ac-chart-grid">')
    for rate in (0.0, top / 2, top):
        y = y_of(rate)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_esc(format_percent(rate))}</text>"
        )
    parts.append("</g>")
    parts.append('<g class="ac-chart-axis">')
    for moment, anchor in (
        (start, "start"),
        (start + (end - start) / 2, "middle"),
        (end, "end"),
    ):
        parts.append(
            f'<text x="{x_of(moment):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="{anchor}">'
            f"{_esc(_time_label(moment, end - start))}</text>"
        )
    parts.append(
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end">{_esc(time_zone)}</text>'
    )
    parts.append("</g>")
    visible_markers = [m for m in markers if start <= m.at <= end]
    if visible_markers:
        parts.append('<g class="ac-chart-markers">')
        for marker in visible_markers:
            x = x_of(marker.at)
            parts.append(
                f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_height}"/>'
                f'<text x="{x + 3:.1f}" y="{TOP + 10}">{_esc(marker.label)}</text>'
            )
        parts.append("</g>")
    if not buckets:
        parts.append(
            f'<text class="ac-chart-empty" x="{LEFT + plot_width / 2:.1f}" '
            f'y="{TOP + plot_height / 2:.1f}" text-anchor="middle">'
            "No outcomes reported yet.</text>"
        )
    for track in TRACKS:
        parts.extend(_series(buckets, track, x_of, y_of))
    parts.extend(_legend())
    parts.append("</svg>")
    return "".join(parts)


def _series(
    buckets: Sequence[Bucket],
    track: str,
    x_of: Callable[[dt.datetime], float],
    y_of: Callable[[float], float],
) -> list[str]:
    points: list[tuple[float, float, Bucket]] = []
    for bucket in buckets:
        rate = bucket.arm(track).rate
        if rate is not None:
            middle = bucket.start + (bucket.end - bucket.start) / 2
            points.append((x_of(middle), y_of(rate), bucket))
    parts = [f'<g class="ac-chart-series ac-chart-{track}">']
    # A line joins only neighbouring buckets: a bucket without outcomes breaks it.
    segments: list[list[tuple[float, float]]] = []
    previous: Bucket | None = None
    for x, y, bucket in points:
        if previous is None or bucket.start != previous.end:
            segments.append([])
        segments[-1].append((x, y))
        previous = bucket
    for segment in segments:
        if len(segment) > 1:
            coordinates = " ".join(f"{px:.1f},{py:.1f}" for px, py in segment)
            parts.append(f'<polyline fill="none" points="{coordinates}"/>')
    for x, y, bucket in points:
        arm = bucket.arm(track)
        tip = (
            f"{_time_label(bucket.start, bucket.end - bucket.start)} to "
            f"{_time_label(bucket.end, bucket.end - bucket.start)} {TRACK_LABELS[track]}: "
            f"{format_percent(arm.rate or 0.0)} ({format_count(arm.errors, arm.n)})"
        )
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{_esc(tip)}</title></circle>')
    parts.append("</g>")
    return parts


def _legend() -> list[str]:
    parts = ['<g class="ac-chart-legend">']
    x = LEFT
    for track in TRACKS:
        parts.append(
            f'<g class="ac-chart-{track}">'
            f'<line x1="{x}" y1="12" x2="{x + 22}" y2="12"/>'
            f'<circle cx="{x + 11}" cy="12" r="3"/>'
            f'<text x="{x + 28}" y="16">{_esc(TRACK_LABELS[track])}</text></g>'
        )
        x += 90
    parts.append(f'<text x="{WIDTH - RIGHT}" y="16" text-anchor="end">error rate</text></g>')
    return parts


def _summary(
    description: str,
    buckets: Sequence[Bucket],
    start: dt.datetime,
    end: dt.datetime,
    time_zone: str,
) -> str:
    window = (
        f"From {_time_label(start, end - start)} to {_time_label(end, end - start)} ({time_zone})."
    )
    if not buckets:
        return f"{description} {window} No outcomes reported yet."
    totals = []
    for track in TRACKS:
        n = sum(b.arm(track).n for b in buckets)
        errors = sum(b.arm(track).errors for b in buckets)
        if n:
            totals.append(
                f"{TRACK_LABELS[track]}: {format_percent(errors / n)} "
                f"({format_count(errors, n)} outcomes failed)"
            )
        else:
            totals.append(f"{TRACK_LABELS[track]}: no outcomes")
    width = buckets[0].end - buckets[0].start
    return (
        f"{description} {window} {len(buckets)} buckets of {_duration(width)}. "
        f"Overall {'; '.join(totals)}."
    )


def _time_label(moment: dt.datetime, span: dt.timedelta) -> str:
    if span >= dt.timedelta(days=1):
        return moment.strftime("%d %b %H:%M")
    if span < dt.timedelta(minutes=10):
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%H:%M")


def _duration(width: dt.timedelta) -> str:
    minutes = int(width.total_seconds() // 60)
    if minutes % 1440 == 0:
        days = minutes // 1440
        return f"{days} day{'s' if days != 1 else ''}"
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _safe_id(value: str) -> str:
    # Ids are used unquoted in aria-labelledby; keep them to one safe token.
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-")
    return cleaned or "chart"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
