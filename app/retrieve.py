"""Stage 4: question -> passages. Dense (Chroma) and BM25 (app.lexical) fused by reciprocal rank; a story
(app.stories) counts once: the best-ranked of its articles stands for it, naming the other outlets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, cast

from chromadb.api.types import Where

from app.article import date_to_timestamp
from app.lexical import LexicalFilters
from app.store import ChunkHit
from app.text.numbers import plain_numbers_in

if TYPE_CHECKING:
    from app.embed import Embedder
    from app.lexical import LexicalIndex
    from app.store import Store
    from app.stories import StoryIndex

RRF_K = 60
# Weights of the dense, chunk BM25 and article BM25 rankings, and how many top articles the last one
# takes: chosen on the 2025 validation quizzes over their own 1,141 articles (`newsdesk train validation`),
# a grid over 0-1 x 0-4 x 3/5/8: Hits@4 0.927, MRR@10 0.813 (the earlier dev-fitted 0.5, 3 and 5 articles
# gave 0.909 / 0.800 there).
FUSION_WEIGHTS = (1.0, 0.5, 1.0)
ARTICLE_DEPTH = 8
DENSE_CANDIDATES = 30  # chunks each leg ranks before fusion (at least 3 * k)
RECENCY_BOOST = 1.0
RECENCY_HALF_LIFE_DAYS = 14.0
_RECENCY = re.compile(r"\b(latest|most recent|newest|recently|currently|current|this week|today|now)\b", re.I)


@dataclass(frozen=True)
class Filters:
    sources: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None
    article_ids: tuple[str, ...] = ()

    @property
    def since_ts(self) -> int | None:
        return _day_start(self.since) if self.since else None

    @property
    def until_ts(self) -> int | None:
        return _day_start(self.until) + 86_399 if self.until else None

    def admits(self, article_id: str, source: str, published_at: str) -> bool:
        """Whether an article with these fields passes the filters."""
        ts = date_to_timestamp(published_at)
        return (
            (not self.sources or source in self.sources)
            and (not self.article_ids or article_id in self.article_ids)
            and (self.since_ts is None or (ts is not None and ts >= self.since_ts))
            and (self.until_ts is None or (ts is not None and ts <= self.until_ts))
        )

    def where(self) -> Where | None:
        clauses: list[dict[str, object]] = []
        if self.sources:
            clauses.append({"source": {"$in": list(self.sources)}})
        if self.article_ids:
            clauses.append({"article_id": {"$in": list(self.article_ids)}})
        if self.since_ts is not None:
            clauses.append({"published_ts": {"$gte": self.since_ts}})
        if self.until_ts is not None:
            clauses.append({"published_ts": {"$lte": self.until_ts}})
        if not clauses:
            return None
        return cast(Where, clauses[0] if len(clauses) == 1 else {"$and": clauses})


def _day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class Passage(ChunkHit):
    """A retrieved chunk (``text == article.text[start:end]``); ``score`` is the fused score. Its story's
    other articles (``copies``, left out of the ranking) and their outlets (``also_reported_by``,
    the passage's own left out) come with it."""

    dense_rank: int | None = None
    lexical_rank: int | None = None
    dense_score: float | None = field(default=None, compare=False)
    story_id: str = field(default="", compare=False)
    copies: tuple[str, ...] = field(default=(), compare=False)
    also_reported_by: tuple[str, ...] = field(default=(), compare=False)


class Retriever:
    def __init__(
        self,
        store: Store,
        lexical: LexicalIndex,
        embedder: Embedder,
        candidates: int = DENSE_CANDIDATES,
        article_depth: int = ARTICLE_DEPTH,
        weights: tuple[float, float, float] = FUSION_WEIGHTS,
        per_article: int = 1,
        stories: StoryIndex | None = None,
    ) -> None:
        self.store = store
        self.stories = stories
        self.lexical = lexical
        self.embedder = embedder
        self.candidates = candidates
        self.article_depth = article_depth
        self.weights = weights
        self.per_article = per_article

    def retrieve(
        self, question: str, k: int = 8, filters: Filters | None = None, per_article: int | None = None
    ) -> list[Passage]:
        """Top-k chunks by reciprocal rank fusion of three rankings: dense chunks, BM25
        chunks, and BM25 over whole articles (which lifts every chunk of a relevant
        article and brings in that article's best-matching chunk)."""
        filters = filters or Filters()
        self.lexical.sync()
        depth = max(self.candidates, k * 3)
        lexical_filters = LexicalFilters(filters.sources, filters.article_ids, filters.since_ts, filters.until_ts)
        # Chroma gives the nearest chunk ids; the synced lexical index keeps the live ones and has their text.
        vector = self.embedder.embed_query(question)
        dense = self.store.nearest_kept(vector, depth, self.lexical.indexed_chunks, where=filters.where())
        lexical = self.lexical.search(question, depth, lexical_filters)
        articles = self.lexical.search_articles(question, self.article_depth, lexical_filters)

        hits: dict[str, ChunkHit] = {h.chunk_id: h for h in lexical} | {h.chunk_id: h for h in dense}
        covered = {h.article_id for h in hits.values()}
        missing = [article_id for article_id, _ in articles if article_id not in covered]
        for best in self.lexical.best_chunks(question, missing).values():
            hits[best.chunk_id] = best

        dense_rank = {h.chunk_id: rank for rank, h in enumerate(dense, 1)}
        lexical_rank = {h.chunk_id: rank for rank, h in enumerate(lexical, 1)}
        article_rank = {article_id: rank for rank, (article_id, _) in enumerate(articles, 1)}
        fused: dict[str, float] = {}
        for chunk_id, hit in hits.items():
            score = 0.0
            ranks = (dense_rank.get(chunk_id), lexical_rank.get(chunk_id), article_rank.get(hit.article_id))
            for weight, rank in zip(self.weights, ranks, strict=True):
                if rank is not None:
                    score += weight / (RRF_K + rank)
            fused[chunk_id] = score
        if _RECENCY.search(question):
            fused = _prefer_recent(fused, {cid: hits[cid].published_at for cid in fused})
        dense_scores = {h.chunk_id: h.score for h in dense}
        ordered = sorted(fused, key=lambda cid: fused[cid], reverse=True)
        story_of: dict[str, str] = {}
        if self.stories is not None:
            self.stories.sync()
            story_of = self.stories.story_ids(h.article_id for h in hits.values())
            ordered = _one_article_per_story(ordered, hits, story_of)
        ranked = _diversify(ordered, hits, per_article or self.per_article, k)
        passages = [
            Passage(
                **{**vars(hits[cid]), "score": fused[cid]},
                dense_rank=dense_rank.get(cid),
                lexical_rank=lexical_rank.get(cid),
                dense_score=dense_scores.get(cid),
                story_id=story_of.get(hits[cid].article_id, ""),
            )
            for cid in ranked
        ]
        return self._with_copies(passages)

    def _with_copies(self, passages: list[Passage]) -> list[Passage]:
        """The passages with their story's other articles and outlets."""
        if self.stories is None:
            return passages
        members = self.stories.members(p.story_id for p in passages if p.story_id)
        out = []
        shown = {p.article_id for p in passages}
        for passage in passages:
            others = [m for m in members.get(passage.story_id, []) if m.id not in shown]
            outlets = dict.fromkeys(m.source for m in others if m.source and m.source != passage.source)
            out.append(replace(passage, copies=tuple(m.id for m in others), also_reported_by=tuple(outlets)))
        return out


def _one_article_per_story(ranked: list[str], hits: dict[str, ChunkHit], story_of: dict[str, str]) -> list[str]:
    """The ranking without the chunks of an article whose story a better-ranked article already holds,
    unless the chunk gives a figure the lead's chunks do not: copies that differ on a figure disagree,
    and the engines can only say so if both are among the passages."""
    lead: dict[str, str] = {}
    lead_figures: dict[str, set[float]] = {}
    kept = []
    for chunk_id in ranked:
        hit = hits[chunk_id]
        story = story_of.get(hit.article_id)
        figures = plain_numbers_in(hit.text)
        if story is None:
            kept.append(chunk_id)
        elif lead.setdefault(story, hit.article_id) == hit.article_id:
            kept.append(chunk_id)
            lead_figures.setdefault(story, set()).update(figures)
        elif figures - lead_figures.get(story, set()):
            kept.append(chunk_id)
    return kept


def _diversify(ranked: list[str], hits: dict[str, ChunkHit], per_article: int, k: int) -> list[str]:
    """The top k, with at most ``per_article`` chunks of one article ahead of the others."""
    first: list[str] = []
    rest: list[str] = []
    taken: dict[str, int] = {}
    for chunk_id in ranked:
        article_id = hits[chunk_id].article_id
        taken[article_id] = taken.get(article_id, 0) + 1
        (first if taken[article_id] <= per_article else rest).append(chunk_id)
    return (first + rest)[:k]


def _prefer_recent(scores: dict[str, float], dates: dict[str, str]) -> dict[str, float]:
    """For 'latest' questions: boost by article age relative to the newest candidate, halving every
    ``RECENCY_HALF_LIFE_DAYS``, so last week's story outranks a similar one from years ago."""
    known = [d for d in dates.values() if d]
    if not known:
        return scores
    newest = max(datetime.fromisoformat(d[:10]) for d in known)
    boosted = {}
    for cid, score in scores.items():
        if not dates[cid]:
            boosted[cid] = score
            continue
        age_days = (newest - datetime.fromisoformat(dates[cid][:10])).days
        boosted[cid] = score * (1 + RECENCY_BOOST * 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS))
    return boosted
