"""The extractive engine: answers with verbatim source sentences, never a word of its own.

Every sentence of the retrieved passages is a candidate, described by:
- coverage: IDF-weighted share of the question's content words found in the sentence
  with its neighbours (and, separately, in the sentence alone);
- answer type: a number for "how many", a name for "who", a place for "where", a date for
  "when" that the question does not already contain;
- retrieval: the rank of the sentence's article among the retrieved ones.
The candidates with the best coverage are then read with the question: their meaning score is
the learned reader's cosine (``NEWSDESK_READER=learned``, a bi-encoder fine-tuned on past news
quizzes) or the embedding model's (``heuristic``), and the score adds the weighted cues. The
engine refuses when the best meaning and coverage are too low, saying what it did find.
The best one or two sentences are the answer. When two sentences from different articles
both answer the question and give different figures, or one disputes the other, both are
returned with their sources ("Sources differ").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from app.answer import Answer, Citation, EngineName, Turn
from app.reader import candidate_text
from app.store import sentence_id
from app.text.dates import DATE_CUE
from app.text.numbers import plain_numbers_in
from app.text.sentences import MIN_ANSWER_WORDS, split_sentences
from app.text.terms import STOPWORDS, light_stem, light_stems, query_terms

if TYPE_CHECKING:
    from app.embed import Embedder
    from app.lexical import LexicalIndex
    from app.reader import LearnedReader
    from app.retrieve import Passage
    from app.store import Store

_NAME = re.compile(r"\b[A-Z][\w’'.-]+(?:\s+(?:[A-Z][\w’'.-]+|de|da|von|van|al|bin))*")
_PLACE = re.compile(r"\b(?:in|at|from|near|to|across|outside)\s+((?:the\s+)?[A-Z][\w’'.-]+(?:[\s,]+[A-Z][\w’'.-]+)*)")
_DISPUTE = re.compile(r"\b(disput\w*|den(y|ies|ied)|reject\w*|insist\w*|contradict\w*|claim\w*|refut\w*)\b", re.I)
_FOLLOW_UP = re.compile(r"^\s*(and|but|so|also|what about|how about|then)\b", re.I)
_PRONOUN = re.compile(r"\b(it|its|they|them|their|he|him|his|she|her|this|that|these|those|there)\b", re.I)

DISAGREEING_MIN_COVERAGE = 0.20  # a source quoted as disagreeing must cover this much of the question


@dataclass(frozen=True)
class Scoring:
    """How candidates are scored: ``meaning`` (how well a candidate's meaning matches the
    question's) plus weighted cues; refuse when the best meaning plus ``evidence_coverage`` x the
    best sentence coverage is below ``refuse_below``; quote a runner-up scoring within
    ``second_within`` of the best; read the best ``candidates`` by word coverage."""

    weights: dict[str, float]
    evidence_coverage: float
    refuse_below: float
    second_within: float
    candidates: int


# Both chosen on the 2025 validation quizzes (July-December over their own 1,141 articles: `newsdesk
# train validation`), never on dev: a grid over the weights for accuracy, then the refusal threshold
# where 3% of answerable validation questions are refused (a margin under the 5% target: 164 questions
# measure it to about 2 points). RealTimeQA dev only reports (README, Evals).
# The heuristic scorer: meaning is MiniLM cosine (sentence vectors stored at ingest). Validation:
# accuracy 0.530 (the old dev-fitted numbers 0.483), 17 of 73 null questions refused at 2.4%.
HEURISTIC = Scoring(
    weights={"meaning": 1.0, "coverage": 0.6, "sentence_coverage": 0.4, "answer_type": 0.3, "article_rank": 0.2},
    evidence_coverage=0.25,
    refuse_below=0.55,
    second_within=0.7,
    candidates=24,
)
# The learned reader (app/reader.py, trained on 2022-2024, two epochs): meaning is its cosine; the weights
# kept from the one-epoch reader (a re-grid raised validation top-1 but lowered answer accuracy), the
# threshold re-chosen. Validation: accuracy 0.583 (one epoch 0.563, the heuristic scorer 0.530), 19 of 73
# null questions refused at 2.4%.
LEARNED = Scoring(
    weights={"meaning": 1.0, "coverage": 0.4, "sentence_coverage": 0.3, "answer_type": 0.2, "article_rank": 0.2},
    evidence_coverage=0.1,
    refuse_below=0.49,
    second_within=0.7,
    candidates=24,
)
# The same reader in int8 (NEWSDESK_READER_PRECISION=int8): its cosines run a little lower, so the
# threshold is re-chosen on validation by the same rule (the weights are kept). Validation: accuracy
# 0.555 (float32 0.583), 11 of 73 null questions refused at 2.4%; 0.45x the time (bench/reader.py).
LEARNED_INT8 = replace(LEARNED, refuse_below=0.44)


def reader_inputs(title: str, chunk_text: str) -> list[str]:
    """What the learned reader reads of a chunk: each of its candidate sentences, titled."""
    return [candidate_text(title, s.text) for s in split_sentences(chunk_text) if _long_enough(s.text)]


def _long_enough(sentence: str) -> bool:
    return len(sentence.split()) >= MIN_ANSWER_WORDS


def answer_type(question: str) -> str:
    q = question.lower()
    if re.search(
        r"\bhow (many|much|old|long|far|big|tall|high|large)\b|\bwhat (percentage|number|share|age)\b"
        r"|\b(score|scoreline|tally|total|rate|turnout|toll|magnitude|price|cost)\b",
        q,
    ):
        return "number"
    if re.search(r"\bwhen\b|\bwhat (year|date|day|month|time)\b", q):
        return "date"
    if re.search(r"\bwho\b|\bwhose\b|\bwhom\b", q):
        return "person"
    if re.search(r"\bwhere\b|\bwhich (country|city|state|region|town|island|nation|continent)\b", q):
        return "place"
    return "entity"


def _has_type(sentence: str, kind: str, question: str) -> bool:
    question_lower = question.lower()
    if kind == "number":
        return bool(plain_numbers_in(sentence) - plain_numbers_in(question))
    if kind == "date":
        return any(m.group().lower() not in question_lower for m in DATE_CUE.finditer(sentence))
    if kind == "place":
        return any(m.group(1).lower() not in question_lower for m in _PLACE.finditer(sentence))
    names = [m.group() for m in _NAME.finditer(sentence) if m.start() > 0 or " " in m.group()]
    novel = [n for n in names if n.lower() not in question_lower and n.lower() not in STOPWORDS]
    if kind == "person":
        return any(" " in n for n in novel)
    return bool(novel)


@dataclass
class _Candidate:
    passage: Passage
    start: int
    end: int
    text: str
    context: str
    coverage: float = 0.0
    sentence_coverage: float = 0.0
    meaning: float = 0.0
    typed: bool = False
    article_rank: int = 0
    score: float = 0.0


def _score(c: _Candidate, weights: dict[str, float]) -> float:
    return (
        weights["meaning"] * c.meaning
        + weights["coverage"] * c.coverage
        + weights["sentence_coverage"] * c.sentence_coverage
        + weights["answer_type"] * float(c.typed)
        + weights["article_rank"] / (1 + c.article_rank)
    )


class ExtractiveEngine:
    """``reader``: the learned bi-encoder, whose cosine is the meaning score; without one, the
    embedding model's cosine (sentence vectors stored at ingest) is."""

    name: EngineName = "extractive"

    def __init__(
        self,
        embedder: Embedder,
        lexical: LexicalIndex | None = None,
        store: Store | None = None,
        reader: LearnedReader | None = None,
    ) -> None:
        self.embedder = embedder
        self.lexical = lexical
        self.store = store
        self.reader = reader
        self.scoring = HEURISTIC if reader is None else LEARNED_INT8 if reader.quantized else LEARNED

    def answer(self, question: str, passages: list[Passage]) -> Answer:
        candidates = self._candidates(passages)
        if not candidates:
            return _refusal(question, passages, None)
        kind = answer_type(question)
        self._describe(question, kind, passages, candidates)
        candidates.sort(key=lambda c: c.coverage + c.sentence_coverage + 0.3 * c.typed, reverse=True)
        shortlist = candidates[: self.scoring.candidates]
        answerable = self._score(question, shortlist)
        shortlist.sort(key=lambda c: c.score, reverse=True)
        if not answerable:
            return _refusal(question, passages, shortlist[0])
        best = shortlist[0]
        companion, disagree = self._companion(best, shortlist, kind, question)
        return _compose(question, passages, [best, *companion], disagree)

    def _describe(self, question: str, kind: str, passages: list[Passage], candidates: list[_Candidate]) -> None:
        """Word coverage, answer type and article rank of every candidate."""
        weights = self._idf(question)
        total = sum(weights.values()) or 1.0
        article_ranks: dict[str, int] = {}
        for passage in passages:
            article_ranks.setdefault(passage.article_id, len(article_ranks))
        for candidate in candidates:
            in_context, in_sentence = light_stems(candidate.context), light_stems(candidate.text)
            candidate.coverage = sum(w for term, w in weights.items() if term in in_context) / total
            candidate.sentence_coverage = sum(w for term, w in weights.items() if term in in_sentence) / total
            candidate.typed = _has_type(candidate.text, kind, question)
            candidate.article_rank = article_ranks[candidate.passage.article_id]

    def _score(self, question: str, shortlist: list[_Candidate]) -> bool:
        """Meaning plus the weighted cues; whether the evidence is strong enough to answer."""
        if self.reader is not None:
            meanings = self.reader.score(question, [candidate_text(c.passage.title, c.text) for c in shortlist])
        else:
            query, *vectors = self._vectors(question, shortlist)
            meanings = [sum(a * b for a, b in zip(query, vector, strict=True)) for vector in vectors]
        for candidate, meaning in zip(shortlist, meanings, strict=True):
            candidate.meaning = max(0.0, meaning)
            candidate.score = _score(candidate, self.scoring.weights)
        best_meaning = max(c.meaning for c in shortlist)
        best_coverage = max(c.sentence_coverage for c in shortlist)
        return best_meaning + self.scoring.evidence_coverage * best_coverage >= self.scoring.refuse_below

    def _answers(self, c: _Candidate) -> bool:
        """Whether this candidate, on its own evidence, answers the question."""
        return c.meaning + self.scoring.evidence_coverage * c.sentence_coverage >= self.scoring.refuse_below

    def _vectors(self, question: str, candidates: list[_Candidate]) -> list[list[float]]:
        """The question's vector, then each candidate's: stored at ingest, or embedded now when
        the store has none (an article ingested before sentence vectors were stored)."""
        ids = [sentence_id(c.passage.chunk_id, c.start) for c in candidates]
        stored = self.store.sentence_vectors(ids) if self.store is not None else {}
        missing = [c.text for c, i in zip(candidates, ids, strict=True) if i not in stored]
        embedded = iter(self.embedder.embed_documents(missing))
        query = self.embedder.embed_query(question)  # the retriever's vector, from the embedder's cache
        return [query] + [stored[i] if i in stored else next(embedded) for i in ids]

    def _candidates(self, passages: list[Passage]) -> list[_Candidate]:
        seen: set[tuple[str, int]] = set()
        out: list[_Candidate] = []
        for passage in passages:
            sentences = split_sentences(passage.text)
            for i, sentence in enumerate(sentences):
                key = (passage.article_id, passage.start + sentence.start)
                if key in seen or not _long_enough(sentence.text):
                    continue
                seen.add(key)
                window = " ".join(s.text for s in sentences[max(0, i - 1) : i + 2])
                out.append(
                    _Candidate(
                        passage=passage,
                        start=passage.start + sentence.start,
                        end=passage.start + sentence.end,
                        text=sentence.text,
                        context=f"{passage.title} {sentence.text} {window}",
                    )
                )
        return out

    def _idf(self, question: str) -> dict[str, float]:
        terms = query_terms(question)
        if not terms:
            return {}
        if self.lexical is None:
            return {light_stem(t): 1.0 for t in terms}
        frequencies, total = self.lexical.document_frequency(terms)
        weights: dict[str, float] = {}
        for term in terms:
            df = frequencies.get(term, 0)
            stemmed = light_stem(term)
            weights[stemmed] = max(weights.get(stemmed, 0.0), math.log(1 + (total - df + 0.5) / (df + 0.5)))
        return weights

    def _companion(
        self, best: _Candidate, ranked: list[_Candidate], kind: str, question: str
    ) -> tuple[list[_Candidate], bool]:
        """A second sentence and whether it disagrees: a source that disagrees with the best
        one, else a close runner-up. Both must answer the question on their own evidence, so a
        different fact is not a dispute."""
        asked = plain_numbers_in(question)
        for other in ranked[1:6]:
            if other.passage.article_id == best.passage.article_id:
                continue
            if other.coverage < DISAGREEING_MIN_COVERAGE or not (self._answers(best) and self._answers(other)):
                continue
            if (
                kind == "number"
                and other.typed
                and best.typed
                and plain_numbers_in(other.text) - asked != plain_numbers_in(best.text) - asked
            ):
                return [other], True
            disputes = _DISPUTE.search(other.text) and not _DISPUTE.search(best.text)
            if disputes and other.score > 0.8 * best.score:
                return [other], True
        runner_up = next((c for c in ranked[1:] if c.text != best.text), None)
        if runner_up is None:
            return [], False
        close = runner_up.score >= self.scoring.second_within * best.score
        return ([runner_up], False) if close else ([], False)

    def condense(self, question: str, history: list[Turn]) -> str:
        """Deterministic follow-up rewrite: carry the previous question's subject words."""
        if not history:
            return question
        previous = history[-1].question
        current_terms = set(query_terms(question))
        has_own_subject = any(m.start() > 0 for m in _NAME.finditer(question.strip()))
        is_follow_up = (
            bool(_FOLLOW_UP.search(question))
            or bool(_PRONOUN.search(question))
            or (len(current_terms) < 3 and not has_own_subject)
        )
        if not is_follow_up:
            return question
        counted = re.search(r"\bhow (?:many|much) (\w+)", previous, re.I)
        if counted and counted.group(1).lower() not in STOPWORDS:
            carried = [counted.group(1).lower()]  # "how many drones ...?" -> the follow-up is about drones
        else:
            carried = [
                term
                for term in query_terms(previous)
                if term not in current_terms and not (has_own_subject and _is_name(term, previous))
            ]
        if not has_own_subject:
            carried += [m.group() for m in _NAME.finditer(previous) if m.start() > 0 and m.group() not in carried]
        base = _FOLLOW_UP.sub("", question).strip()
        carried = [term for term in carried if term.lower() not in base.lower()]
        return f"{base[:1].upper()}{base[1:]} ({' '.join(carried)})" if carried else base


def _is_name(term: str, text: str) -> bool:
    return any(term in m.group().lower() for m in _NAME.finditer(text) if m.start() > 0)


def _citation(number: int, candidate: _Candidate) -> Citation:
    offset = candidate.passage.start
    return Citation.from_passage(number, candidate.passage, candidate.start - offset, candidate.end - offset)


def _compose(question: str, passages: list[Passage], chosen: list[_Candidate], disagree: bool) -> Answer:
    citations = [_citation(n, c) for n, c in enumerate(chosen, 1)]
    if disagree:
        lines = [f"{c.quote} [{c.number}]" + (f" ({c.where})" if c.where else "") for c in citations]
        text = "Sources differ:\n" + "\n".join(lines)
        notes = ["the sources disagree; each is quoted with its source"]
    else:
        text = " ".join(f"{c.quote} [{c.number}]" for c in citations)
        notes = []
    return Answer(
        question=question,
        answer=text,
        citations=citations,
        engine="extractive",
        refused=False,
        passages=passages,
        notes=notes,
    )


def _refusal(question: str, passages: list[Passage], nearest: _Candidate | None) -> Answer:
    if nearest is None:
        return Answer(
            question=question,
            answer="The articles do not contain the answer: nothing relevant was found.",
            citations=[],
            engine="extractive",
            refused=True,
            passages=passages,
        )
    citation = _citation(1, nearest)
    date = f" ({citation.published_at[:10]})" if citation.published_at else ""
    return Answer(
        question=question,
        answer=(
            "The articles do not contain the answer. The closest they come is "
            f"{citation.source or citation.title}{date}: {citation.quote} [1]"
        ),
        citations=[citation],
        engine="extractive",
        refused=True,
        passages=passages,
    )
