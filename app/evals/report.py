"""Eval results out: thresholds (the gate), JSON, Markdown, JUnit XML and a comparison with a baseline."""

from __future__ import annotations

import json
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.errors import InputError
from app.evals.suites import SuiteResult


@dataclass(frozen=True)
class Breach:
    suite: str
    metric: str
    value: float | None
    threshold: float

    def __str__(self) -> str:
        got = "missing" if self.value is None else f"{self.value:.3f}"
        return f"{self.suite}.{self.metric} = {got}, below its threshold {self.threshold:.3f}"


def load_thresholds(path: Path) -> dict[str, dict[str, float]]:
    """``[suite]`` tables of ``metric = minimum``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such thresholds file") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: not valid TOML: {error}") from None
    thresholds: dict[str, dict[str, float]] = {}
    for suite, table in raw.items():
        if not isinstance(table, dict) or not all(isinstance(v, int | float) for v in table.values()):
            raise InputError(f"{path}: [{suite}] must hold metric = number lines")
        thresholds[suite] = {metric: float(value) for metric, value in table.items()}
    return thresholds


def breaches(results: Sequence[SuiteResult], thresholds: dict[str, dict[str, float]]) -> list[Breach]:
    found = []
    for result in results:
        if result.skipped:
            continue
        for metric, minimum in thresholds.get(result.name, {}).items():
            value = result.metrics.get(metric)
            if value is None or value < minimum:
                found.append(Breach(result.name, metric, value, minimum))
    return found


def to_json(results: Sequence[SuiteResult], found: Sequence[Breach]) -> dict[str, Any]:
    return {
        "suites": [asdict(r) for r in results],
        "breaches": [asdict(b) for b in found],
        "passed": not found,
    }


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def to_markdown(
    results: Sequence[SuiteResult],
    thresholds: dict[str, dict[str, float]],
    found: Sequence[Breach],
    max_failures: int = 50,
) -> str:
    lines = ["# newsdesk evals", ""]
    gate = {(b.suite, b.metric) for b in found}
    lines += ["| suite | metric | value | threshold |", "|---|---|---|---|"]
    for result in results:
        if result.skipped:
            lines.append(f"| {result.name} | skipped | {result.skipped} | |")
            continue
        for metric, value in result.metrics.items():
            flag = " **below**" if (result.name, metric) in gate else ""
            minimum = thresholds.get(result.name, {}).get(metric)
            shown = "" if minimum is None else _fmt(minimum)
            lines.append(f"| {result.name} | {metric} | {_fmt(value)}{flag} | {shown} |")
    for result in results:
        if result.by_type:
            lines += ["", f"## {result.name}: by type", "", "| type | cases | pass rate |", "|---|---|---|"]
            lines += [f"| {k} | {int(v['cases'])} | {v['pass_rate']:.3f} |" for k, v in result.by_type.items()]
        for note in result.notes:
            lines += ["", f"_{note}_"]
        failures = [c for c in result.cases if not c.passed]
        if failures:
            lines += ["", f"## {result.name}: {len(failures)} failed case(s)"]
            for case in failures[:max_failures]:
                lines += [
                    "",
                    f"### {case.id} ({case.type}): {case.reason}",
                    f"- question: {case.question}",
                    f"- expected: {case.expected}",
                    f"- got: {case.got.strip()[:600]}",
                ]
                lines += [f"  - {c[:300]}" for c in case.citations]
            if len(failures) > max_failures:
                lines.append(f"\n... and {len(failures) - max_failures} more (see the JSON report)")
    if found:
        lines += ["", "## Below threshold", ""] + [f"- {b}" for b in found]
    return "\n".join(lines) + "\n"


def to_junit(results: Sequence[SuiteResult], found: Sequence[Breach]) -> str:
    root = ET.Element("testsuites", name="newsdesk evals")
    for result in results:
        suite = ET.SubElement(root, "testsuite", name=result.name, tests=str(len(result.cases)))
        if result.skipped:
            case = ET.SubElement(suite, "testcase", classname=result.name, name="suite")
            ET.SubElement(case, "skipped", message=result.skipped)
            continue
        failures = 0
        for item in result.cases:
            case = ET.SubElement(suite, "testcase", classname=f"{result.name}.{item.type}", name=item.id)
            case.set("time", f"{item.seconds:.3f}")
            if not item.passed:
                failures += 1
                failure = ET.SubElement(case, "failure", message=item.reason or "failed")
                failure.text = f"question: {item.question}\nexpected: {item.expected}\ngot: {item.got}"
        for breach in (b for b in found if b.suite == result.name):
            failures += 1
            case = ET.SubElement(suite, "testcase", classname=f"{result.name}.thresholds", name=breach.metric)
            ET.SubElement(case, "failure", message=str(breach))
        suite.set("failures", str(failures))
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class Change:
    suite: str
    case: str
    now_passes: bool
    question: str

    def __str__(self) -> str:
        verb = "now passes" if self.now_passes else "now FAILS"
        return f"{self.suite}/{self.case} {verb}: {self.question[:100]}"


def compare(results: Sequence[SuiteResult], baseline_path: Path) -> tuple[list[Change], list[str]]:
    """Per-case regressions and improvements, and metric deltas, against an earlier JSON report."""
    try:
        baseline = json.loads(baseline_path.read_text(encoding="utf-8"))
        before = {(s["name"], c["id"]): bool(c["passed"]) for s in baseline["suites"] for c in s["cases"]}
        before_metrics = {(s["name"], k): float(v) for s in baseline["suites"] for k, v in s["metrics"].items()}
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(f"{baseline_path}: not a newsdesk evals JSON report ({error})") from None
    changes = []
    deltas = []
    for result in results:
        for case in result.cases:
            was = before.get((result.name, case.id))
            if was is not None and was != case.passed:
                changes.append(Change(result.name, case.id, case.passed, case.question))
        for metric, value in result.metrics.items():
            old = before_metrics.get((result.name, metric))
            if old is not None and abs(value - old) > 1e-9:
                deltas.append(f"{result.name}.{metric}: {_fmt(old)} -> {_fmt(value)} ({value - old:+.3f})")
    return changes, deltas
