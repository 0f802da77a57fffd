"""Labelled data: questions (JSONL in the RealTimeQA schema, or YAML lists of the same fields)
and brief expectations (YAML). A malformed entry fails loudly with its file and entry."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.errors import LabelError

QUESTION_TYPES = frozenset({"numeric", "who", "where", "what_which", "temporal", "null", "disputed"})


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    type: str
    evidence_article_ids: tuple[str, ...] = ()
    weak: bool = False
    question_date: str = ""
    must_mention: tuple[tuple[str, ...], ...] = ()

    @property
    def is_null(self) -> bool:
        return self.type.startswith("null") or (not self.answers and not self.must_mention)

    @property
    def is_disputed(self) -> bool:
        return bool(self.must_mention)


@dataclass(frozen=True)
class BriefExpectation:
    article: str
    key_facts: tuple[tuple[str, ...], ...]
    must_not_claim: tuple[str, ...] = field(default=())


def _records(path: Path) -> list[tuple[str, Any]]:
    if not path.is_file():
        raise LabelError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise LabelError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(data, list):
            raise LabelError(f"{path}: expected a YAML list of entries, got {type(data).__name__}")
        return [(f"{path} entry {n}", record) for n, record in enumerate(data, 1)]
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((f"{path}:{n}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise LabelError(f"{path}:{n}: not valid JSON: {error.msg}") from None
    return records


def _strings(where: str, name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        return (str(value),)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return tuple(str(v) for v in value)
    raise LabelError(f"{where}: {name} must be a string or a list of strings")


def _groups(where: str, name: str, value: Any) -> tuple[tuple[str, ...], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise LabelError(f"{where}: {name} must be a list of groups (each a list of alternatives)")
    groups = tuple(_strings(where, name, group) for group in value)
    if any(not group for group in groups):
        raise LabelError(f"{where}: {name} has an empty group")
    return groups


def load_questions(path: Path) -> list[Question]:
    questions: list[Question] = []
    seen: set[str] = set()
    for where, raw in _records(path):
        if not isinstance(raw, dict):
            raise LabelError(f"{where}: expected a mapping of fields")
        missing = [key for key in ("id", "question") if not raw.get(key)]
        if missing:
            raise LabelError(f"{where}: missing {', '.join(missing)}")
        question_id = str(raw["id"])
        if question_id in seen:
            raise LabelError(f"{where}: duplicate id {question_id!r}")
        seen.add(question_id)
        answers = tuple(
            a
            for a in _strings(where, "answer", raw.get("answer")) + _strings(where, "answers", raw.get("answers"))
            if a.strip()
        )
        if "type" in raw and raw["type"] is None:
            kind = "null"  # YAML reads an unquoted `type: null` as None
        else:
            kind = str(raw.get("type") or ("null" if not answers else "what_which"))
        must_mention = _groups(where, "must_mention", raw.get("must_mention"))
        if kind == "disputed" and not must_mention:
            raise LabelError(f"{where}: a disputed question needs must_mention (groups of alternatives)")
        if not kind.startswith("null") and not answers and not must_mention:
            raise LabelError(f"{where}: type {kind!r} needs an answer (or type: null for a refusal)")
        if kind.startswith("null") and answers:
            raise LabelError(f"{where}: a null question (the right answer is a refusal) cannot have answers")
        questions.append(
            Question(
                id=question_id,
                question=str(raw["question"]),
                answers=answers,
                type=kind,
                evidence_article_ids=_strings(where, "evidence_article_ids", raw.get("evidence_article_ids")),
                weak=raw.get("evidence_match_strength") == "weak",
                question_date=str(raw.get("question_date") or ""),
                must_mention=must_mention,
            )
        )
    return questions


def load_brief_expectations(path: Path) -> list[BriefExpectation]:
    expectations = []
    for where, raw in _records(path):
        if not isinstance(raw, dict) or not raw.get("article"):
            raise LabelError(f"{where}: expected a mapping with 'article' (an article id)")
        key_facts = _groups(where, "key_facts", raw.get("key_facts"))
        if not key_facts:
            raise LabelError(f"{where}: key_facts must list at least one fact")
        expectations.append(
            BriefExpectation(
                article=str(raw["article"]),
                key_facts=key_facts,
                must_not_claim=_strings(where, "must_not_claim", raw.get("must_not_claim")),
            )
        )
    return expectations
