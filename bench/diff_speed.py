"""How long a diff of two system prompts takes: versions.diff alone, and rendered as HTML.

Run from the project folder with the project's virtualenv:

    .venv/bin/python bench/diff_speed.py            # 5k, 20k and 50k characters
    .venv/bin/python bench/diff_speed.py --sizes 200000 --repeat 3

For each size it builds prose-like prompts (paragraphs of wrapped lines) and times
- similar:   a copy with scattered edits (a word in about one line in twenty, one paragraph
             removed, one added): the everyday case;
- unrelated: two prompts with no sentence in common (different vocabulary ordering);
- shuffled:  the same lines in a random order: the worst case for a line diff, shown to
             make the bound visible (the line and paragraph passes share diff-match-patch's
             1 s Diff_Timeout, so it cannot take much longer than that).
"diff" is versions.diff.diff_configs; "render" is that plus rendering
templates/admin/agentconfig/includes/version_diff.html, what a compare or confirmation page
pays. The median of --repeat runs is printed. No database is used (the versions are
unsaved model instances) and nothing is written.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentconfig.settings.test")

import django

django.setup()

from django.template.loader import render_to_string  # noqa: E402

from agentconfig.models import Agent  # noqa: E402

# The demo agent's settings: only the prompts differ between the versions compared.
from agentconfig.site.management.commands.load_demo import BASE  # noqa: E402
from deployments.diff_context import build_diff_context  # noqa: E402
from versions.diff import diff_configs  # noqa: E402
from versions.models import AgentVersion  # noqa: E402

WORDS = [
    "the",
    "customer",
    "agent",
    "answer",
    "question",
    "invoice",
    "refund",
    "payment",
    "account",
    "order",
    "support",
    "always",
    "never",
    "only",
    "when",
    "if",
    "you",
    "your",
    "please",
    "policy",
    "human",
    "colleague",
    "escalate",
    "data",
    "share",
    "check",
    "tool",
    "before",
    "after",
    "look",
    "up",
    "explain",
    "short",
    "clear",
    "polite",
    "language",
    "name",
    "greet",
    "thank",
    "apologise",
    "delay",
    "shipping",
    "return",
    "product",
    "warranty",
    "billing",
    "amount",
    "card",
    "bank",
    "transfer",
    "email",
    "phone",
    "address",
    "privacy",
    "security",
    "password",
    "reset",
    "login",
    "error",
    "message",
    "ticket",
    "priority",
    "urgent",
    "normal",
    "low",
    "team",
    "manager",
    "hours",
    "weekend",
    "holiday",
    "country",
    "tax",
    "receipt",
    "copy",
    "send",
    "resend",
    "confirm",
    "cancel",
    "change",
    "update",
    "subscription",
    "plan",
    "monthly",
    "yearly",
    "discount",
    "code",
    "coupon",
    "price",
    "currency",
    "euro",
    "dollar",
    "limit",
]


def prose(size: int, seed: int) -> str:
    """About `size` characters of paragraphs (3-7 lines of up to 90 characters each)."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < size:
        lines = []
        for _ in range(rng.randint(3, 7)):
            line: list[str] = []
            while len(" ".join(line)) < rng.randint(50, 90):
                line.append(rng.choice(WORDS))
            lines.append(" ".join(line).capitalize() + ".")
        paragraph = "\n".join(lines)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return ("\n\n".join(paragraphs) + "\n")[:size]


def similar(text: str, seed: int) -> str:
    rng = random.Random(seed)
    paragraphs = text.split("\n\n")
    paragraphs.pop(len(paragraphs) // 3)
    paragraphs.insert(2 * len(paragraphs) // 3, prose(400, seed + 1).strip())
    lines = "\n\n".join(paragraphs).split("\n")
    for index in range(len(lines)):
        words = lines[index].split(" ")
        if len(words) > 3 and rng.random() < 0.05:
            words[rng.randrange(len(words))] = rng.choice(WORDS).upper()
            lines[index] = " ".join(words)
    return "\n".join(lines)


def shuffled(text: str, seed: int) -> str:
    lines = text.split("\n")
    random.Random(seed).shuffle(lines)
    return "\n".join(lines)


def median_ms(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def version(agent: Agent, number: int, prompt: str) -> AgentVersion:
    return AgentVersion(
        agent=agent,
        version_number=number,
        change_description="bench",
        created_by_label="bench",
        **{**BASE, "system_prompt": prompt},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000, 50_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    agent = Agent(pk=1, slug="bench-agent", name="Bench agent")
    print(f"{'chars':>7}  {'case':<9}  {'diff ms':>8}  {'render ms':>9}  {'rows':>5}  summary")
    for size in args.sizes:
        old = prose(size, seed=1)
        cases = {
            "similar": similar(old, seed=2),
            "unrelated": prose(size, seed=3),
            "shuffled": shuffled(old, seed=4),
        }
        for case, new in cases.items():
            old_version, new_version = version(agent, 1, old), version(agent, 2, new)
            diff_time = median_ms(
                lambda a=old_version, b=new_version: diff_configs(a.config, b.config),
                args.repeat,
            )
            render_time = median_ms(
                lambda a=old_version, b=new_version: render_to_string(
                    "admin/agentconfig/includes/version_diff.html", build_diff_context(a, b)
                ),
                args.repeat,
            )
            diff = diff_configs(old_version.config, new_version.config).prompt
            print(
                f"{size:>7}  {case:<9}  {diff_time:>8.1f}  {render_time:>9.1f}  "
                f"{len(diff.rows):>5}  {diff.summary.text}"
            )


if __name__ == "__main__":
    main()
