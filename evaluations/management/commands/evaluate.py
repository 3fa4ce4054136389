"""`manage.py evaluate AGENT VERSION_NUMBER`: run a version against a suite, for people and CI.

Without --wait the run is queued for the worker (`manage.py db_worker`) and the command
returns at once. With --wait it runs here, prints a table and, with --baseline ENV,
compares with the version stable in ENV by the gate's rule (evaluations.gate.
compare_with_stable: same suite version, same judge, ENV's tolerance), running the stable
version on that suite version first if it has no comparable run; this happens whether or
not ENV's policy requires evaluation. Exit codes: 0 when the run completed and (with
--baseline) does not regress; 1 otherwise, with the reason on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from agentconfig.core.errors import NotFound, ServiceError
from agentconfig.models import Agent
from deployments.models import Environment
from deployments.selectors import get_environment
from evaluations.gate import (
    DEFAULT_TOLERANCE,
    GateResult,
    GateStatus,
    compare_versions,
    compare_with_stable,
    resolve_suite,
)
from evaluations.models import EvaluationRun, EvaluationSuite, RunStatus, SuiteVersion
from evaluations.reports import build_report, render_json, render_junit, render_table
from evaluations.runner import execute_run
from evaluations.selectors import get_latest_suite_version, get_policy, get_suite
from evaluations.services.suites import start_run
from versions.file_format import AgentFileError, kind, load_yaml
from versions.models import AgentVersion
from versions.selectors import get_agent

ACTOR_NAME = "evaluate"


class Command(ServiceCommand):
    help = (
        "Run an agent version against an evaluation suite through the configured "
        "OpenAI-compatible endpoint (EVAL_API_BASE_URL, EVAL_API_KEY). Without --wait the run "
        "is queued for `manage.py db_worker`; with --wait it runs here, prints a table, and "
        "exits 1 if the run fails or, with --baseline ENV, if the evaluation gate of ENV "
        "would refuse the version."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", help="the agent's slug, e.g. support-bot")
        parser.add_argument("version_number", type=int, help="the version to run, e.g. 7")
        parser.add_argument(
            "--suite",
            help="the suite's slug (default: the suite of --baseline's policy, or the agent's "
            "only suite)",
        )
        parser.add_argument(
            "--suite-version", type=int, help="the suite version to use (default: the latest)"
        )
        parser.add_argument(
            "--baseline",
            metavar="ENV",
            help="compare with the version stable in ENV by the gate's rule, using ENV's "
            "evaluation settings and tolerance (needs --wait); exit 1 on a regression",
        )
        parser.add_argument(
            "--against",
            metavar="VERSION_NUMBER",
            type=int,
            help="compare with this version of the agent instead of an environment's stable "
            "one, by the same rule (needs --wait); e.g. the version on your main branch",
        )
        parser.add_argument(
            "--tolerance",
            type=float,
            help="with --baseline or --against: how far below the baseline's score is still "
            "fine (default: ENV's evaluation policy, else 0.02)",
        )
        parser.add_argument(
            "--wait", action="store_true", help="run here and wait; exit 1 on failure"
        )
        parser.add_argument(
            "--answers",
            metavar="FILE",
            help="score recorded answers (a YAML or JSON mapping of case id to answer text) "
            "instead of asking the model; deterministic scorers then need no endpoint",
        )
        parser.add_argument("--json", metavar="PATH", help="write a JSON report (needs --wait)")
        parser.add_argument(
            "--junit-xml", metavar="PATH", help="write a JUnit XML report (needs --wait)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        wait = options["wait"]
        if options["tolerance"] is not None and not 0 <= options["tolerance"] <= 1:
            raise CommandError("--tolerance must be between 0 and 1.")
        if options["tolerance"] is not None and not (options["baseline"] or options["against"]):
            raise CommandError("--tolerance needs --baseline or --against.")
        if options["baseline"] and options["against"]:
            raise CommandError("give --baseline or --against, not both.")
        for flag in ("baseline", "against", "json", "junit_xml"):
            if options[flag] and not wait:
                raise CommandError(f"--{flag.replace('_', '-')} needs --wait.")
        if options["answers"] and (options["baseline"] or options["against"]):
            raise CommandError(
                "--answers cannot be compared with a baseline: runs of recorded answers do not "
                "count for the gate (anyone could have written them)."
            )
        actor = Actor.cli(ACTOR_NAME)
        agent = get_agent(options["agent"])
        version = _version(agent, options["version_number"])
        environment = get_environment(options["baseline"]) if options["baseline"] else None
        against = _version(agent, options["against"]) if options["against"] else None
        suite_version = _suite_version(
            agent, options["suite"], options["suite_version"], environment
        )
        answers = _answers(options["answers"]) if options["answers"] else None

        run = start_run(
            version=version,
            suite_version=suite_version,
            actor=actor,
            environment=environment,
            recorded_answers=answers,
            enqueue=not wait,
        )
        if not wait:
            self.stdout.write(
                f"Queued run {run.pk}: {version.label} of {agent.slug} on {suite_version.label} "
                f"({run.cases_total} cases). The worker (`manage.py db_worker`) runs it; follow "
                f"it in the admin at {run.get_absolute_url()}"
            )
            return

        self.stdout.write(
            f"Running {version.label} of {agent.slug} on {suite_version.label} "
            f"({run.cases_total} cases)…"
        )
        run = execute_run(run.pk)
        baseline: EvaluationRun | None = None
        gate: GateResult | None = None
        if environment is not None and run.status == RunStatus.COMPLETED:
            compare = {
                "agent": agent,
                "environment": environment,
                "version": version,
                "tolerance": options["tolerance"],
            }
            gate = compare_with_stable(**compare)
            if gate.status == GateStatus.NO_BASELINE_RUN and gate.stable_version is not None:
                baseline = self._run_baseline(gate.stable_version, run, environment, actor)
                gate = compare_with_stable(**compare)
            baseline = gate.baseline_run or baseline
        if against is not None and run.status == RunStatus.COMPLETED:
            compare_to: dict[str, Any] = {
                "version": version,
                "baseline": against,
                "suite": suite_version.suite,
                "tolerance": (
                    options["tolerance"] if options["tolerance"] is not None else DEFAULT_TOLERANCE
                ),
            }
            gate = compare_versions(**compare_to)
            if gate.status == GateStatus.NO_BASELINE_RUN:
                baseline = self._run_baseline(against, run, None, actor)
                gate = compare_versions(**compare_to)
            baseline = gate.baseline_run or baseline

        report = build_report(run, baseline, gate)
        self.stdout.write(render_table(report))
        self.stdout.write(self._summary(run, baseline))
        if gate is not None and environment is not None:
            required = "requires" if gate.required else "does not require"
            self.stdout.write(
                f"Compared with {environment} ({environment} {required} evaluation for "
                f"deploys): {gate.title}. {gate.explanation}"
            )
        elif gate is not None:
            self.stdout.write(f"Compared with {against}: {gate.title}. {gate.explanation}")
        if options["json"]:
            Path(options["json"]).write_text(render_json(report), encoding="utf-8")
        if options["junit_xml"]:
            Path(options["junit_xml"]).write_text(render_junit(report), encoding="utf-8")

        if run.status != RunStatus.COMPLETED:
            detail = f": {run.failure}" if run.failure else ""
            raise CommandError(f"the run ended as {run.get_status_display().lower()}{detail}")
        if gate is not None and not gate.allowed:
            raise CommandError(f"{gate.title}: {gate.explanation}")

    def _run_baseline(
        self,
        stable: AgentVersion,
        run: EvaluationRun,
        environment: Environment | None,
        actor: Actor,
    ) -> EvaluationRun:
        where = f"The stable {stable.label} in {environment.slug}" if environment else stable.label
        self.stdout.write(
            f"{where} has no comparable run on {run.suite_version.label}; running it first…"
        )
        baseline = start_run(
            version=stable,
            suite_version=run.suite_version,
            actor=actor,
            environment=environment,
            enqueue=False,
        )
        return execute_run(baseline.pk)

    def _summary(self, run: EvaluationRun, baseline: EvaluationRun | None) -> str:
        score = "no score" if run.score is None else f"score {run.score:.3f}"
        line = (
            f"{run.version.label}: {run.get_status_display().lower()}, {score}, "
            f"{run.error_count} case error(s), {run.total_tokens:,} tokens."
        )
        if baseline is not None and baseline.score is not None and run.score is not None:
            line += (
                f" Baseline {baseline.version.label}: {baseline.score:.3f} "
                f"(difference {run.score - baseline.score:+.3f})."
            )
        return line


def _version(agent: Agent, number: int) -> AgentVersion:
    try:
        return agent.versions.get(version_number=number)
    except AgentVersion.DoesNotExist:
        latest = agent.versions.order_by("-version_number").first()
        known = f"the latest is v{latest.version_number}" if latest else "it has no versions"
        raise NotFound(f"{agent.slug} has no v{number} ({known}).") from None


def _suite_version(
    agent: Agent, slug: str | None, number: int | None, environment: Environment | None
) -> SuiteVersion:
    suite: EvaluationSuite | str
    if slug:
        suite = get_suite(agent, slug)
    else:
        policy = get_policy(environment)
        suite = resolve_suite(agent, policy.suite_slug if policy else "")
        if isinstance(suite, str):
            raise ServiceError(f"{suite} Choose one with --suite.")
    if number is None:
        version = get_latest_suite_version(suite)
        if version is None:
            raise NotFound(f"the suite {suite} has no versions yet; import or edit its cases.")
        return version
    try:
        return suite.versions.get(version_number=number)
    except SuiteVersion.DoesNotExist:
        raise NotFound(f"the suite {suite} has no v{number}.") from None


def _answers(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CommandError(f"{path}: cannot be read: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path}: is not UTF-8 text.") from None
    try:
        data = load_yaml(text)
    except AgentFileError as exc:
        raise CommandError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"{path}: must be a mapping of case id to answer, not {kind(data)}.")
    return data
