"""Stage 8: scoring answers against labelled questions (RealTimeQA-style JSONL).

Gold answers match when the normalised answer text contains a normalised gold answer:
case and punctuation folded, numbers compared as numbers ("1,300" = "1300",
"three" = "3").
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.answer import Answer
from app.answer.extractive import NUMBER_WORDS
from app.service import Newsdesk

_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=\d)\.0+\b", "", text)
    words = [str(NUMBER_WORDS[w]) if w in NUMBER_WORDS else w for w in _PUNCT.sub(" ", text).split()]
    return " ".join(words)


def contains_answer(text: str, golds: Iterable[str]) -> bool:
    haystack = f" {normalize(text)} "
    return any(f" {normalize(g)} " in haystack for g in golds if normalize(g))


@dataclass
class Question:
    id: str
    question: str
    answers: list[str]
    evidence_article_ids: list[str]
    type: str
    weak: bool
    question_date: str = ""
    must_mention: list[list[str]] = field(default_factory=list)

    @property
    def is_null(self) -> bool:
        return self.type.startswith("null") or not self.answers


def load_questions(path: Path) -> list[Question]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        raw: dict[str, Any] = json.loads(line)
        answers = [str(a) for a in [raw.get("answer"), *(raw.get("answers") or [])] if a not in (None, "")]
        out.append(
            Question(
                id=str(raw["id"]),
                question=str(raw["question"]),
                answers=answers,
                evidence_article_ids=list(raw.get("evidence_article_ids") or []),
                type=str(raw.get("type") or ""),
                weak=raw.get("evidence_match_strength") == "weak",
                question_date=str(raw.get("question_date") or ""),
                must_mention=list(raw.get("must_mention") or []),
            )
        )
    return out


@dataclass
class CaseResult:
    question: Question
    answer: Answer
    rank: int | None
    seconds: float

    @property
    def correct(self) -> bool:
        return not self.answer.refused and contains_answer(self.answer.answer, self.question.answers)


def run_questions(desk: Newsdesk, questions: list[Question], k: int = 10) -> list[CaseResult]:
    results = []
    for q in questions:
        passages = desk.retriever.retrieve(q.question, k)
        started = time.perf_counter()
        answer = desk.ask(q.question, engine="extractive")
        seconds = time.perf_counter() - started
        evidence = set(q.evidence_article_ids)
        rank = next((i for i, p in enumerate(passages, 1) if p.article_id in evidence), None)
        results.append(CaseResult(q, answer, rank, seconds))
    return results


def summarize(results: list[CaseResult]) -> dict[str, float]:
    answerable = [r for r in results if not r.question.is_null]
    null = [r for r in results if r.question.is_null]
    strong = [r for r in answerable if not r.question.weak]
    with_evidence = [r for r in answerable if r.question.evidence_article_ids]

    def share(items: list[CaseResult], test: Any) -> float:
        return sum(1 for r in items if test(r)) / len(items) if items else 0.0

    latencies = sorted(r.seconds for r in results)
    return {
        "hits@1": share(with_evidence, lambda r: r.rank is not None and r.rank <= 1),
        "hits@4": share(with_evidence, lambda r: r.rank is not None and r.rank <= 4),
        "hits@10": share(with_evidence, lambda r: r.rank is not None and r.rank <= 10),
        "mrr@10": sum(1 / r.rank for r in with_evidence if r.rank) / len(with_evidence) if with_evidence else 0.0,
        "answer_accuracy_strong": share(strong, lambda r: r.correct),
        "answer_accuracy_all": share(answerable, lambda r: r.correct),
        "refused_null": share(null, lambda r: r.answer.refused),
        "refused_answerable": share(answerable, lambda r: r.answer.refused),
        "latency_p50_s": statistics.median(latencies) if latencies else 0.0,
        "latency_p95_s": latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0,
    }
