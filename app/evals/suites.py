"""The eval suites: the real pipeline over labelled data, one ``SuiteResult`` each.

- ``corpus``: hand-labelled questions and brief expectations over the bundled ``corpus/``;
- ``questions``: any questions JSONL over any articles JSONL (RealTimeQA schema);
- ``briefs``: ROUGE against reference bullets vs Lead-3, grounding, and the sample article;
- ``conflicts``: questions whose sources contradict each other (RGB counterfactual schema).

Articles are ingested into a scratch store under ``DATA_DIR/evals/`` keyed by the content of
the inputs, so a rerun reuses it and a changed input gets a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from app.answer import Answer, EngineName
from app.article import Article, Section
from app.brief import Brief, Document
from app.brief.eval import fact_coverage, lead, rouge
from app.config import Settings
from app.embed import Embedder
from app.errors import InputError
from app.evals.labels import BriefExpectation, Question, load_brief_expectations, load_questions
from app.evals.match import contains_any, matched_groups
from app.parse import parse_file
from app.retrieve import Filters
from app.service import Newsdesk

Progress = Callable[[str, int, int], None]  # (suite, done, total)


@dataclass
class Case:
    """One scored item: what was asked, what was expected, what came back and why it failed."""

    id: str
    type: str
    passed: bool
    question: str
    expected: str
    got: str
    citations: list[str] = field(default_factory=list)
    reason: str = ""
    seconds: float = 0.0
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class SuiteResult:
    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    by_type: dict[str, dict[str, float]] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    skipped: str = ""
    notes: list[str] = field(default_factory=list)


def scratch_desk(settings: Settings, embedder: Embedder, name: str, inputs: Sequence[Path]) -> Newsdesk:
    """A Newsdesk over an embedded store holding exactly ``inputs`` (ingested on first use)."""
    digest = hashlib.sha256()
    files = sorted(p for path in inputs for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    root = settings.data_dir / "evals"
    target = root / f"{name}-{digest.hexdigest()[:12]}"
    for stale in root.glob(f"{name}-*"):
        if stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    scratch = settings.model_copy(update={"data_dir": target, "chroma_path": None, "chroma_host": None})
    desk = Newsdesk(scratch, embedder=embedder)
    if inputs:
        report = desk.ingest_paths(list(inputs))
        if report.errors:
            desk.close()
            raise InputError(f"{name}: {len(report.errors)} input(s) could not be read, first: {report.errors[0]}")
    return desk


# -- questions ---------------------------------------------------------------------------------


def _cited(answer: Answer) -> list[str]:
    return [f"[{c.number}] {c.quote} ({c.source or c.title}, {c.published_at[:10]})" for c in answer.citations]


def score_question(q: Question, answer: Answer, rank: int | None, seconds: float) -> Case:
    text = answer.answer
    quotes = " ".join(c.quote for c in answer.citations)
    values: dict[str, float] = {"refused": float(answer.refused), "seconds": seconds}
    if rank is not None:
        values["rank"] = float(rank)
    if q.is_null:
        passed = answer.refused
        expected, reason = "a refusal", "" if passed else "answered a question the articles cannot answer"
    elif q.is_disputed:
        groups = matched_groups(text, q.must_mention)
        passed = not answer.refused and all(groups)
        expected = " AND ".join(" / ".join(g) for g in q.must_mention)
        missing = [" / ".join(g) for g, hit in zip(q.must_mention, groups, strict=True) if not hit]
        reason = "refused" if answer.refused else (f"does not mention {'; '.join(missing)}" if missing else "")
    else:
        correct = not answer.refused and contains_any(text, q.answers)
        values["correct"] = float(correct)
        values["cited"] = float(correct and contains_any(quotes, q.answers))
        passed = correct
        expected = " / ".join(q.answers)
        reason = "" if passed else ("refused" if answer.refused else "the answer does not contain the gold answer")
    return Case(q.id, q.type, passed, q.question, expected, text, _cited(answer), reason, seconds, values)


def run_questions(
    desk: Newsdesk,
    questions: Sequence[Question],
    *,
    engine: EngineName = "extractive",
    as_of: bool = True,
    k: int = 10,
    progress: Progress | None = None,
    suite: str = "questions",
) -> list[Case]:
    """``as_of``: each question sees only the articles published up to its ``question_date``,
    as a reader asking that day would (a weekly quiz's "this week" means that week)."""
    cases = []
    for n, q in enumerate(questions, 1):
        filters = Filters(until=date.fromisoformat(q.question_date[:10])) if as_of and q.question_date else None
        evidence = set(q.evidence_article_ids)
        rank = None
        if evidence:
            passages = desk.search(q.question, k, filters)
            rank = next((i for i, p in enumerate(passages, 1) if p.article_id in evidence), None)
        started = time.perf_counter()
        answer = desk.ask(q.question, engine=engine, filters=filters)
        cases.append(score_question(q, answer, rank, time.perf_counter() - started))
        if progress:
            progress(suite, n, len(questions))
    return cases


def _share(items: Sequence[Case], test: Callable[[Case], bool]) -> float:
    return sum(1 for c in items if test(c)) / len(items) if items else 0.0


def question_metrics(questions: Sequence[Question], cases: Sequence[Case]) -> dict[str, float]:
    by_id = {q.id: q for q in questions}
    answerable = [c for c in cases if not by_id[c.id].is_null and not by_id[c.id].is_disputed]
    strong = [c for c in answerable if not by_id[c.id].weak]
    null = [c for c in cases if by_id[c.id].is_null]
    disputed = [c for c in cases if by_id[c.id].is_disputed]
    with_evidence = [c for c in cases if by_id[c.id].evidence_article_ids and not by_id[c.id].is_null]
    refused = [c for c in cases if c.values["refused"]]
    correct = [c for c in answerable if c.values.get("correct")]
    latencies = sorted(c.seconds for c in cases)
    metrics: dict[str, float] = {}
    if with_evidence:
        for k in (1, 4, 10):
            metrics[f"hits@{k}"] = sum(1 for c in with_evidence if 0 < c.values.get("rank", 0) <= k) / len(
                with_evidence
            )
        metrics["mrr@10"] = sum(1 / c.values["rank"] for c in with_evidence if "rank" in c.values) / len(with_evidence)
    if answerable:
        metrics["answer_accuracy"] = _share(strong, lambda c: c.passed)
        metrics["answer_accuracy_all"] = _share(answerable, lambda c: c.passed)
        metrics["citation_precision"] = _share(correct, lambda c: bool(c.values.get("cited"))) if correct else 0.0
        metrics["refused_answerable"] = _share(answerable, lambda c: bool(c.values["refused"]))
    if null:
        metrics["refusal_recall"] = _share(null, lambda c: c.passed)
        metrics["refusal_precision"] = _share(refused, lambda c: by_id[c.id].is_null) if refused else 1.0
    if disputed:
        metrics["disagreement_coverage"] = _share(disputed, lambda c: c.passed)
    if latencies:
        metrics["latency_p50_s"] = statistics.median(latencies)
        metrics["latency_p95_s"] = latencies[int(0.95 * (len(latencies) - 1))]
    return metrics


def by_type(cases: Sequence[Case]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.type, []).append(case)
    return {
        kind: {"cases": float(len(items)), "pass_rate": _share(items, lambda c: c.passed)}
        for kind, items in sorted(groups.items())
    }


# -- briefs ------------------------------------------------------------------------------------


def brief_of(desk: Newsdesk, documents: list[Document], bullets: int | None, engine: EngineName) -> Brief:
    subject = documents[0].article.id
    return desk.brief_documents(documents, bullets=bullets, kind="article", subject=subject, engine=engine)


def grounding(briefs: Iterable[Brief]) -> float:
    """Share of the bullets a brief produced (kept or dropped) that the verifier supports."""
    produced = supported = 0
    for brief in briefs:
        produced += len(brief.bullets) + len(brief.dropped)
        supported += sum(1 for b in brief.bullets if b.verdict.supported)
    return supported / produced if produced else 0.0


def score_brief_expectation(expectation: BriefExpectation, brief: Brief) -> Case:
    text = "\n".join(b.text for b in brief.bullets)
    covered = matched_groups(text, expectation.key_facts)
    claimed = [claim for claim in expectation.must_not_claim if contains_any(text, [claim])]
    missing = [" / ".join(g) for g, hit in zip(expectation.key_facts, covered, strict=True) if not hit]
    reasons = []
    if missing:
        reasons.append(f"missing {'; '.join(missing)}")
    if claimed:
        reasons.append(f"claims {'; '.join(claimed)}")
    return Case(
        id=f"brief:{expectation.article}",
        type="brief",
        passed=not claimed and len(missing) == 0,
        question=f"brief of {expectation.article}",
        expected=" AND ".join(" / ".join(g) for g in expectation.key_facts),
        got=text,
        citations=[f"[{c.number}] {c.quote}" for b in brief.bullets for c in b.citations],
        reason="; ".join(reasons),
        values={"key_fact_coverage": sum(covered) / len(covered), "forbidden_claims": float(len(claimed))},
    )


def load_reference_articles(path: Path) -> list[tuple[Article, list[str]]]:
    """Articles JSONL with reference bullets in ``highlights`` (CNN/DailyMail highlights format)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record: dict[str, Any] = json.loads(line)
            body, highlights = str(record["body"]), [str(h) for h in record["highlights"]]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputError(f"{path}:{n}: expected a JSON object with 'body' and 'highlights' ({error})") from None
        article = Article(
            id=str(record.get("id") or n),
            title=str(record.get("title") or ""),
            text=body,
            sections=[Section("body", 0, len(body))],
            source=str(record.get("source") or ""),
        )
        out.append((article, highlights))
    return out


def run_reference_briefs(
    desk: Newsdesk, path: Path, *, bullets: int, engine: EngineName, progress: Progress | None = None
) -> SuiteResult:
    records = load_reference_articles(path)
    briefs, cases = [], []
    for n, (article, highlights) in enumerate(records, 1):
        started = time.perf_counter()
        brief = brief_of(desk, [Document(article)], bullets, engine)
        seconds = time.perf_counter() - started
        briefs.append(brief)
        ours = rouge([[b.text for b in brief.bullets]], [highlights])
        baseline = rouge([lead(article.text, 3)], [highlights])
        cases.append(
            Case(
                id=article.id,
                type="rouge",
                passed=ours["rouge1"] >= baseline["rouge1"],
                question=f"brief of {article.id}",
                expected="\n".join(highlights),
                got="\n".join(b.text for b in brief.bullets),
                reason=f"ROUGE-1 {ours['rouge1']:.1f} below Lead-3's {baseline['rouge1']:.1f}",
                seconds=seconds,
                values={**{f"{k}": v for k, v in ours.items()}, **{f"lead3_{k}": v for k, v in baseline.items()}},
            )
        )
        if progress:
            progress("briefs", n, len(records))
    metrics: dict[str, float] = {}
    for name in ("rouge1", "rouge2", "rougeLsum"):
        metrics[name] = statistics.fmean(c.values[name] for c in cases)
        metrics[f"lead3_{name}"] = statistics.fmean(c.values[f"lead3_{name}"] for c in cases)
        metrics[f"{name}_over_lead3"] = metrics[name] - metrics[f"lead3_{name}"]
    metrics["grounding_rate"] = grounding(briefs)
    latencies = sorted(c.seconds for c in cases)
    metrics["latency_p50_s"] = statistics.median(latencies)
    metrics["latency_p95_s"] = latencies[int(0.95 * (len(latencies) - 1))]
    return SuiteResult("briefs", metrics, {}, cases)


def run_sample_brief(desk: Newsdesk, path: Path, *, bullets: int | None, engine: EngineName) -> Case:
    """Brief the sample article's Deep Look body and compare with its own Quick Looks."""
    article = parse_file(path, max_bytes=desk.settings.max_file_bytes).articles[0]
    body = tuple((s.start, s.end) for s in article.sections if s.name == "body")
    brief = brief_of(desk, [Document(article, body)], bullets, engine)
    coverage = fact_coverage([b.text for b in brief.bullets], article.quick_looks, desk.verifier)
    covered = sum(c.covered for c in coverage)
    return Case(
        id=f"sample:{path.name}",
        type="quick_looks",
        passed=covered >= 6,
        question=f"brief of the Deep Look body of {path.name}",
        expected="\n".join(article.quick_looks),
        got="\n".join(b.text for b in brief.bullets),
        reason="" if covered >= 6 else f"covers {covered}/{len(coverage)} Quick Looks facts (needs 6)",
        values={"quick_looks_covered": float(covered), "quick_looks_total": float(len(coverage))},
    )


# -- conflicts ---------------------------------------------------------------------------------


def run_conflicts(
    settings: Settings,
    embedder: Embedder,
    questions_path: Path,
    snippets_path: Path,
    *,
    engine: EngineName,
    progress: Progress | None = None,
) -> SuiteResult:
    """Each question is answered from its own snippets only (supporting, contradicting, noise).
    A case passes when the answer gives the supported answer, and fails when it gives only
    the falsified one (or refuses)."""
    raw_questions = [json.loads(line) for line in questions_path.read_text(encoding="utf-8").splitlines() if line]
    snippets = [json.loads(line) for line in snippets_path.read_text(encoding="utf-8").splitlines() if line]
    scratch_file = settings.data_dir / "evals" / "conflicts-snippets.jsonl"
    scratch_file.parent.mkdir(parents=True, exist_ok=True)
    with scratch_file.open("w", encoding="utf-8") as out:
        for snippet in snippets:
            record = {"id": snippet["id"], "title": "", "source": "snippet", "body": snippet["body"]}
            out.write(json.dumps(record) + "\n")
    desk = scratch_desk(settings, embedder, "conflicts", [scratch_file])
    roles = {str(s["id"]): str(s.get("role", "")) for s in snippets}  # shown in the report, never to the engine
    by_question: dict[str, list[str]] = {}
    for snippet in snippets:
        by_question.setdefault(str(snippet["question_id"]), []).append(str(snippet["id"]))
    stored = {a.id for a in desk.store.get_articles([s for ids in by_question.values() for s in ids])}
    cases = []
    try:
        for n, raw in enumerate(raw_questions, 1):
            ids = tuple(i for i in by_question.get(str(raw["id"]), []) if i in stored)
            golds = [str(a) for a in (raw["answer"] if isinstance(raw["answer"], list) else [raw["answer"]])]
            fakes = [
                str(a) for a in (raw["fake_answer"] if isinstance(raw["fake_answer"], list) else [raw["fake_answer"]])
            ]
            started = time.perf_counter()
            answer = desk.ask(str(raw["question"]), engine=engine, filters=Filters(article_ids=ids))
            seconds = time.perf_counter() - started
            supported = not answer.refused and contains_any(answer.answer, golds)
            false = not answer.refused and contains_any(answer.answer, fakes)
            reason = (
                ""
                if supported
                else (
                    "refused"
                    if answer.refused
                    else "gave only the falsified answer"
                    if false
                    else "gave neither answer"
                )
            )
            cases.append(
                Case(
                    id=str(raw["id"]),
                    type=str(raw.get("type") or "conflict"),
                    passed=supported,
                    question=str(raw["question"]),
                    expected=f"{' / '.join(golds)} (not only {' / '.join(fakes)})",
                    got=answer.answer,
                    citations=[
                        f"{line} [{roles.get(c.article_id, '?')}]"
                        for line, c in zip(_cited(answer), answer.citations, strict=True)
                    ],
                    reason=reason,
                    seconds=seconds,
                    values={"supported": float(supported), "falsified": float(false), "refused": float(answer.refused)},
                )
            )
            if progress:
                progress("conflicts", n, len(raw_questions))
    finally:
        desk.close()
    metrics = {
        "supported_answer": _share(cases, lambda c: bool(c.values["supported"])),
        "only_falsified": _share(cases, lambda c: bool(c.values["falsified"]) and not c.values["supported"]),
        "both_sides": _share(cases, lambda c: bool(c.values["falsified"]) and bool(c.values["supported"])),
        "refused": _share(cases, lambda c: bool(c.values["refused"])),
    }
    return SuiteResult("conflicts", metrics, by_type(cases), cases)


# -- the suites --------------------------------------------------------------------------------


def run_corpus(
    settings: Settings,
    embedder: Embedder,
    corpus: Path,
    labels: Path,
    *,
    engine: EngineName,
    progress: Progress | None = None,
) -> SuiteResult:
    questions = load_questions(labels / "questions.yaml")
    expectations = load_brief_expectations(labels / "briefs.yaml")
    desk = scratch_desk(settings, embedder, "corpus", [corpus])
    try:
        known = {a.id for a in desk.store.get_articles([e.article for e in expectations])}
        unknown = sorted({e.article for e in expectations} - known)
        if unknown:
            raise InputError(f"{labels / 'briefs.yaml'}: no article with id {', '.join(unknown)} in {corpus}")
        cases = run_questions(desk, questions, engine=engine, as_of=False, progress=progress, suite="corpus")
        metrics = question_metrics(questions, cases)
        briefs = []
        for expectation in expectations:
            brief = desk.brief(article_id=expectation.article, engine=engine)
            briefs.append(brief)
            cases.append(score_brief_expectation(expectation, brief))
        brief_cases = [c for c in cases if c.type == "brief"]
        metrics["key_fact_coverage"] = statistics.fmean(c.values["key_fact_coverage"] for c in brief_cases)
        metrics["brief_forbidden_claims"] = sum(c.values["forbidden_claims"] for c in brief_cases)
        metrics["grounding_rate"] = grounding(briefs)
    finally:
        desk.close()
    return SuiteResult("corpus", metrics, by_type(cases), cases)


def run_question_file(
    settings: Settings,
    embedder: Embedder,
    questions_paths: Sequence[Path],
    articles: Path,
    *,
    engine: EngineName,
    as_of: bool,
    progress: Progress | None = None,
) -> SuiteResult:
    questions = [q for path in questions_paths for q in load_questions(path)]
    desk = scratch_desk(settings, embedder, "questions", [articles])
    try:
        cases = run_questions(desk, questions, engine=engine, as_of=as_of, progress=progress)
    finally:
        desk.close()
    result = SuiteResult("questions", question_metrics(questions, cases), by_type(cases), cases)
    if as_of:
        result.notes.append("each question sees only articles published up to its question_date (--no-as-of: all)")
    return result
