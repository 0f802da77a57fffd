"""A BM25 index over the live chunks and articles, kept in step with the Chroma store.

Chroma's local mode has no lexical search, so newsdesk keeps its own. Postings live in memory
as numpy arrays: a query reads only the postings of its own terms, a few milliseconds at
100,000 chunks. They are persisted in SQLite (``DATA_DIR/lexical-<collection>.sqlite``), one
segment per sync, so start-up loads the index instead of re-reading the collection, and a
sync writes only what changed (segments are merged once there are ``MAX_SEGMENTS``).

A sync compares each article's live fingerprint in the store with the indexed one and fetches
only what changed. Every write bumps a version in SQLite, and a process whose version is stale
reloads, so a process sees another process's ingests and deletions without a restart, whether
the store is embedded or a shared Chroma server.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.store import ChunkHit, Store
from app.text.terms import STOP_STEMS, query_stems, tokens

Kind = Literal["chunk", "article"]
K1 = 1.2
B = 0.75
TITLE_WEIGHT: dict[Kind, float] = {"chunk": 0.4, "article": 2.0}  # a title word counts this many body words
MAX_SEGMENTS = 8
LOOKUP_BATCH = 900  # chunk ids per SQL lookup, well under SQLite's limit on query parameters
LAYOUT = "numpy-bm25/1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS doc (
    kind TEXT NOT NULL, row INTEGER NOT NULL, article_id TEXT NOT NULL, source TEXT NOT NULL,
    published_ts INTEGER, length REAL NOT NULL,
    chunk_id TEXT, title TEXT, url TEXT, published_at TEXT, section TEXT, chunk_index INTEGER,
    start INTEGER, "end" INTEGER, text TEXT,
    PRIMARY KEY (kind, row)
);
CREATE INDEX IF NOT EXISTS doc_article ON doc (article_id);
CREATE INDEX IF NOT EXISTS doc_chunk ON doc (chunk_id);
CREATE TABLE IF NOT EXISTS posting (
    kind TEXT NOT NULL, segment INTEGER NOT NULL, term TEXT NOT NULL, rows BLOB NOT NULL, weights BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS indexed_article (id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS index_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_HIT_COLUMNS = 'chunk_id, article_id, title, source, url, published_at, section, chunk_index, start, "end", text'
_CHUNK_COLUMNS = 'chunk_id, title, url, published_at, section, chunk_index, start, "end", text'
Rows = npt.NDArray[np.int64]
_DocRow = tuple[str, str, int | None, tuple[object, ...]]  # article id, source, published_ts, chunk fields
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LexicalFilters:
    sources: Sequence[str] = ()
    article_ids: Sequence[str] = ()
    since_ts: int | None = None
    until_ts: int | None = None


@dataclass
class _Postings:
    """One kind of document: per-row fields and per-term postings (rows, weighted term frequency)."""

    kind: Kind
    parts: dict[str, list[tuple[Rows, Floats]]] = field(default_factory=dict)
    lengths: Floats = field(default_factory=lambda: np.zeros(0))
    alive: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    article: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    source: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    published: Floats = field(default_factory=lambda: np.zeros(0))
    codes: dict[str, int] = field(default_factory=dict)  # article ids and sources -> small ints
    names: list[str] = field(default_factory=list)  # small ints -> article ids and sources

    def code(self, value: str) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.names)
            self.names.append(value)
        return code

    def grow(self, rows: int) -> None:
        """Room for ``rows`` rows; capacity doubles, so adding rows one by one stays linear."""
        if rows <= len(self.alive):
            return
        extra = max(rows, 2 * len(self.alive), 1024) - len(self.alive)
        self.lengths = np.concatenate([self.lengths, np.zeros(extra)])
        self.alive = np.concatenate([self.alive, np.zeros(extra, dtype=bool)])
        self.article = np.concatenate([self.article, np.full(extra, -1, dtype=np.int32)])
        self.source = np.concatenate([self.source, np.full(extra, -1, dtype=np.int32)])
        self.published = np.concatenate([self.published, np.full(extra, np.nan)])

    def set_doc(self, row: int, article_id: str, source: str, published_ts: int | None, length: float) -> None:
        self.grow(row + 1)
        self.alive[row] = True
        self.lengths[row] = length
        self.article[row] = self.code(article_id)
        self.source[row] = self.code(source)
        self.published[row] = np.nan if published_ts is None else float(published_ts)

    def add_part(self, term: str, rows: Rows, weights: Floats) -> None:
        self.parts.setdefault(term, []).append((rows, weights))

    def postings(self, term: str) -> tuple[Rows, Floats]:
        parts = self.parts.get(term)
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        if len(parts) > 1:
            parts[:] = [(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))]
        return parts[0]

    def mask(self, filters: LexicalFilters) -> npt.NDArray[np.bool_]:
        keep = self.alive.copy()
        if filters.sources:
            keep &= np.isin(self.source, [self.codes.get(s, -2) for s in filters.sources])
        if filters.article_ids:
            keep &= np.isin(self.article, [self.codes.get(a, -2) for a in filters.article_ids])
        with np.errstate(invalid="ignore"):
            if filters.since_ts is not None:
                keep &= self.published >= filters.since_ts
            if filters.until_ts is not None:
                keep &= self.published <= filters.until_ts
        return keep

    def scores(self, stems: Sequence[str], keep: npt.NDArray[np.bool_]) -> Floats:
        """BM25 of every row (0 for rows without a query term or outside ``keep``)."""
        total = max(int(self.alive.sum()), 1)
        average = float(self.lengths[self.alive].mean()) if self.alive.any() else 1.0
        scores = np.zeros(len(self.alive))
        for stem in stems:
            rows, weights = self.postings(stem)
            live = self.alive[rows]
            rows, weights = rows[live], weights[live]
            if not len(rows):
                continue
            idf = np.log(1 + (total - len(rows) + 0.5) / (len(rows) + 0.5))
            norm = K1 * (1 - B + B * self.lengths[rows] / average)
            scores[rows] += idf * weights * (K1 + 1) / (weights + norm)
        scores[~keep] = 0.0
        return scores


def _top(scores: Floats, k: int) -> Rows:
    hit = np.flatnonzero(scores > 0)
    if len(hit) > k:
        hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
    return hit[np.argsort(-scores[hit], kind="stable")]


class LexicalIndex:
    def __init__(self, path: Path, store: Store) -> None:
        self.path = path
        self.store = store
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._create()
        self._index: dict[Kind, _Postings] = {}
        self._version = ""
        self._generation = ""
        with self._lock:
            self._load()

    def close(self) -> None:
        self._db.close()

    def _create(self) -> None:
        """Create the tables; an index written in another layout is derived data: drop it and rebuild."""
        with self._transaction() as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            has_state = "index_state" in tables
            layout = db.execute("SELECT value FROM index_state WHERE key = 'layout'").fetchone() if has_state else None
            if tables and (layout is None or layout[0] != LAYOUT):
                for table in ("chunk_text", "article_text", "doc", "posting", "indexed_article", "index_state"):
                    db.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _SCHEMA.split(";"):
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO index_state (key, value) VALUES ('layout', ?)", (LAYOUT,))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _state(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM index_state WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else ""

    def _load(self) -> None:
        """Read the persisted index into memory."""
        self._index = {"chunk": _Postings("chunk"), "article": _Postings("article")}
        for kind, index in self._index.items():
            docs = self._db.execute(
                "SELECT row, article_id, source, published_ts, length FROM doc WHERE kind = ?", (kind,)
            ).fetchall()
            if not docs:
                continue
            at = np.asarray([d[0] for d in docs], dtype=np.int64)
            index.grow(int(at.max()) + 1)
            index.alive[at] = True
            index.lengths[at] = [d[4] for d in docs]
            index.article[at] = [index.code(d[1]) for d in docs]
            index.source[at] = [index.code(d[2]) for d in docs]
            index.published[at] = [np.nan if d[3] is None else float(d[3]) for d in docs]
        for kind, term, rows, weights in self._db.execute(
            "SELECT kind, term, rows, weights FROM posting ORDER BY segment"
        ):
            self._index[kind].add_part(term, np.frombuffer(rows, dtype=np.int64), np.frombuffer(weights))
        self._version = self._state("version")
        self._generation = self._state("generation")

    def sync(self) -> int:
        """Bring the index up to the store's live articles; returns how many articles changed."""
        with self._lock:
            generation = self.store.generation()
            if generation == self._generation and self._state("version") == self._version:
                return 0
            try:
                with self._transaction() as db:
                    if self._state("version") != self._version:
                        self._load()  # another process wrote the index
                    if self._state("generation") == generation:
                        return 0
                    live = self.store.live_fingerprints()
                    indexed = dict(db.execute("SELECT id, fingerprint FROM indexed_article").fetchall())
                    gone = [i for i in indexed if i not in live]
                    changed = [i for i, fp in live.items() if indexed.get(i) != fp]
                    self._remove(db, gone + changed)
                    segment = int(self._state("segments") or 0)
                    for batch_start in range(0, len(changed), 200):
                        batch = changed[batch_start : batch_start + 200]
                        self._add(db, segment, batch, live)
                        segment += 1
                    if segment > MAX_SEGMENTS:
                        self._merge(db)
                        segment = 1
                    self._version = uuid.uuid4().hex
                    self._generation = generation
                    db.executemany(
                        "INSERT OR REPLACE INTO index_state (key, value) VALUES (?, ?)",
                        [("generation", generation), ("version", self._version), ("segments", str(segment))],
                    )
            except BaseException:
                self._load()  # the memory may hold part of the write that was rolled back
                raise
            return len(gone) + len(changed)

    def _remove(self, db: sqlite3.Connection, article_ids: Sequence[str]) -> None:
        for article_id in article_ids:
            for kind, row in db.execute("SELECT kind, row FROM doc WHERE article_id = ?", (article_id,)).fetchall():
                self._index[kind].alive[row] = False
            db.execute("DELETE FROM doc WHERE article_id = ?", (article_id,))
            db.execute("DELETE FROM indexed_article WHERE id = ?", (article_id,))

    def _add(self, db: sqlite3.Connection, segment: int, article_ids: Sequence[str], live: dict[str, str]) -> None:
        """Index these articles and their live chunks as one new segment."""
        chunks: list[tuple[_DocRow, str, str]] = []
        for hit, ts in self.store.live_chunks(article_ids):
            details: tuple[object, ...] = (hit.chunk_id, hit.title, hit.url, hit.published_at, hit.section)
            details += (hit.chunk_index, hit.start, hit.end, hit.text)
            chunks.append(((hit.article_id, hit.source, ts, details), hit.text, hit.title))
        articles = [
            ((a.id, a.source, a.published_ts, ()), a.text, a.title) for a in self.store.get_articles(article_ids)
        ]
        self._add_docs(db, "chunk", segment, chunks)
        self._add_docs(db, "article", segment, articles)
        db.executemany(
            "INSERT OR REPLACE INTO indexed_article (id, fingerprint) VALUES (?, ?)",
            [(i, live[i]) for i in article_ids],
        )

    def _add_docs(
        self, db: sqlite3.Connection, kind: Kind, segment: int, docs: Sequence[tuple[_DocRow, str, str]]
    ) -> None:
        first = int(self._state(f"next_row:{kind}") or 0)
        index = self._index[kind]
        terms: list[tuple[int, Counter[str], Counter[str]]] = []
        records: list[tuple[object, ...]] = []
        for row, ((article_id, source, ts, details), body_text, title_text) in enumerate(docs, first):
            body, title = tokens(body_text), tokens(title_text)
            length = len(body) + TITLE_WEIGHT[kind] * len(title)
            terms.append((row, Counter(body), Counter(title)))
            index.set_doc(row, article_id, source, ts, length)
            records.append((kind, row, article_id, source, ts, length, *details))
        columns = "kind, row, article_id, source, published_ts, length" + (
            f", {_CHUNK_COLUMNS}" if kind == "chunk" else ""
        )
        marks = ",".join("?" * len(columns.split(",")))
        db.executemany(f"INSERT INTO doc ({columns}) VALUES ({marks})", records)
        db.execute(
            "INSERT OR REPLACE INTO index_state (key, value) VALUES (?, ?)",
            (f"next_row:{kind}", str(first + len(docs))),
        )
        self._write_postings(db, kind, segment, _invert(terms, TITLE_WEIGHT[kind]))

    def _write_postings(
        self, db: sqlite3.Connection, kind: Kind, segment: int, postings: dict[str, tuple[Rows, Floats]]
    ) -> None:
        db.executemany(
            "INSERT INTO posting (kind, segment, term, rows, weights) VALUES (?,?,?,?,?)",
            [(kind, segment, term, rows.tobytes(), weights.tobytes()) for term, (rows, weights) in postings.items()],
        )
        for term, (rows, weights) in postings.items():
            self._index[kind].add_part(term, rows, weights)

    def _merge(self, db: sqlite3.Connection) -> None:
        """Rewrite every kind's postings as one segment, without the rows of deleted documents."""
        db.execute("DELETE FROM posting")
        for kind, index in self._index.items():
            merged: dict[str, tuple[Rows, Floats]] = {}
            for term in list(index.parts):
                rows, weights = index.postings(term)
                live = index.alive[rows]
                if live.any():
                    merged[term] = (rows[live].copy(), weights[live].copy())
            index.parts = {}
            self._write_postings(db, kind, 0, merged)

    # ---- queries -----------------------------------------------------------------

    def search(self, query: str, k: int, filters: LexicalFilters | None = None) -> list[ChunkHit]:
        """Top-k chunks by BM25 (body words, and title words at ``TITLE_WEIGHT``)."""
        stems = query_stems(query)
        if not stems:
            return []
        with self._lock:
            index = self._index["chunk"]
            scores = index.scores(stems, index.mask(filters or LexicalFilters()))
            top = _top(scores, k)
            return self._hits([int(r) for r in top], scores)

    def search_articles(self, query: str, k: int, filters: LexicalFilters | None = None) -> list[tuple[str, float]]:
        """Top-k articles by BM25 over their whole text and title: (article id, score)."""
        stems = query_stems(query)
        if not stems:
            return []
        with self._lock:
            index = self._index["article"]
            scores = index.scores(stems, index.mask(filters or LexicalFilters()))
            return [(index.names[int(index.article[r])], float(scores[r])) for r in _top(scores, k)]

    def best_chunks(self, query: str, article_ids: Sequence[str]) -> dict[str, ChunkHit]:
        """The best-matching chunk of each of these articles."""
        stems = query_stems(query)
        if not stems or not article_ids:
            return {}
        with self._lock:
            index = self._index["chunk"]
            scores = index.scores(stems, index.mask(LexicalFilters(article_ids=article_ids)))
            best: dict[int, int] = {}
            for row in _top(scores, len(scores)):
                best.setdefault(int(index.article[row]), int(row))
            hits = self._hits(list(best.values()), scores)
        return {hit.article_id: hit for hit in hits}

    def indexed_chunks(self, scored: Sequence[tuple[str, float]]) -> list[ChunkHit]:
        """The chunks among these (chunk id, score) that are indexed, i.e. live as of the last
        sync, in the given order: the dense leg's candidates with their text, from this index."""
        found: dict[str, Sequence[object]] = {}
        with self._lock:
            for start in range(0, len(scored), LOOKUP_BATCH):
                batch = [chunk_id for chunk_id, _ in scored[start : start + LOOKUP_BATCH]]
                marks = ",".join("?" * len(batch))
                for row in self._db.execute(f"SELECT {_HIT_COLUMNS} FROM doc WHERE chunk_id IN ({marks})", batch):
                    found[str(row[0])] = row
        return [_hit(found[chunk_id], score) for chunk_id, score in scored if chunk_id in found]

    def document_frequency(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks contain each term, and how many chunks there are (for IDF)."""
        with self._lock:
            index = self._index["chunk"]
            counts = {}
            for term in terms:
                stems = [s for s in tokens(term) if s not in STOP_STEMS] or tokens(term)
                counts[term] = min((int(index.alive[index.postings(s)[0]].sum()) for s in stems), default=0)
            return counts, int(index.alive.sum())

    def _hits(self, rows: list[int], scores: Floats) -> list[ChunkHit]:
        if not rows:
            return []
        found = {
            int(r[0]): r[1:]
            for r in self._db.execute(
                f"SELECT row, {_HIT_COLUMNS} FROM doc WHERE kind = 'chunk' AND row IN ({','.join('?' * len(rows))})",
                rows,
            )
        }
        return [_hit(found[row], float(scores[row])) for row in rows if row in found]


def _invert(
    docs: Sequence[tuple[int, Counter[str], Counter[str]]], title_weight: float
) -> dict[str, tuple[Rows, Floats]]:
    """Per-document term counts -> per-term postings (rows, body count + title_weight x title count)."""
    rows: dict[str, list[int]] = {}
    weights: dict[str, list[float]] = {}
    for row, body, title in docs:
        for term in body.keys() | title.keys():
            if term in STOP_STEMS:
                continue
            rows.setdefault(term, []).append(row)
            weights.setdefault(term, []).append(body.get(term, 0) + title_weight * title.get(term, 0))
    return {t: (np.asarray(rows[t], dtype=np.int64), np.asarray(weights[t], dtype=np.float64)) for t in rows}


def _hit(row: Sequence[object], score: float) -> ChunkHit:
    return ChunkHit(
        chunk_id=str(row[0]),
        article_id=str(row[1]),
        title=str(row[2]),
        source=str(row[3]),
        url=str(row[4]),
        published_at=str(row[5]),
        section=str(row[6]),
        chunk_index=int(str(row[7])),
        start=int(str(row[8])),
        end=int(str(row[9])),
        text=str(row[10]),
        score=score,
    )
