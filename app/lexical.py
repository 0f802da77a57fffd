"""A BM25 index over the live chunks, in SQLite FTS5, kept in step with the Chroma store.

Chroma's local mode has no lexical search, so each process keeps this index on local
disk (``DATA_DIR/lexical-<collection>.sqlite``): persisted, so start-up reads nothing
it already has, and synced from the store whenever the store's generation token has
changed. The sync compares each article's live fingerprint with the indexed one and
fetches only what changed, so a process sees another process's ingests and deletions
without a restart, whether the store is embedded or a shared Chroma server.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.store import ChunkHit, Store

_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_text USING fts5(
    text, title,
    chunk_id UNINDEXED, article_id UNINDEXED, source UNINDEXED, url UNINDEXED,
    published_at UNINDEXED, published_ts UNINDEXED, section UNINDEXED,
    chunk_index UNINDEXED, start UNINDEXED, "end" UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS article_text USING fts5(
    text, title, article_id UNINDEXED, source UNINDEXED, published_ts UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS indexed_article (id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS index_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = (
    'text, title, chunk_id, article_id, source, url, published_at, published_ts, section, chunk_index, start, "end"'
)
_STOPWORD_TEXT = """
    a an and are as at be by did do does for from had has have he her his how in is it its of on or
    she that the their them they this to was were what when where which who whom whose why will with
    would you your about after before said says than then there these those into over under up down
    out not no yes can could should may might must also just more most many much some any all each
"""
# Words every news question uses ("this week", "recently announced") that match everything.
_NEWS_FILLER = (
    "week weeks recently recent latest new newly announced announce according following officially"
    " reportedly reported report called named known first"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split()) | frozenset(_NEWS_FILLER.split())
_WORD = re.compile(r"[\w][\w'’.-]*[\w]|[\w]", re.UNICODE)


@dataclass(frozen=True)
class LexicalFilters:
    sources: Sequence[str] = ()
    article_ids: Sequence[str] = ()
    since_ts: int | None = None
    until_ts: int | None = None


def _conditions(filters: LexicalFilters) -> tuple[str, list[str | int]]:
    clauses: list[str] = []
    params: list[str | int] = []
    if filters.sources:
        clauses.append(f"source IN ({','.join('?' * len(filters.sources))})")
        params.extend(filters.sources)
    if filters.article_ids:
        clauses.append(f"article_id IN ({','.join('?' * len(filters.article_ids))})")
        params.extend(filters.article_ids)
    if filters.since_ts is not None:
        clauses.append("published_ts >= ?")
        params.append(filters.since_ts)
    if filters.until_ts is not None:
        clauses.append("published_ts <= ?")
        params.append(filters.until_ts)
    return "".join(f" AND {c}" for c in clauses), params


def _match_expression(query: str) -> str | None:
    terms = query_terms(query)
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms) if terms else None


def _lexical_hit(row: Sequence[object]) -> ChunkHit:
    return ChunkHit(
        text=str(row[0]),
        title=str(row[1]),
        chunk_id=str(row[2]),
        article_id=str(row[3]),
        source=str(row[4]),
        url=str(row[5]),
        published_at=str(row[6]),
        section=str(row[8]),
        chunk_index=int(str(row[9])),
        start=int(str(row[10])),
        end=int(str(row[11])),
        score=-float(str(row[12])),
    )


def query_terms(text: str) -> list[str]:
    """Content words of a question, lower-cased, in order, without repeats."""
    terms: list[str] = []
    for match in _WORD.finditer(text.lower()):
        word = match.group().replace("’", "'").strip(".'-")
        if word and word not in STOPWORDS and word not in terms:
            terms.append(word)
    return terms


class LexicalIndex:
    def __init__(self, path: Path, store: Store) -> None:
        self.path = path
        self.store = store
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def sync(self) -> int:
        """Bring the index up to the store's live articles; returns how many articles changed."""
        with self._lock:
            generation = self.store.generation()
            row = self._db.execute("SELECT value FROM index_state WHERE key = 'generation'").fetchone()
            if row is not None and row[0] == generation:
                return 0
            live = self.store.live_fingerprints()
            indexed = dict(self._db.execute("SELECT id, fingerprint FROM indexed_article").fetchall())
            gone = [i for i in indexed if i not in live]
            changed = [i for i, fp in live.items() if indexed.get(i) != fp]
            with self._transaction() as db:
                for article_id in gone + changed:
                    db.execute("DELETE FROM chunk_text WHERE article_id = ?", (article_id,))
                    db.execute("DELETE FROM article_text WHERE article_id = ?", (article_id,))
                    db.execute("DELETE FROM indexed_article WHERE id = ?", (article_id,))
                for batch_start in range(0, len(changed), 200):
                    batch = changed[batch_start : batch_start + 200]
                    hits = self.store.live_chunks(batch)
                    db.executemany(
                        f"INSERT INTO chunk_text ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        [
                            (
                                h.text,
                                h.title,
                                h.chunk_id,
                                h.article_id,
                                h.source,
                                h.url,
                                h.published_at,
                                ts,
                                h.section,
                                h.chunk_index,
                                h.start,
                                h.end,
                            )
                            for h, ts in hits
                        ],
                    )
                    db.executemany(
                        "INSERT INTO article_text (text, title, article_id, source, published_ts) VALUES (?,?,?,?,?)",
                        [(a.text, a.title, a.id, a.source, a.published_ts) for a in self.store.get_articles(batch)],
                    )
                    db.executemany(
                        "INSERT OR REPLACE INTO indexed_article (id, fingerprint) VALUES (?, ?)",
                        [(i, live[i]) for i in batch],
                    )
                db.execute("INSERT OR REPLACE INTO index_state (key, value) VALUES ('generation', ?)", (generation,))
            return len(gone) + len(changed)

    def search(self, query: str, k: int, filters: LexicalFilters | None = None) -> list[ChunkHit]:
        """Top-k chunks by BM25 (text weighted over title)."""
        match = _match_expression(query)
        if match is None:
            return []
        where, params = _conditions(filters or LexicalFilters())
        sql = (
            f"SELECT {_COLUMNS}, bm25(chunk_text, 1.0, 0.4) AS rank FROM chunk_text "
            f"WHERE chunk_text MATCH ? {where} ORDER BY rank LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, [match, *params, k]).fetchall()
        return [_lexical_hit(row) for row in rows]

    def search_articles(self, query: str, k: int, filters: LexicalFilters | None = None) -> list[tuple[str, float]]:
        """Top-k articles by BM25 over their whole text and title: (article id, score)."""
        match = _match_expression(query)
        if match is None:
            return []
        where, params = _conditions(filters or LexicalFilters())
        sql = (
            "SELECT article_id, bm25(article_text, 1.0, 2.0) AS rank FROM article_text "
            f"WHERE article_text MATCH ? {where} ORDER BY rank LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, [match, *params, k]).fetchall()
        return [(str(r[0]), -float(r[1])) for r in rows]

    def best_chunks(self, query: str, article_ids: Sequence[str]) -> dict[str, ChunkHit]:
        """The best-matching chunk of each of these articles."""
        match = _match_expression(query)
        if match is None or not article_ids:
            return {}
        marks = ",".join("?" * len(article_ids))
        sql = (
            f"SELECT {_COLUMNS}, bm25(chunk_text, 1.0, 0.4) AS rank FROM chunk_text "
            f"WHERE chunk_text MATCH ? AND article_id IN ({marks}) ORDER BY rank"
        )
        best: dict[str, ChunkHit] = {}
        with self._lock:
            for row in self._db.execute(sql, [match, *article_ids]):
                best.setdefault(str(row[3]), _lexical_hit(row))
        return best

    def document_frequency(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks contain each term, and how many chunks there are (for IDF)."""
        with self._lock:
            total = int(self._db.execute("SELECT count(*) FROM chunk_text").fetchone()[0])
            counts = {}
            for term in terms:
                quoted = '"' + term.replace('"', '""') + '"'
                counts[term] = int(
                    self._db.execute("SELECT count(*) FROM chunk_text WHERE chunk_text MATCH ?", (quoted,)).fetchone()[
                        0
                    ]
                )
        return counts, total
