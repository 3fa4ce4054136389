"""A finished run as a text table, a JSON report and JUnit XML (for CI pipelines).

Invariants:
- The reports describe the run as stored: the same scores, errors and rationales the
  admin shows; nothing is recomputed.
- In JUnit XML a case in error is an <error>, a case that scored lower than the baseline
  is a <failure>, and the gate is one more test case that fails when the gate refuses,
  so a CI's test view shows both what regressed and whether the release may go on.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from evaluations.gate import GateResult
from evaluations.models import EvaluationRun
from evaluations.selectors import build_run_comparison, list_case_rows


def build_report(
    run: EvaluationRun, baseline: EvaluationRun | None = None, gate: GateResult | None = None
) -> dict[str, Any]:
    """The run, its baseline and the gate as plain data; one entry per case."""
    comparison = build_run_comparison(run, baseline) if baseline is not None else None
    by_key = {row["key"]: row for row in comparison["rows"]} if comparison else {}
    cases = []
    for row in list_case_rows(run):
        result, compared = row.result, by_key.get(row.case.key)
        cases.append(
            {
                "id": row.case.key,
                "scorer": row.case.scorer,
                "weight": row.case.weight,
                "tags": row.case.tags,
                "state": row.state,
                "score": result.score if result else None,
                "baseline_score": compared["baseline_score"] if compared else None,
                "delta": compared["delta"] if compared else None,
                "change": compared["change"] if compared else None,
                "error": result.error if result else "",
                "rationale": result.rationale if result else "",
                "answer": result.answer if result else "",
                "latency_ms": result.latency_ms if result else None,
                "prompt_tokens": result.prompt_tokens if result else None,
                "completion_tokens": result.completion_tokens if result else None,
            }
        )
    return {
        "agent": run.agent.slug,
        "version": run.version.version_number,
        "suite": run.suite_version.suite.slug,
        "suite_version": run.suite_version.version_number,
        "run": _run_data(run),
        "baseline_run": _run_data(baseline) if baseline is not None else None,
        "gate": _gate_data(gate) if gate is not None else None,
        "cases": cases,
    }


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_table(report: dict[str, Any]) -> str:
    """One line per case: id, score, baseline score, change, and the error if any."""
    has_baseline = report["baseline_run"] is not None
    header = ["case", "scorer", "weight", "score"] + (["baseline", "delta"] if has_baseline else [])
    rows = [header]
    for case in report["cases"]:
        line = [case["id"], case["scorer"], f"{case['weight']:g}", _score(case["score"], case)]
        if has_baseline:
            line += [_number(case["baseline_score"]), _delta(case["delta"])]
        rows.append(line)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    for case in report["cases"]:
        if case["error"]:
            lines.append(f"  {case['id']}: {case['error']}")
    return "\n".join(lines)


def render_junit(report: dict[str, Any]) -> str:
    """The report as JUnit XML: one test case per evaluation case, plus the gate."""
    name = f"{report['agent']}.{report['suite']}"
    suite = ET.Element(
        "testsuite",
        name=f"{name} v{report['suite_version']} (agent v{report['version']})",
        tests=str(len(report["cases"]) + (1 if report["gate"] else 0)),
    )
    failures = errors = 0
    for case in report["cases"]:
        element = ET.SubElement(
            suite,
            "testcase",
            classname=name,
            name=case["id"],
            time=f"{(case['latency_ms'] or 0) / 1000:.3f}",
        )
        if case["error"] or case["state"] == "pending":
            errors += 1
            ET.SubElement(element, "error", message=case["error"] or "not run").text = case[
                "answer"
            ]
        elif case["change"] == "regression":
            failures += 1
            ET.SubElement(
                element,
                "failure",
                message=(
                    f"score {case['score']:.3f} < baseline {case['baseline_score']:.3f}: "
                    f"{case['rationale']}"
                ),
            ).text = case["answer"]
        ET.SubElement(
            element, "system-out"
        ).text = f"score {_number(case['score'])}: {case['rationale']}\n\n{case['answer']}"
    gate = report["gate"]
    if gate:
        element = ET.SubElement(suite, "testcase", classname=name, name="evaluation gate")
        if not gate["allowed"]:
            failures += 1
            ET.SubElement(element, "failure", message=gate["title"]).text = gate["explanation"]
        ET.SubElement(element, "system-out").text = gate["explanation"]
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _run_data(run: EvaluationRun) -> dict[str, Any]:
    return {
        "id": str(run.pk),
        "version": run.version.version_number,
        "status": run.status,
        "score": run.score,
        "error_count": run.error_count,
        "cases_total": run.cases_total,
        "answer_source": run.answer_source,
        "judge_model": run.judge_model,
        "base_url": run.base_url,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "judge_prompt_tokens": run.judge_prompt_tokens,
        "judge_completion_tokens": run.judge_completion_tokens,
        "failure": run.failure,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def _gate_data(gate: GateResult) -> dict[str, Any]:
    return {
        "allowed": gate.allowed,
        "required": gate.required,
        "status": str(gate.status),
        "title": gate.title,
        "explanation": gate.explanation,
        "tolerance": gate.tolerance,
    }


def _score(value: float | None, case: dict[str, Any]) -> str:
    if case["state"] == "pending":
        return "-"
    return "error" if value is None else f"{value:.3f}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _delta(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
