"""Canary rollouts simulated minute by minute through the real `canary_analysis.decide`.

What it simulates: for each ramp, traffic level and canary/stable error ratio, `--runs`
independent rollouts that go through the state machine `evaluate_canary` runs every minute:

- a rollout has steps (percentages of users), each baking 30 minutes (the policy default),
  and starts at step 0 at minute 0;
- every minute m the outcomes of minute m are added to the current step's two arms and
  `decide(stable, canary, Policy(), StepState(...), detail=False)` is called with
  `baked_seconds = 60 (m + 1 - step start)` and `elapsed_seconds = 60 (m + 1)`;
- ROLLBACK and PROMOTE end the rollout; ADVANCE moves to the next step, whose arms start
  from zero at minute m + 1 (each minute counts in one step only); HOLD goes on;
- `Policy()` defaults throughout: decide itself ends an undecided canary after 24 h. A
  rollout still running after 25 h of simulated minutes is reported as "still running".

Traffic: Poisson requests per minute (20, 200, 2,000 rpm) from a population of 100,000
users of unequal activity (lognormal weights, sigma 1); each request picks a user by
weight, and users, not requests, are routed: a user is in the canary when
`bucket(f"canary:{rollout_id}", user_id) < round(percent * 100)`, with a fresh (seeded)
uuid4 rollout id per rollout. Buckets are the exact SHA-256 rule of agentconfig/bucketing.py,
computed for the users a rollout meets and checked against `bucket` itself on a sample.
Stable errors are binomial at `--base-error` (5 %), the canary's at base x ratio (1, 1.25,
1.5, 2, 3). Ramps: "single step" [50] and "default ramp" [1, 5, 25, 50].

Pure: imports deployments.canary_analysis, deployments.sequential and agentconfig.core.bucketing,
never Django (the script refuses to run if anything imported it). Needs numpy 2, which the
project's virtualenv does not ship (`.venv/bin/uv pip install --python .venv/bin/python numpy`
once, or any Python 3.11+ that has numpy). Run from the project folder:

    .venv/bin/python bench/canary_simulation.py                  # 200 runs per config
    .venv/bin/python bench/canary_simulation.py --runs 20        # quick check
    .venv/bin/python bench/canary_simulation.py --rpm 200 --ratios 1 2 --ramps default

Each rollout is seeded from (--seed, ramp, rpm, ratio, run index), so a run is reproducible
whatever the number of processes or the subset of configs chosen.

Columns of the table (one row per ramp, rpm and ratio; percentages of the runs):
- promoted / rolled back: ended by the analysis on evidence (the four columns are disjoint);
- ended at max duration: the share that decide ended because the maximum duration was
  reached (`Decision.ended_by_deadline`), with the action taken (the policy's default is
  a rollback);
- still running: not ended at the 25 h cap (must stay 0);
- reached last step: the share whose last step (50 %) started;
- SRM seen: the share in which decide reported a sample-ratio mismatch at least once;
- median h to decision: median time from the start to the ending verdict, in hours, over
  the rollouts that ended;
- promoted <= 4 h into last step (ratio 1 only): promoted at most 4 hours after the last
  step started.

Then the checks (each a pass or fail, with the worst config and a one-sided 95 % Wilson
upper bound, which says how much 200 runs can show), the consistency of decide's verdicts
with its own inputs (every ending verdict and a HOLD every `--detail-every` minutes,
recomputed with detail=True), the time spent in decide, the wall time and the config.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing
import platform
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from agentconfig.core.bucketing import BUCKETS, bucket, percent_to_basis_points
from deployments.canary_analysis import (
    ArmCounts,
    Decision,
    Policy,
    StepState,
    Verdict,
    decide,
)

if any(name == "django" or name.startswith("django.") for name in sys.modules):
    raise SystemExit("canary_simulation must not import Django; something above pulled it in.")

RAMPS: dict[str, tuple[float, ...]] = {
    "single step": (50.0,),
    "default ramp": (1.0, 5.0, 25.0, 50.0),
}
RAMP_KEYS = {"single": "single step", "default": "default ramp"}
RAMP_CODES = {"single step": 1, "default ramp": 2}  # part of each rollout's seed
BAKE_SECONDS = 1800.0
CAP_MINUTES = 25 * 60
LATER_CHUNK_MINUTES = 120  # traffic is drawn in chunks; the first chunk of a step is its bake
SAMPLE_CHECKS = 4  # users per rollout whose bucket is checked against bucketing.bucket
TOLERANCE = 1e-6  # relative slack when comparing bisected bounds with the bars they passed


@dataclass(frozen=True)
class Config:
    ramp: str
    rpm: int
    ratio: float

    @property
    def steps(self) -> tuple[float, ...]:
        return RAMPS[self.ramp]


@dataclass
class Result:
    config: Config
    outcome: str  # "promoted", "rolled back", "still running"
    by_deadline: bool
    end_minutes: int | None  # elapsed minutes at the ending verdict
    last_step_start: int | None  # minute the last step started, if it was reached
    srm_seen: bool
    calls: int
    decide_seconds: float
    detail_checks: int
    anomalies: list[tuple[str, str]] = field(default_factory=list)  # (kind, example)


# --- the population (built once per worker) -----------------------------------------------

_POPULATION: dict[str, Any] = {}


def _init_worker(seed: int, users: int, sigma: float, base_error: float, detail_every: int) -> None:
    rng = np.random.default_rng([seed, 1])
    weights = rng.lognormal(0.0, sigma, users)
    cumulative = np.cumsum(weights)
    _POPULATION.update(
        seed=seed,
        users=users,
        cumulative=cumulative / cumulative[-1],
        subjects=[f"user-{i}".encode() for i in range(users)],
        base_error=base_error,
        detail_every=detail_every,
        policy=Policy(),
    )


class _Buckets:
    """Each user's bucket for one rollout, computed the first time the user is met."""

    def __init__(self, rollout_id: uuid.UUID) -> None:
        self.namespace = f"canary:{rollout_id}"
        self.prefix = f"{self.namespace}:".encode()
        self.values = np.full(_POPULATION["users"], -1, dtype=np.int32)
        self.checked = 0

    def of(self, users: np.ndarray) -> np.ndarray:
        values = self.values[users]
        new = np.unique(users[values < 0])
        if new.size:
            subjects, prefix, sha = _POPULATION["subjects"], self.prefix, hashlib.sha256
            # bucketing.bucket, inlined: uint64_be(sha256(namespace:subject)[0:8]) % BUCKETS
            digests = b"".join(sha(prefix + subjects[j]).digest()[:8] for j in new.tolist())
            self.values[new] = (np.frombuffer(digests, dtype=">u8") % BUCKETS).astype(np.int32)
            for j in new[: max(SAMPLE_CHECKS - self.checked, 0)].tolist():
                expected = bucket(self.namespace, subjects[j].decode())
                assert self.values[j] == expected, "the inlined bucket differs from bucketing"
                self.checked += 1
            values = self.values[users]
        return values


def _traffic(
    rng: np.random.Generator, buckets: _Buckets, config: Config, basis_points: int, minutes: int
) -> tuple[list[int], list[int], list[int], list[int]]:
    """Per minute: (stable n, stable errors, canary n, canary errors) for `minutes` minutes."""
    per_minute = rng.poisson(config.rpm, minutes)
    draws = rng.random(int(per_minute.sum()))
    users = np.minimum(
        np.searchsorted(_POPULATION["cumulative"], draws, side="right"), _POPULATION["users"] - 1
    )
    in_canary = buckets.of(users) < basis_points
    minute_of = np.repeat(np.arange(minutes), per_minute)
    canary_n = np.bincount(minute_of[in_canary], minlength=minutes)
    stable_n = per_minute - canary_n
    base = _POPULATION["base_error"]
    stable_errors = rng.binomial(stable_n, base)
    canary_errors = rng.binomial(canary_n, min(base * config.ratio, 1.0))
    return stable_n.tolist(), stable_errors.tolist(), canary_n.tolist(), canary_errors.tolist()


# --- one rollout ---------------------------------------------------------------------------


def simulate(task: tuple[Config, int]) -> Result:
    """One rollout through decide, minute by minute, until it ends or the 25 h cap."""
    config, run = task
    policy: Policy = _POPULATION["policy"]
    detail_every: int = _POPULATION["detail_every"]
    ratio_code = round(config.ratio * 1000)
    rng = np.random.default_rng(
        [_POPULATION["seed"], 2, RAMP_CODES[config.ramp], config.rpm, ratio_code, run]
    )
    rollout_id = uuid.UUID(bytes=rng.bytes(16), version=4)
    buckets = _Buckets(rollout_id)
    steps = config.steps
    count = len(steps)
    index, step_start = 0, 0
    stable_n = stable_e = canary_n = canary_e = 0
    chunk: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])
    position = 0
    srm_seen = False
    calls, spent, detail_checks = 0, 0.0, 0
    anomalies: list[tuple[str, str]] = []
    last_step_start = 0 if count == 1 else None
    # What the result says if the 25 h cap comes before an ending verdict.
    outcome, by_deadline, end_minutes = "still running", False, None

    for minute in range(CAP_MINUTES):
        if position == len(chunk[0]):
            first = minute == step_start
            size = max(round(BAKE_SECONDS / 60), 1) if first else LATER_CHUNK_MINUTES
            basis_points = percent_to_basis_points(steps[index])
            chunk, position = _traffic(rng, buckets, config, basis_points, size), 0
        stable_n += chunk[0][position]
        stable_e += chunk[1][position]
        canary_n += chunk[2][position]
        canary_e += chunk[3][position]
        position += 1
        stable = ArmCounts(n=stable_n, errors=stable_e)
        canary = ArmCounts(n=canary_n, errors=canary_e)
        step = StepState(
            index=index,
            count=count,
            percent=steps[index],
            baked_seconds=60.0 * (minute + 1 - step_start),
            bake_seconds=BAKE_SECONDS,
            next_percent=steps[index + 1] if index + 1 < count else 100.0,
            elapsed_seconds=60.0 * (minute + 1),
        )
        started = time.perf_counter()
        decision = decide(stable, canary, policy, step, detail=False)
        spent += time.perf_counter() - started
        calls += 1
        srm_seen = srm_seen or decision.sample_ratio_mismatch

        if decision.verdict == Verdict.HOLD:
            if detail_every and (minute + 1) % detail_every == 0:
                detailed = decide(stable, canary, policy, step, detail=True)
                detail_checks += 1
                if detailed.verdict != decision.verdict:
                    anomalies.append(
                        ("detail=True gives another verdict", f"{detailed.verdict}: {config}")
                    )
                anomalies.extend(_contradictions(detailed, policy, config))
            continue
        anomalies.extend(_contradictions(decision, policy, config))
        if decision.verdict == Verdict.ADVANCE:
            index, step_start = index + 1, minute + 1
            stable_n = stable_e = canary_n = canary_e = 0
            position = len(chunk[0])  # the new step draws its own traffic from minute + 1
            if index == count - 1:
                last_step_start = step_start
            continue
        outcome = "promoted" if decision.verdict == Verdict.PROMOTE else "rolled back"
        by_deadline, end_minutes = decision.ended_by_deadline, minute + 1
        break
    return Result(
        config,
        outcome,
        by_deadline,
        end_minutes,
        last_step_start,
        srm_seen,
        calls,
        spent,
        detail_checks,
        anomalies,
    )


def _contradictions(decision: Decision, policy: Policy, config: Config) -> list[tuple[str, str]]:
    """Verdicts that disagree with the bounds decide itself reports (errors only: no latency
    or score is simulated, so the error-rate bounds alone must explain each verdict)."""
    inputs = decision.inputs
    if not inputs:
        return [("a non-hold decision without inputs", f"{decision.verdict}: {config}")]
    errors, bar, step = inputs["errors"], inputs["bar"], inputs["step"]
    lower = errors["ratio_lower"] or 0.0
    upper = math.inf if errors["ratio_upper"] is None else errors["ratio_upper"]
    increase = math.inf if errors["increase_upper"] is None else errors["increase_upper"]
    mismatch = inputs["sample_ratio"]["mismatch"]
    last = step["index"] >= step["count"] - 1
    baked = step["baked_seconds"] >= step["bake_seconds"]
    effective, minimum = errors["effective_errors"] or 0.0, errors["minimum_effective_errors"]
    ratio_ok = upper <= bar["ratio"] * (1 + TOLERANCE)
    increase_ok = bar["increase"] > 0 and increase <= bar["increase"] * (1 + TOLERANCE)
    shown_pass = increase_ok or (ratio_ok and (not last or effective >= minimum))
    shown_harm = lower >= policy.rollback_ratio * (1 + TOLERANCE)
    example = f"{config}: {decision.explanation or decision.verdict}"
    found = []
    if decision.ended_by_deadline:
        if inputs["remaining_seconds"] > 0:
            found.append(("ended by the deadline before it", example))
    elif decision.verdict == Verdict.ROLLBACK:
        if lower < policy.rollback_ratio * (1 - TOLERANCE):
            found.append(("rolled back without a lower bound above the rollback ratio", example))
    elif decision.verdict in (Verdict.ADVANCE, Verdict.PROMOTE):
        if not shown_pass:
            found.append(("passed without an upper bound within the bar", example))
        if not baked:
            found.append(("passed before the bake time", example))
        if mismatch:
            found.append(("passed with a sample-ratio mismatch", example))
        if (decision.verdict == Verdict.PROMOTE) != last:
            found.append(("promoted before the last step, or advanced past it", example))
    elif decision.verdict == Verdict.HOLD:
        if shown_harm:
            found.append(("held although the lower bound shows harm", example))
        strictly_pass = (bar["increase"] > 0 and increase < bar["increase"] * (1 - TOLERANCE)) or (
            upper < bar["ratio"] * (1 - TOLERANCE) and (not last or effective >= minimum)
        )
        if strictly_pass and baked and not mismatch and inputs["remaining_seconds"] > 0:
            found.append(("held although the step passes", example))
    return found


# --- report --------------------------------------------------------------------------------


@dataclass
class Row:
    config: Config
    results: list[Result]

    @property
    def runs(self) -> int:
        return len(self.results)

    def count(self, outcome: str, *, deadline: bool | None = None) -> int:
        return sum(
            r.outcome == outcome and (deadline is None or r.by_deadline == deadline)
            for r in self.results
        )

    def share(self, outcome: str, *, deadline: bool | None = None) -> float:
        return self.count(outcome, deadline=deadline) / self.runs

    @property
    def deadline(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results if r.by_deadline)

    @property
    def median_hours(self) -> float | None:
        ended = [r.end_minutes / 60 for r in self.results if r.end_minutes is not None]
        return statistics.median(ended) if ended else None

    @property
    def promoted_within_4h(self) -> int:
        return sum(
            r.outcome == "promoted"
            and r.last_step_start is not None
            and r.end_minutes is not None
            and r.end_minutes - r.last_step_start <= 240
            for r in self.results
        )

    @property
    def reached_last(self) -> float:
        return sum(r.last_step_start is not None for r in self.results) / self.runs

    @property
    def srm_seen(self) -> float:
        return sum(r.srm_seen for r in self.results) / self.runs


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _ratio_text(ratio: float) -> str:
    return f"{ratio:g}x"


def wilson_upper(successes: int, n: int, z: float = 1.6449) -> float:
    """One-sided 95 % Wilson upper bound on a proportion."""
    if n == 0:
        return 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min((centre + spread) / (1 + z * z / n), 1.0)


def wilson_lower(successes: int, n: int, z: float = 1.6449) -> float:
    return 1 - wilson_upper(n - successes, n, z)


def table(rows: list[Row]) -> str:
    head = (
        "| ramp | rpm | canary/stable | runs | promoted | rolled back | still running "
        "| ended at max duration | reached last step | SRM seen | median h to decision "
        "| promoted ≤ 4 h into last step |"
    )
    lines = [head, "|" + "---|" * 12]
    for row in rows:
        c = row.config
        deadline = row.deadline
        total = sum(deadline.values())
        if not total:
            ended = "0 %"
        elif len(deadline) == 1:
            action = "rollback" if "rolled back" in deadline else "promote"
            ended = f"{_pct(total / row.runs)} ({action})"
        else:
            ended = (
                f"{_pct(total / row.runs)} ({_pct(deadline['rolled back'] / row.runs)} rollback, "
                f"{_pct(deadline['promoted'] / row.runs)} promote)"
            )
        median = row.median_hours
        within = _pct(row.promoted_within_4h / row.runs) if c.ratio == 1 else "-"
        lines.append(
            f"| {c.ramp} | {c.rpm:,} | {_ratio_text(c.ratio)} | {row.runs} "
            f"| {_pct(row.share('promoted', deadline=False))} "
            f"| {_pct(row.share('rolled back', deadline=False))} "
            f"| {_pct(row.share('still running'))} | {ended} | {_pct(row.reached_last)} "
            f"| {_pct(row.srm_seen)} "
            f"| {'-' if median is None else f'{median:.2f}'} | {within} |"
        )
    return "\n".join(lines)


def _worst(
    rows: list[Row], ratio: float, numerator: Any, *, highest: bool = True
) -> tuple[Row, int] | None:
    chosen = [(row, numerator(row)) for row in rows if row.config.ratio == ratio]
    if not chosen:
        return None
    return (max if highest else min)(chosen, key=lambda item: item[1] / item[0].runs)


def checks(rows: list[Row]) -> list[tuple[bool | None, str]]:
    """(passed, sentence) for each promise; None when the configs run cannot tell."""
    out: list[tuple[bool | None, str]] = []

    def where(row: Row) -> str:
        return f"{row.config.ramp}, {row.config.rpm:,} rpm"

    for ratio, limit in ((2.0, 0.01), (1.5, 0.05)):
        claim = (
            f"a {_ratio_text(ratio)} worse canary is promoted in at most {_pct(limit)} "
            "(the deadline's promotions included)"
        )
        worst = _worst(rows, ratio, lambda row: row.count("promoted"))
        if worst is None:
            out.append((None, f"{claim}: not run"))
            continue
        row, k = worst
        out.append(
            (
                k / row.runs <= limit,
                f"{claim} (every ramp and traffic level): worst {_pct(k / row.runs)} "
                f"({k}/{row.runs}, {where(row)}; 95 % upper bound "
                f"{_pct(wilson_upper(k, row.runs))})",
            )
        )

    claim = "an equal canary is rolled back (on evidence) in at most 2.0 %"
    worst = _worst(rows, 1.0, lambda row: row.count("rolled back", deadline=False))
    if worst is None:
        out.append((None, f"{claim}: not run"))
    else:
        row, k = worst
        ended = _worst(rows, 1.0, lambda row: row.count("rolled back", deadline=True))
        assert ended is not None
        d_row, d_k = ended
        out.append(
            (
                k / row.runs <= 0.02,
                f"{claim}: worst {_pct(k / row.runs)} ({k}/{row.runs}, {where(row)}; 95 % "
                f"upper bound {_pct(wilson_upper(k, row.runs))}); undecided and ended by the "
                f"maximum duration with the default rollback, worst {_pct(d_k / d_row.runs)} "
                f"({d_k}/{d_row.runs}, {where(d_row)})",
            )
        )
    claim = "an equal canary at 200 rpm or more is promoted within 4 h of the last step in ≥ 90 %"
    busy = [row for row in rows if row.config.rpm >= 200]
    worst = _worst(busy, 1.0, lambda row: row.promoted_within_4h, highest=False)
    if worst is None:
        out.append((None, f"{claim}: not run"))
    else:
        row, k = worst
        out.append(
            (
                k / row.runs >= 0.90,
                f"{claim}: worst {_pct(k / row.runs)} ({k}/{row.runs}, {where(row)}; 95 % "
                f"lower bound {_pct(wilson_lower(k, row.runs))})",
            )
        )

    results = [r for row in rows for r in row.results]
    running = sum(r.outcome == "still running" for r in results)
    latest = max((r.end_minutes for r in results if r.end_minutes is not None), default=0)
    maximum = Policy().max_duration_seconds
    limit_minutes = maximum / 60 + 1
    out.append(
        (
            running == 0 and latest <= limit_minutes,
            f"no canary outlives its maximum duration ({maximum / 3600:g} h): "
            f"{running} still running at the {CAP_MINUTES // 60} h cap; latest end "
            f"{latest // 60} h {latest % 60:02d} min (limit 24 h 01 min)",
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="rollouts per config (200)")
    parser.add_argument("--seed", type=int, default=13, help="base seed (13)")
    parser.add_argument("--base-error", type=float, default=0.05, help="stable error rate (0.05)")
    parser.add_argument("--rpm", type=int, nargs="+", default=[20, 200, 2000])
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.0, 3.0])
    parser.add_argument(
        "--ramps", nargs="+", choices=sorted(RAMP_KEYS), default=["single", "default"]
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sigma", type=float, default=1.0, help="lognormal activity sigma (1)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--detail-every",
        type=int,
        default=180,
        help="recheck a HOLD with detail=True every N minutes of a rollout (0: never)",
    )
    args = parser.parse_args()

    configs = [
        Config(RAMP_KEYS[ramp], rpm, ratio)
        for ramp in args.ramps
        for rpm in args.rpm
        for ratio in args.ratios
    ]
    tasks = [(config, run) for config in configs for run in range(args.runs)]
    init = (args.seed, args.users, args.sigma, args.base_error, args.detail_every)
    started = time.perf_counter()
    by_config: dict[Config, list[Result]] = defaultdict(list)
    with multiprocessing.Pool(args.processes, initializer=_init_worker, initargs=init) as pool:
        progress = pool.imap_unordered(simulate, tasks, chunksize=4)
        for done, result in enumerate(progress, start=1):
            by_config[result.config].append(result)
            if done % max(len(tasks) // 10, 1) == 0:
                elapsed = time.perf_counter() - started
                print(f"  {done}/{len(tasks)} rollouts, {elapsed:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - started
    rows = [Row(config, by_config[config]) for config in configs]
    results = [r for row in rows for r in row.results]

    policy = Policy()
    print(
        f"## Canary simulation: base error {_pct(args.base_error)}, {args.runs} runs per config, "
        f"seed {args.seed}\n"
    )
    print(table(rows))
    print("\n### Checks\n")
    for passed, sentence in checks(rows):
        label = "n/a" if passed is None else ("PASS" if passed else "FAIL")
        print(f"- **{label}**: {sentence}")

    print("\n### decide's verdicts against its own inputs\n")
    detail_checks = sum(r.detail_checks for r in results)
    kinds = Counter(kind for r in results for kind, _ in r.anomalies)
    print(
        f"Checked every ADVANCE, PROMOTE and ROLLBACK, and {detail_checks:,} HOLDs recomputed "
        "with detail=True."
    )
    if not kinds:
        print("No verdict contradicted the bounds decide reports.")
    for kind, number in kinds.most_common():
        example = next(text for r in results for k, text in r.anomalies if k == kind)
        print(f"- {kind}: {number:,} times; e.g. {example}")

    calls = sum(r.calls for r in results)
    spent = sum(r.decide_seconds for r in results)
    print("\n### Time\n")
    print(f"- wall time {wall:.1f} s with {args.processes} processes for {len(results):,} rollouts")
    print(
        f"- decide (detail=False): {calls:,} calls, {spent / max(calls, 1) * 1e6:.1f} µs per call "
        f"on average, {spent:.1f} s of CPU in all"
    )
    print("\n### Config\n")
    print(
        f"- ramps: {', '.join(f'{RAMP_KEYS[r]} {list(RAMPS[RAMP_KEYS[r]])}' for r in args.ramps)}"
        f"; bake {BAKE_SECONDS / 60:g} min per step; cap {CAP_MINUTES // 60} h"
    )
    print(
        f"- traffic: Poisson {', '.join(f'{r:,}' for r in args.rpm)} requests per minute; "
        f"{args.users:,} users, lognormal activity sigma {args.sigma:g}; routing by "
        "agentconfig.core.bucketing.bucket on canary:<uuid4>"
    )
    print(
        f"- errors: stable {_pct(args.base_error)}, canary base x "
        f"{', '.join(_ratio_text(r) for r in args.ratios)}; no latency or score reported"
    )
    print(f"- policy: {policy}")
    print(f"- seed {args.seed}; HOLD rechecked with detail=True every {args.detail_every} min")
    root = Path(__file__).resolve().parent.parent
    sources = ("deployments/canary_analysis.py", "deployments/sequential.py")
    print(
        "- decide's sources (sha256, first 12): "
        + ", ".join(
            f"{name} {hashlib.sha256((root / name).read_bytes()).hexdigest()[:12]}"
            for name in sources
        )
    )
    print(
        f"- Python {platform.python_version()}, numpy {np.__version__}, "
        f"{multiprocessing.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
