"""Stories: near-duplicate articles (wire copies, light rewrites, an outlet's updated version under a
new URL) grouped as one report, so answers count it once and name every outlet that carried it.

Two articles are the same story when the shorter shares at least ``STORY_THRESHOLD`` of its word
3-shingles with the other (containment, so an updated version with an added paragraph still
matches). The threshold is fitted on the labelled pairs of ``tests/data/story_pairs.json``
(``bench/stories.py`` prints how it does on the pairs it was not fitted on).

The grouping lives in SQLite (``DATA_DIR/stories-<collection>.sqlite``): every article's story id and
its shingles, indexed by shingle to find candidates. Like the lexical index it follows the store's
live articles: a sync compares fingerprints, groups new and changed articles (oldest first) and
forgets deleted ones. A story id is a label the members share; deleting the article that started a
story leaves the others in it, and a changed article keeps its story while it still matches it.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Protocol

from app.article import Article

SHINGLE_WORDS = 3
# Fitted (``fit_threshold``) on the labelled pairs of topics 1-4 in tests/data/story_pairs.json: the
# middle of the gap between the lowest caught same-story containment there (0.64, a light rewrite) and
# the highest different-story one (0.30, a follow-up reusing a background sentence).
STORY_THRESHOLD = 0.47
FETCH_BATCH = 200  # articles read from the store at a time during a sync
_WORD = re.compile(r"\w+")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS member (
    article_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, story_id TEXT NOT NULL, shingles INTEGER NOT NULL,
    title TEXT NOT NULL, source TEXT NOT NULL, published_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS member_story ON member (story_id);
CREATE TABLE IF NOT EXISTS shingle (hash INTEGER NOT NULL, article_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS shingle_hash ON shingle (hash);
CREATE INDEX IF NOT EXISTS shingle_article ON shingle (article_id);
CREATE TABLE IF NOT EXISTS story_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ArticleSource(Protocol):
    """What a story index reads of the store (``app.store.Store`` is one)."""

    def generation(self) -> str: ...

    def live_fingerprints(self) -> dict[str, str]: ...

    def get_articles(self, article_ids: Sequence[str]) -> list[Article]: ...


@dataclass(frozen=True)
class StoryArticle:
    id: str
    title: str
    source: str
    published_at: str


@dataclass(frozen=True)
class Story:
    """One report and the articles that carry it, oldest first."""

    id: str
    articles: list[StoryArticle]

    @property
    def published_at(self) -> str:
        """When the story was last published (the newest article's date)."""
        return max((a.published_at for a in self.articles), default="")


def shingles(text: str) -> set[int]:
    """The text's word 3-shingles (lower-cased words), as 63-bit hashes; a shorter text is one shingle."""
    words = _WORD.findall(text.lower())
    count = max(1, len(words) - SHINGLE_WORDS + 1)
    return {_hash(" ".join(words[i : i + SHINGLE_WORDS])) for i in range(count)} if words else set()


def containment(shared: int, size_a: int, size_b: int) -> float:
    """The share of the smaller shingle set found in the other."""
    smaller = min(size_a, size_b)
    return shared / smaller if smaller else 0.0


def similarity(a: str, b: str) -> float:
    """Containment of two texts' shingles (``same_story`` compares it with the threshold)."""
    first, second = shingles(a), shingles(b)
    return containment(len(first & second), len(first), len(second))


def same_story(a: str, b: str, threshold: float = STORY_THRESHOLD) -> bool:
    return similarity(a, b) >= threshold


@dataclass(frozen=True)
class PairScore:
    """How ``threshold`` sorts labelled pairs: ``same`` pairs at or above it are true positives."""

    threshold: float
    precision: float
    recall: float
    pairs: int


def score_pairs(pairs: Sequence[tuple[float, bool]], threshold: float) -> PairScore:
    """Precision and recall of ``similarity >= threshold`` on (similarity, same story) pairs."""
    called = [same for similarity_, same in pairs if similarity_ >= threshold]
    positives = sum(same for _, same in pairs)
    hits = sum(called)
    return PairScore(
        threshold, hits / len(called) if called else 1.0, hits / positives if positives else 1.0, len(pairs)
    )


def fit_threshold(pairs: Sequence[tuple[float, bool]]) -> float:
    """The threshold with the best F1 on (similarity, same story) pairs; among equally good ones, the
    one farthest from every pair's similarity (the middle of the widest gap)."""
    values = sorted({similarity_ for similarity_, _ in pairs})
    candidates = [(a + b) / 2 for a, b in pairwise(values)] or values

    def f1(threshold: float) -> float:
        score = score_pairs(pairs, threshold)
        total = score.precision + score.recall
        return 2 * score.precision * score.recall / total if total else 0.0

    best = max(f1(t) for t in candidates)
    return max((t for t in candidates if f1(t) == best), key=lambda t: min(abs(t - v) for v in values))


def _hash(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=8).digest(), "big") >> 1


def _open(path: Path) -> sqlite3.Connection:
    """The index's database, created if need be; one connection for every thread (under the index's
    lock), with transactions begun explicitly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=60, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_SCHEMA)
    return db


class StoryIndex:
    def __init__(self, path: Path, store: ArticleSource, threshold: float = STORY_THRESHOLD) -> None:
        self.store = store
        self.threshold = threshold
        self._lock = threading.RLock()
        self._db = _open(path)

    def close(self) -> None:
        self._db.close()

    # -- keeping up with the store ------------------------------------------------------

    def sync(self) -> int:
        """Group the store's new and changed articles and forget deleted ones; returns how many changed."""
        with self._lock:
            generation = self.store.generation()
            if generation and self._state("generation") == generation:
                return 0
            with self._db as db:  # commits, or rolls back on an error
                db.execute("BEGIN IMMEDIATE")  # one writer at a time, whichever process
                live = self.store.live_fingerprints()
                indexed = dict(db.execute("SELECT article_id, fingerprint FROM member").fetchall())
                gone = [i for i in indexed if i not in live]
                changed = [i for i, fingerprint in live.items() if indexed.get(i) != fingerprint]
                for article_id in gone:
                    self._forget(db, article_id)
                articles: list[Article] = []
                for start in range(0, len(changed), FETCH_BATCH):
                    articles += self.store.get_articles(changed[start : start + FETCH_BATCH])
                for article in sorted(articles, key=lambda a: (a.published_at, a.id)):
                    self._group(db, article, live[article.id])
                db.execute("INSERT OR REPLACE INTO story_state (key, value) VALUES ('generation', ?)", (generation,))
            return len(gone) + len(changed)

    def _group(self, db: sqlite3.Connection, article: Article, fingerprint: str) -> None:
        """Put one (new or changed) article in the story of its most similar stored article, if any is
        similar enough; else in its own story (the one it had, if no other article is in it)."""
        previous = db.execute("SELECT story_id FROM member WHERE article_id = ?", (article.id,)).fetchone()
        self._forget(db, article.id)
        hashes = shingles(article.text)
        story_id = self._best_match(db, hashes)
        if story_id is None:
            story_id = previous[0] if previous and not self._members(db, [previous[0]]) else None
            story_id = story_id or self._new_story_id(db, article.id, fingerprint)
        db.execute(
            "INSERT INTO member (article_id, fingerprint, story_id, shingles, title, source, published_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (article.id, fingerprint, story_id, len(hashes), article.title, article.source, article.published_at),
        )
        db.executemany("INSERT INTO shingle (hash, article_id) VALUES (?, ?)", [(h, article.id) for h in hashes])

    def _best_match(self, db: sqlite3.Connection, hashes: set[int]) -> str | None:
        """The story of the stored article whose shingles contain the most of the smaller set, at or
        above the threshold (ties: the smaller story id, so the choice does not depend on row order)."""
        if not hashes:
            return None
        db.execute("CREATE TEMP TABLE IF NOT EXISTS probe (hash INTEGER PRIMARY KEY)")
        db.execute("DELETE FROM probe")
        db.executemany("INSERT OR IGNORE INTO probe (hash) VALUES (?)", [(h,) for h in hashes])
        # CROSS JOIN keeps this order (probe first, then the hash index); else SQLite scans every shingle.
        rows = db.execute(
            "SELECT m.story_id, m.shingles, COUNT(*) FROM probe p CROSS JOIN shingle s ON s.hash = p.hash"
            " CROSS JOIN member m ON m.article_id = s.article_id GROUP BY s.article_id"
        ).fetchall()
        scored = [(containment(shared, len(hashes), size), story) for story, size, shared in rows]
        best = min(scored, key=lambda pair: (-pair[0], pair[1]), default=None)
        return best[1] if best is not None and best[0] >= self.threshold else None

    @staticmethod
    def _new_story_id(db: sqlite3.Connection, article_id: str, fingerprint: str) -> str:
        """``s-`` and a hash of the article id; of the version too when another story has that id."""
        story_id = "s-" + hashlib.sha1(article_id.encode()).hexdigest()[:12]
        if db.execute("SELECT 1 FROM member WHERE story_id = ? LIMIT 1", (story_id,)).fetchone():
            story_id = "s-" + hashlib.sha1(f"{article_id}:{fingerprint}".encode()).hexdigest()[:12]
        return story_id

    @staticmethod
    def _forget(db: sqlite3.Connection, article_id: str) -> None:
        db.execute("DELETE FROM member WHERE article_id = ?", (article_id,))
        db.execute("DELETE FROM shingle WHERE article_id = ?", (article_id,))

    def _state(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM story_state WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else ""

    # -- reads ----------------------------------------------------------------------------

    def story_ids(self, article_ids: Iterable[str]) -> dict[str, str]:
        """Article id -> story id, for the grouped articles among these."""
        ids = list(dict.fromkeys(article_ids))
        found: dict[str, str] = {}
        for start in range(0, len(ids), 900):
            batch = ids[start : start + 900]
            marks = ",".join("?" * len(batch))
            with self._lock:
                found.update(
                    self._db.execute(f"SELECT article_id, story_id FROM member WHERE article_id IN ({marks})", batch)
                )
        return found

    def members(self, story_ids: Iterable[str]) -> dict[str, list[StoryArticle]]:
        """Story id -> its articles, oldest first."""
        with self._lock:
            return self._members(self._db, list(dict.fromkeys(story_ids)))

    @staticmethod
    def _members(db: sqlite3.Connection, story_ids: Sequence[str]) -> dict[str, list[StoryArticle]]:
        found: dict[str, list[StoryArticle]] = {}
        for start in range(0, len(story_ids), 900):
            batch = list(story_ids[start : start + 900])
            marks = ",".join("?" * len(batch))
            for story_id, *fields in db.execute(
                f"SELECT story_id, article_id, title, source, published_at FROM member WHERE story_id IN ({marks})"
                " ORDER BY published_at, article_id",
                batch,
            ):
                found.setdefault(story_id, []).append(StoryArticle(*fields))
        return found

    def stories(self, since: date | None = None) -> list[Story]:
        """Every story (synced first), newest first; ``since``: those with an article published that day or later."""
        self.sync()
        with self._lock:
            story_ids = [row[0] for row in self._db.execute("SELECT DISTINCT story_id FROM member")]
            grouped = self._members(self._db, story_ids)
        stories = [Story(story_id, articles) for story_id, articles in grouped.items()]
        if since is not None:
            stories = [s for s in stories if s.published_at[:10] >= since.isoformat()]
        return sorted(stories, key=lambda s: (s.published_at, s.id), reverse=True)
