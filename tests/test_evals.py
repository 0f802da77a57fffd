"""The eval harness: matching, label schema, gating, reports, and the CLI end to end on tiny data."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import EVALS_DIR
from app.errors import InputError, LabelError
from app.evals.labels import load_brief_expectations, load_questions
from app.evals.match import contains_any, matched_groups, normalize
from app.evals.report import breaches, compare, load_thresholds, to_json, to_junit, to_markdown
from app.evals.suites import Case, SuiteResult


@pytest.mark.parametrize(
    ("text", "gold", "expected"),
    [
        ("troops numbered 1,300 in all", "1300", True),
        ("three civilians died", "3", True),
        ("at least four were killed", "at least 4", True),
        ("the rate is 4.50% now", "4.5%", True),
        ("a share of 92.7%", "92", False),
        ("the meeting is on Jan. 28-29", "January 28", True),
        ("Paris Saint-Germain won", "saint germain", True),
        ("the Stonemasons", "stone", False),
    ],
)
def test_matching_folds_case_punctuation_and_numbers(text: str, gold: str, expected: bool) -> None:
    assert contains_any(text, [gold]) is expected


def test_must_mention_needs_every_group() -> None:
    assert matched_groups("3 by one count, at least four by another", [["3", "three"], ["at least four"]]) == [
        True,
        True,
    ]
    assert matched_groups("three were killed", [["3"], ["at least four", "4"]]) == [True, False]
    assert normalize("Sept. 3, 2025") == "september 3 2025"


def test_committed_labels_load_and_cover_every_corpus_article() -> None:
    questions = load_questions(EVALS_DIR / "corpus" / "questions.yaml")
    expectations = load_brief_expectations(EVALS_DIR / "corpus" / "briefs.yaml")
    kinds = {q.type for q in questions}
    assert {"null", "disputed", "numeric", "who", "where"} <= kinds
    assert all(q.must_mention for q in questions if q.type == "disputed")
    assert len(expectations) == len(list((EVALS_DIR.parent / "corpus").glob("*.txt")))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- id: a\n  question: q?\n  type: numeric\n", "needs an answer"),
        ("- id: a\n  question: q?\n  answer: x\n- id: a\n  question: r?\n  answer: y\n", "duplicate id"),
        ("- id: a\n  question: q?\n  type: disputed\n  answer: x\n", "must_mention"),
        ("- id: a\n  question: q?\n  type: null\n  answer: x\n", "cannot have answers"),
        ("- id: a\n  question: q?\n  answer: {nested: 1}\n", "string or a list"),
        ("id: a\n", "YAML list"),
        ("- [unclosed\n", "not valid YAML"),
        ("- question: q?\n  answer: x\n", "missing id"),
    ],
)
def test_malformed_labels_fail_loudly(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "questions.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabelError, match=message):
        load_questions(path)


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "1", "question": "q?", "answer": "x"}\n{broken\n', encoding="utf-8")
    with pytest.raises(LabelError, match=r"q\.jsonl:2"):
        load_questions(path)


def _result(passed: bool = True, accuracy: float = 0.7) -> SuiteResult:
    case = Case("q1", "numeric", passed, "How many?", "3", "There were 3. [1]", ["[1] There were 3."])
    return SuiteResult("corpus", {"answer_accuracy": accuracy, "latency_p50_s": 0.1}, {}, [case])


def test_thresholds_gate_on_any_metric_below(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text("[corpus]\nanswer_accuracy = 0.75\nhits_at_4 = 0.5\n", encoding="utf-8")
    thresholds = load_thresholds(path)
    found = breaches([_result(accuracy=0.7)], thresholds)
    assert {(b.metric, b.value) for b in found} == {("answer_accuracy", 0.7), ("hits_at_4", None)}
    assert not breaches([SuiteResult("corpus", skipped="absent")], thresholds)
    path.write_text("[corpus]\nanswer_accuracy = 'high'\n", encoding="utf-8")
    with pytest.raises(InputError, match="metric = number"):
        load_thresholds(path)


def test_reports_show_failures_and_parse(tmp_path: Path) -> None:
    results = [_result(passed=False)]
    found = breaches(results, {"corpus": {"answer_accuracy": 0.9}})
    markdown = to_markdown(results, {"corpus": {"answer_accuracy": 0.9}}, found)
    assert "How many?" in markdown and "**below**" in markdown and "[1] There were 3." in markdown
    junit = ET.fromstring(to_junit(results, found))
    assert junit.find("testsuite").get("failures") == "2"  # the case and the threshold
    report = tmp_path / "before.json"
    report.write_text(json.dumps(to_json([_result(passed=True, accuracy=0.8)], [])), encoding="utf-8")
    changes, deltas = compare(results, report)
    assert [(c.case, c.now_passes) for c in changes] == [("q1", False)]
    assert any("answer_accuracy" in d for d in deltas)


def test_cli_questions_suite_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    articles = tmp_path / "articles.jsonl"
    rows = [
        {
            "id": "a1",
            "title": "Harbour strike ends",
            "published_at": "2025-03-02",
            "body": (
                "Dock workers in Port Alder ended their strike on Monday after 11 days. "
                "The union said members accepted a raise of 6 percent over two years. "
                "Cargo ships anchored offshore began unloading on Tuesday morning."
            ),
        },
        {
            "id": "a2",
            "title": "Orchard frost",
            "published_at": "2025-04-10",
            "body": (
                "A late frost damaged apple blossoms across the Vell valley this week. "
                "Growers estimated that a third of the crop was lost in two nights. "
                "The regional council opened an emergency fund for affected farms."
            ),
        },
    ]
    articles.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    questions = tmp_path / "questions.jsonl"
    labelled = [
        {
            "id": "q1",
            "question": "How many days did the Port Alder dock strike last?",
            "answer": "eleven",
            "evidence_article_ids": ["a1"],
            "type": "numeric",
        },
        {
            "id": "q2",
            "question": "What raise did the dock union accept?",
            "answer": "6 percent",
            "evidence_article_ids": ["a1"],
            "type": "what_which",
        },
    ]
    questions.write_text("\n".join(json.dumps(q) for q in labelled) + "\n", encoding="utf-8")
    monkeypatch.setenv("NEWSDESK_DATA_DIR", str(tmp_path / "data"))
    thresholds = tmp_path / "thresholds.toml"
    args = ["evals", "questions", "--questions", str(questions), "--articles", str(articles)]
    outputs = ["--report", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml")]

    thresholds.write_text('[questions]\nanswer_accuracy = 0.5\n"hits@1" = 1.0\n', encoding="utf-8")
    passing = CliRunner().invoke(cli, [*args, "--thresholds", str(thresholds), *outputs])
    assert passing.exit_code == 0, passing.output
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    (suite,) = report["suites"]
    assert suite["metrics"]["hits@1"] == 1.0 and len(suite["cases"]) == 2
    ET.parse(tmp_path / "r.xml")

    thresholds.write_text("[questions]\nanswer_accuracy = 1.01\n", encoding="utf-8")
    failing = CliRunner().invoke(cli, [*args, "--thresholds", str(thresholds)])
    assert failing.exit_code == 1
