"""Stage 3b: chunks and their vectors in Chroma, plus a registry of live article versions.

Three collections: ``<name>`` holds chunks (vector, text, metadata); ``<name>-sentences``
holds the vector of every sentence of every chunk, so answering a question embeds only
the question; ``<name>-articles`` holds one record per article (full text and fields, the
fingerprint of its live version). The registry record is the commit point of an ingest:
chunks and sentences are written first, then the registry, then stale records of the
previous version are deleted.
Queries drop chunks whose fingerprint is not the live one, so a crash at any step
leaves search showing either the old version or the new one, never a mix. Dropping them never
starves a query: it asks Chroma for more neighbours until enough live ones are found.

Each chunk write first records its versions as pending in ``<name>-meta`` (host, process id,
time), and the commit removes that record. Opening the store (and starting an ingest) sweeps the
chunks and sentences of abandoned pending writes: an ingest killed before its commit, an hour ago.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import chromadb
import chromadb.errors
import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Metadata, QueryResult, Where
from chromadb.config import Settings as ChromaSettings

from app.article import Article, Chunk, Section
from app.config import Settings
from app.errors import EmbeddingMismatchError, NotFoundError, StoreError

if TYPE_CHECKING:
    from app.embed import Embedder

log = logging.getLogger("newsdesk.store")
T = TypeVar("T")
SCHEMA_VERSION = 1
# File times tick coarsely (a few ms): a generation read is reused only if the database file was
# last written at least this long before the read began, so a write in the same tick is not missed.
STAMP_MARGIN_S = 0.05
REGISTRY_VECTOR = [1.0]  # the registry needs no vectors; Chroma requires one per record
# The chunks of an ingest killed before its commit are kept this long after its last write, so
# running it again reuses them; then they are swept. A running ingest rewrites its pending record
# with every batch it writes, and commits within minutes of its last one.
PENDING_WRITE_RETENTION_S = 3600.0
FINGERPRINT_CLOCK_SLACK_S = 300.0  # how far the clocks of processes sharing a store may disagree
NEAREST_GROWTH = 4  # each retry of a starved nearest-chunk query asks for this many times more
QUERY_ATTEMPTS = 3
DELETED_MEANWHILE = "Error finding id"  # Chroma's message when a query meets a concurrent delete
_ARTICLE_FIELDS = ("title", "source", "url", "published_at", "author", "dateline", "summary", "origin")


@dataclass(frozen=True)
class ArticleRecord:
    """What the registry knows about a stored article, without its text."""

    id: str
    title: str
    source: str
    url: str
    published_at: str
    fingerprint: str
    chunk_count: int
    needs_cleanup: bool
    origin: str
    ingested_at: float


@dataclass(frozen=True)
class ArticleVersion:
    """An article as it is about to be stored: its fingerprint and its chunks."""

    article: Article
    fingerprint: str
    chunks: Sequence[Chunk]


@dataclass(frozen=True)
class StoreCounts:
    """Live data: committed articles and their chunks and sentences. ``orphan_chunks`` are stored
    chunks of no live version: an ingest writing or killed before its commit, or a replaced version
    whose chunks are not deleted yet."""

    articles: int
    chunks: int
    sentences: int
    orphan_chunks: int


@dataclass(frozen=True)
class PendingWrite:
    """A version whose chunks a process is writing, or was when it last wrote, and has not committed."""

    id: str
    article_id: str
    fingerprint: str
    host: str
    pid: int
    written_at: float

    def abandoned(self) -> bool:
        """Not written to for the retention time, by a process that is gone: on this host, one
        whose id no process has (a reused id keeps it); on another host, any."""
        if time.time() - self.written_at < PENDING_WRITE_RETENTION_S:
            return False
        return self.host != socket.gethostname() or not _process_exists(self.pid)


@dataclass(frozen=True)
class ChunkHit:
    chunk_id: str
    article_id: str
    title: str
    source: str
    url: str
    published_at: str
    section: str
    chunk_index: int
    start: int
    end: int
    text: str
    score: float


@contextmanager
def chroma_errors(action: str) -> Iterator[None]:
    """Translate Chroma and transport exceptions into StoreError, in one place."""
    try:
        yield
    except (chromadb.errors.ChromaError, httpx.HTTPError, ConnectionError) as error:
        raise StoreError(f"Chroma failed while {action}: {error}") from error
    except ValueError as error:
        if "connect" in str(error).lower():
            raise StoreError(f"cannot reach the Chroma server while {action}: {error}") from error
        raise


def connect(settings: Settings) -> ClientAPI:
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    with chroma_errors("connecting"):
        if settings.chroma_host:
            return chromadb.HttpClient(
                host=settings.chroma_host, port=settings.chroma_port, ssl=settings.chroma_ssl, settings=chroma_settings
            )
        path = settings.resolved_chroma_path
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


class Store:
    def __init__(self, client: ClientAPI, name: str, embedder: Embedder | None, sentences: bool = True) -> None:
        """Open (or, with an embedder, create) the collections. Without an embedder the
        store is read-only: listing and showing articles need no model. With ``sentences``
        false, sentence vectors are neither read nor written (the learned reader embeds its own
        candidates); those of an earlier store are still deleted with their articles."""
        self.client = client
        self._writes_sentences = sentences
        self.name = name
        self.dimension = 0
        settings = client.get_settings()
        self._database = Path(settings.persist_directory) / "chroma.sqlite3" if settings.is_persistent else None
        self._seen: tuple[tuple[int, int, int], str] | None = None  # (database file stamp, generation)
        self._fingerprints = _LiveFingerprints()
        with chroma_errors(f"opening collection '{name}'"):
            if embedder is None:
                self._chunks = self._existing(name)
                self._registry = self._existing(f"{name}-articles")
                self._meta = self._existing(f"{name}-meta")
                self._sentences = self._existing(f"{name}-sentences")
                return
            self._chunks = self._existing(name)
            if self._chunks is None:  # a new collection records the model that fills it
                self._chunks = client.get_or_create_collection(
                    name,
                    embedding_function=None,
                    metadata={
                        "embedding_model": embedder.name,
                        "embedding_dim": embedder.dimension,
                        "schema_version": SCHEMA_VERSION,
                    },
                    configuration={"hnsw": {"space": "cosine"}},
                )
            self._registry = client.get_or_create_collection(f"{name}-articles", embedding_function=None)
            self._meta = client.get_or_create_collection(f"{name}-meta", embedding_function=None)
            self._sentences = client.get_or_create_collection(
                f"{name}-sentences", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
        recorded = self._chunks.metadata or {}
        self.dimension = int(recorded.get("embedding_dim", 0))
        if recorded.get("embedding_model") != embedder.name:
            raise EmbeddingMismatchError(
                f"collection '{name}' was built with {recorded.get('embedding_model')} "
                f"({self.dimension} dims) but the settings ask for {embedder.name}; "
                "use another NEWSDESK_COLLECTION, or the model the collection was built with"
            )
        self.sweep()

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder | None = None) -> Store:
        """Sentence vectors are kept only for the heuristic scorer, which reads them."""
        return cls(connect(settings), settings.collection, embedder, sentences=settings.reader == "heuristic")

    def _existing(self, name: str) -> Collection | None:
        try:
            return self.client.get_collection(name, embedding_function=None)
        except chromadb.errors.NotFoundError:
            return None

    @property
    def chunks(self) -> Collection:
        if self._chunks is None:
            raise StoreError("this store was opened read-only and has no collection yet")
        return self._chunks

    @property
    def registry(self) -> Collection:
        if self._registry is None:
            raise StoreError("this store was opened read-only and has no collection yet")
        return self._registry

    @property
    def keeps_sentences(self) -> bool:
        """Whether sentence vectors are read and written (see ``sentences`` above)."""
        return self._sentences is not None and self._writes_sentences

    @property
    def embedding_model(self) -> str | None:
        return str((self._chunks.metadata or {}).get("embedding_model")) if self._chunks else None

    # ---- reads -------------------------------------------------------------------

    def records(self, ids: Sequence[str]) -> dict[str, ArticleRecord]:
        if not ids or self._registry is None:
            return {}
        with chroma_errors("reading the article registry"):
            got = self._registry.get(ids=list(ids), include=["metadatas"])
        return {i: _record(i, m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)}

    def records_with_origin(self, origin: str) -> list[ArticleRecord]:
        if self._registry is None:
            return []
        with chroma_errors("reading the article registry"):
            got = self._registry.get(where={"origin": origin}, include=["metadatas"])
        return [_record(i, m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)]

    def list_articles(self, limit: int | None = None, offset: int = 0) -> list[ArticleRecord]:
        if self._registry is None:
            return []
        with chroma_errors("listing articles"):
            got = self._registry.get(include=["metadatas"])
        records = [_record(i, m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)]
        records.sort(key=lambda r: (r.published_at, r.title), reverse=True)
        return records[offset : None if limit is None else offset + limit]

    def get_article(self, article_id: str) -> Article:
        got = None
        if self._registry is not None:
            with chroma_errors("reading an article"):
                got = self._registry.get(ids=[article_id], include=["metadatas", "documents"])
        if not got or not got["ids"]:
            raise NotFoundError(article_id)
        return _article(article_id, (got["metadatas"] or [{}])[0], (got["documents"] or [""])[0] or "")

    def generation(self) -> str:
        """A token that changes whenever the set of live articles changes. An embedded store
        reads it again only when Chroma's database file changed (any process writes it)."""
        if self._meta is None:
            return ""
        stamp = self._database_stamp()
        seen = self._seen
        if stamp is not None and seen is not None and seen[0] == stamp:
            return seen[1]
        started = time.time_ns()
        with chroma_errors("reading the store generation"):
            got = self._meta.get(ids=["generation"], include=["metadatas"])
        token = str((got["metadatas"] or [{}])[0].get("token", "")) if got["ids"] else ""
        if stamp is not None and stamp[0] < started - STAMP_MARGIN_S * 1e9:
            self._seen = (stamp, token)
        return token

    def _database_stamp(self) -> tuple[int, int, int] | None:
        """(modification time, size, inode) of the embedded database file; None for a Chroma server."""
        if self._database is None:
            return None
        try:
            info = os.stat(self._database)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _bump_generation(self) -> None:
        if self._meta is None:
            return
        with chroma_errors("updating the store generation"):
            self._meta.upsert(
                ids=["generation"],
                embeddings=np.asarray([REGISTRY_VECTOR]),
                metadatas=[{"token": uuid.uuid4().hex, "at": time.time()}],
            )

    def live_fingerprints(self) -> dict[str, str]:
        """Every live article's fingerprint. The registry is read whole once; after that a change of
        generation costs its ids and the records committed since the last read (each commit stamps
        ``ingested_at``), so an ingest into a store of 10k articles reads milliseconds, not seconds."""
        if self._registry is None:
            return {}
        return self._fingerprints.read(self.generation(), self._read_fingerprints)

    def _read_fingerprints(self, known: dict[str, str] | None, since: float) -> dict[str, str]:
        with chroma_errors("reading the article registry"):
            if known is None:
                got = self.registry.get(include=["metadatas"])
                return {i: _record(i, m).fingerprint for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)}
            ids = self.registry.get(include=[])["ids"]
            committed_since = cast(Where, {"ingested_at": {"$gte": since}})
            recent = self.registry.get(where=committed_since, include=["metadatas"])
        current = {i: known[i] for i in ids if i in known}
        current.update(
            {i: _record(i, m).fingerprint for i, m in zip(recent["ids"], recent["metadatas"] or [], strict=True)}
        )
        current.update({i: r.fingerprint for i, r in self.records([i for i in ids if i not in current]).items()})
        return current

    def live_chunks(self, article_ids: Sequence[str]) -> list[tuple[ChunkHit, int | None]]:
        """Every live chunk of these articles, with its publication timestamp."""
        live = {i: r.fingerprint for i, r in self.records(article_ids).items()}
        if not live or self._chunks is None:
            return []
        with chroma_errors("reading chunks"):
            only_these = cast(Where, {"article_id": {"$in": list(live)}})
            got = self._chunks.get(where=only_these, include=["documents", "metadatas"])
        out = []
        for cid, meta, doc in zip(got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True):
            if live.get(str(meta["article_id"])) == meta["fingerprint"]:
                ts = meta.get("published_ts")
                out.append((_hit(cid, meta, doc or "", 0.0), int(ts) if isinstance(ts, int | float) else None))
        return out

    def get_articles(self, article_ids: Sequence[str]) -> list[Article]:
        """The stored articles among these ids (missing ids are skipped)."""
        if not article_ids or self._registry is None:
            return []
        with chroma_errors("reading articles"):
            got = self._registry.get(ids=list(article_ids), include=["metadatas", "documents"])
        return [
            _article(i, m, d or "")
            for i, m, d in zip(got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True)
        ]

    def sentence_vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """Stored vectors of these sentences (see ``sentence_id``); ids not stored are left out."""
        if not ids or self._sentences is None or not self.keeps_sentences:
            return {}
        with chroma_errors("reading sentence vectors"):
            got = self._sentences.get(ids=list(dict.fromkeys(ids)), include=["embeddings"])
        vectors = got["embeddings"] if got["embeddings"] is not None else []
        return {i: [float(x) for x in v] for i, v in zip(got["ids"], vectors, strict=True)}

    def existing_sentence_ids(self, ids: Sequence[str]) -> set[str]:
        return _existing_ids(self._sentences, ids, "reading sentences")

    def existing_chunk_ids(self, ids: Sequence[str]) -> set[str]:
        return _existing_ids(self._chunks, ids, "reading chunks")

    def chunk_count(self) -> int:
        if self._chunks is None:
            return 0
        with chroma_errors("counting chunks"):
            return self._chunks.count()

    def sentence_count(self) -> int:
        if self._sentences is None:
            return 0
        with chroma_errors("counting sentences"):
            return self._sentences.count()

    def article_count(self) -> int:
        if self._registry is None:
            return 0
        with chroma_errors("counting articles"):
            return self._registry.count()

    def nearest(self, embedding: list[float], n: int, where: Where | None = None) -> list[tuple[str, float]]:
        """The ids of the ``n`` nearest chunks by cosine similarity, live or not, with their
        similarity (1 - distance); see ``nearest_kept`` for the live ones."""
        if self._chunks is None:
            return []
        vector = np.asarray([embedding], dtype=np.float32)
        with chroma_errors("searching"):
            got = _query_past_deletes(self._chunks, vector, n, where)
        return [(i, 1.0 - float(d)) for i, d in zip(got["ids"][0], (got["distances"] or [[]])[0], strict=True)]

    def nearest_kept(
        self,
        embedding: list[float],
        wanted: int,
        keep: Callable[[list[tuple[str, float]]], list[T]],
        where: Where | None = None,
    ) -> list[T]:
        """The first ``wanted`` nearest chunks that ``keep`` keeps from a ranked list of (chunk id,
        similarity): the caller's live chunks (see ``LexicalIndex.indexed_chunks``)."""

        def fetch(n: int) -> tuple[int, list[T]]:
            nearest = self.nearest(embedding, n, where)
            return len(nearest), keep(nearest)

        return _until_enough(wanted, fetch)

    def query(self, embedding: list[float], k: int, where: Where | None = None) -> list[ChunkHit]:
        """Top-k live chunks by cosine similarity (score = 1 - distance)."""
        if self._chunks is None:
            return []
        scored = self.nearest_kept(embedding, k, self._live_only, where)
        if not scored:
            return []
        with chroma_errors("searching"):
            got = self._chunks.get(ids=[i for i, _ in scored], include=["documents", "metadatas"])
        found = {i: (m, d) for i, m, d in zip(got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True)}
        return [_hit(i, found[i][0], found[i][1] or "", score) for i, score in scored if i in found]

    def _live_only(self, scored: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """The (chunk id, similarity) pairs of chunks of their article's live version."""
        live = self.records(sorted({i.rsplit(":", 2)[0] for i, _ in scored}))
        versions = {_version_key(r.id, r.fingerprint) for r in live.values()}
        return [(i, score) for i, score in scored if _version_of(i) in versions]

    def counts(self) -> StoreCounts:
        """Live articles, chunks and sentences; stored chunks of no live version apart."""
        orphan_chunks: set[str] = set()
        orphan_sentences: set[str] = set()
        with chroma_errors("counting orphan chunks"):
            for version in self._versions_not_live():
                orphan_chunks.update(self.chunks.get(where=version, include=[])["ids"])
                if self._sentences is not None:
                    orphan_sentences.update(self._sentences.get(where=version, include=[])["ids"])
        return StoreCounts(
            articles=self.article_count(),
            chunks=max(self.chunk_count() - len(orphan_chunks), 0),
            sentences=max(self.sentence_count() - len(orphan_sentences), 0),
            orphan_chunks=len(orphan_chunks),
        )

    def _versions_not_live(self) -> list[Where]:
        """Filters on the chunks of versions that are stored but not live: pending writes, and
        previous versions of replaced articles not cleaned up yet."""
        pending = self._pending_writes()
        live = self._live_of(pending)
        versions = {(p.article_id, p.fingerprint, "$eq") for p in pending if live.get(p.article_id) != p.fingerprint}
        if self._registry is not None:
            with chroma_errors("reading the article registry"):
                got = self._registry.get(where={"needs_cleanup": True}, include=["metadatas"])
            for article_id, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                versions.add((article_id, str((meta or {}).get("fingerprint", "")), "$ne"))
        return [_version(article_id, {test: fingerprint}) for article_id, fingerprint, test in versions]

    def _live_of(self, pending: Sequence[PendingWrite]) -> dict[str, str]:
        """Article id -> live fingerprint, for the articles of these pending writes."""
        return {i: r.fingerprint for i, r in self.records(sorted({p.article_id for p in pending})).items()}

    def _pending_writes(self) -> list[PendingWrite]:
        if self._meta is None:
            return []
        with chroma_errors("reading pending writes"):
            got = self._meta.get(where={"kind": "pending"}, include=["metadatas"])
        return [_pending_write(i, m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)]

    # ---- writes ------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete the chunks and sentences of abandoned pending writes: ingests that died before their
        commit (see ``PENDING_WRITE_RETENTION_S``). Returns how many chunks were deleted."""
        pending = self._pending_writes()
        if not pending:
            return 0
        live = self._live_of(pending)
        writers: dict[tuple[str, str], list[PendingWrite]] = {}
        for write in pending:
            writers.setdefault((write.article_id, write.fingerprint), []).append(write)
        finished: list[str] = []
        swept = 0
        with chroma_errors("sweeping chunks of killed ingests"):
            for (article_id, fingerprint), writes in writers.items():
                committed = live.get(article_id) == fingerprint
                if not committed and not all(w.abandoned() for w in writes):
                    continue
                if not committed:
                    version = _version(article_id, {"$eq": fingerprint})
                    ids = self.chunks.get(where=version, include=[])["ids"]
                    if ids:
                        self.chunks.delete(ids=ids)
                    if self._sentences is not None:
                        self._sentences.delete(where=version)
                    swept += len(ids)
                    log.info("swept %d chunks of %s, whose ingest died before its commit", len(ids), article_id)
                finished += [w.id for w in writes]
            if finished and self._meta is not None:
                self._meta.delete(ids=finished)
        return swept

    def write_chunks(self, versions: Sequence[ArticleVersion], vectors: dict[str, list[float]]) -> None:
        """Record the versions as pending writes, then upsert the chunks that have a vector (the
        others are stored already), in few calls."""
        wrong = {len(v) for v in vectors.values()} - {self.dimension}
        if wrong:
            raise EmbeddingMismatchError(
                f"collection '{self.name}' holds {self.dimension}-dim vectors; the model gave {wrong.pop()} dims"
            )
        self._mark_pending(versions)
        ids: list[str] = []
        documents: list[str] = []
        metadatas: list[Metadata] = []
        for version in versions:
            for chunk in version.chunks:
                cid = chunk_id(version.article.id, version.fingerprint, chunk.index)
                if cid in vectors:
                    ids.append(cid)
                    documents.append(chunk.text)
                    metadatas.append(_chunk_metadata(version.article, version.fingerprint, chunk))
        if not ids:
            return
        step = self.client.get_max_batch_size()
        with chroma_errors("writing chunks"):
            for offset in range(0, len(ids), step):
                batch = ids[offset : offset + step]
                self.chunks.upsert(
                    ids=batch,
                    embeddings=np.asarray([vectors[i] for i in batch], dtype=np.float32),
                    documents=documents[offset : offset + step],
                    metadatas=metadatas[offset : offset + step],
                )

    def write_sentences(self, sentences: Sequence[tuple[str, str, str]], vectors: Sequence[list[float]]) -> None:
        """Upsert sentence vectors: ``sentences`` are (sentence id, article id, fingerprint)."""
        if not sentences or self._sentences is None or not self.keeps_sentences:
            return
        step = self.client.get_max_batch_size()
        with chroma_errors("writing sentence vectors"):
            for offset in range(0, len(sentences), step):
                batch = sentences[offset : offset + step]
                self._sentences.upsert(
                    ids=[i for i, _, _ in batch],
                    embeddings=np.asarray(vectors[offset : offset + step], dtype=np.float32),
                    metadatas=[{"article_id": a, "fingerprint": f} for _, a, f in batch],
                )

    def commit(self, versions: Sequence[ArticleVersion], replacing: set[str]) -> None:
        """Make these versions the live ones: the commit point of an ingest. Articles in
        ``replacing`` are marked for cleanup until their old chunks are deleted."""
        if not versions:
            return
        metadatas: list[Metadata] = []
        for version in versions:
            article = version.article
            meta: dict[str, str | int | float | bool] = {key: getattr(article, key) for key in _ARTICLE_FIELDS}
            meta.update(
                fingerprint=version.fingerprint,
                chunk_count=len(version.chunks),
                needs_cleanup=article.id in replacing,
                ingested_at=time.time(),
                quick_looks=json.dumps(article.quick_looks),
                sections=json.dumps([[s.name, s.start, s.end] for s in article.sections]),
            )
            if article.published_ts is not None:
                meta["published_ts"] = article.published_ts
            metadatas.append(meta)
        with chroma_errors("committing articles"):
            self.registry.upsert(
                ids=[v.article.id for v in versions],
                embeddings=np.asarray([REGISTRY_VECTOR] * len(versions)),
                documents=[v.article.text for v in versions],
                metadatas=metadatas,
            )
        self._bump_generation()
        if self._meta is not None:
            with chroma_errors("committing articles"):
                self._meta.delete(ids=[_pending_id(v.article.id, v.fingerprint) for v in versions])

    def _mark_pending(self, versions: Sequence[ArticleVersion]) -> None:
        if not versions or self._meta is None:
            return
        now = time.time()
        with chroma_errors("recording pending writes"):
            self._meta.upsert(
                ids=[_pending_id(v.article.id, v.fingerprint) for v in versions],
                embeddings=np.asarray([REGISTRY_VECTOR] * len(versions)),
                metadatas=[
                    {
                        "kind": "pending",
                        "article_id": v.article.id,
                        "fingerprint": v.fingerprint,
                        "host": socket.gethostname(),
                        "pid": os.getpid(),
                        "written_at": now,
                    }
                    for v in versions
                ],
            )

    def delete_stale_chunks(self, article_id: str, live_fingerprint: str) -> None:
        with chroma_errors("deleting stale chunks"):
            stale = _version(article_id, {"$ne": live_fingerprint})
            self.chunks.delete(where=stale)
            if self._sentences is not None:
                self._sentences.delete(where=stale)
            self.registry.update(ids=[article_id], metadatas=[{"needs_cleanup": False}])

    def delete_article(self, article_id: str) -> None:
        """Registry first: the article disappears from search at once, then its chunks go."""
        if not self.records([article_id]):
            raise NotFoundError(article_id)
        with chroma_errors("deleting an article"):
            self.registry.delete(ids=[article_id])
        self._bump_generation()
        with chroma_errors("deleting an article"):
            self.chunks.delete(where={"article_id": article_id})
            if self._sentences is not None:
                self._sentences.delete(where={"article_id": article_id})


class _LiveFingerprints:
    """The live articles' fingerprints as of a generation, brought up to date from what changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._fingerprints: dict[str, str] | None = None
        self._read_at = 0.0

    def read(self, generation: str, fetch: Callable[[dict[str, str] | None, float], dict[str, str]]) -> dict[str, str]:
        """``fetch(known, since)``: the fingerprints, read whole when ``known`` is None, else ``known``
        updated with the records committed at or after ``since``."""
        with self._lock:
            if self._fingerprints is None or generation != self._generation or not generation:
                started = time.time()
                self._fingerprints = fetch(self._fingerprints, self._read_at - FINGERPRINT_CLOCK_SLACK_S)
                self._generation, self._read_at = generation, started
            return dict(self._fingerprints)


def _existing_ids(collection: Collection | None, ids: Sequence[str], action: str) -> set[str]:
    if not ids or collection is None:
        return set()
    with chroma_errors(action):
        return set(collection.get(ids=list(ids), include=[])["ids"])


def _query_past_deletes(collection: Collection, vector: np.ndarray, n: int, where: Where | None) -> QueryResult:
    """``collection.query``, asked again when a chunk it found was deleted before it read it: the
    embedded Chroma then fails the whole query ("Error finding id": 2 of 2,984 asks in a 20-minute
    soak of deletes and re-ingests); the next attempt no longer finds the deleted chunk."""
    for attempt in range(1, QUERY_ATTEMPTS + 1):
        try:
            return collection.query(query_embeddings=vector, n_results=n, where=where, include=["distances"])
        except chromadb.errors.InternalError as error:
            if DELETED_MEANWHILE not in str(error) or attempt == QUERY_ATTEMPTS:
                raise
            log.info("a chunk was deleted while a search read it; searching again")
    raise AssertionError("unreachable")


def _until_enough(wanted: int, fetch: Callable[[int], tuple[int, list[T]]]) -> list[T]:
    """The first ``wanted`` items ``fetch(n)`` keeps of the ``n`` nearest chunks (it returns how many
    Chroma gave, and what it kept). Chunks that are not live push live ones down the ranking, never
    out of it: ``n`` grows until enough are kept or Chroma has no more chunks to give."""
    n = wanted * 2 + 8
    while True:
        given, kept = fetch(n)
        if len(kept) >= wanted or given < n:
            return kept[:wanted]
        n *= NEAREST_GROWTH


def _version(article_id: str, fingerprint: dict[str, str]) -> Where:
    """A Chroma filter on one article's chunks (or sentences) whose fingerprint passes a test."""
    return cast(Where, {"$and": [{"article_id": article_id}, {"fingerprint": fingerprint}]})


def _pending_id(article_id: str, fingerprint: str) -> str:
    return f"pending:{socket.gethostname()}:{os.getpid()}:{article_id}:{fingerprint}"


def _pending_write(record_id: str, meta: Any) -> PendingWrite:
    """A pending record as ``_mark_pending`` wrote it (every field is present)."""
    fields = (str(meta["article_id"]), str(meta["fingerprint"]), str(meta["host"]), int(meta["pid"]))
    return PendingWrite(record_id, *fields, written_at=float(meta["written_at"]))


def _process_exists(pid: int) -> bool:
    if os.name != "posix":  # signal 0 would end the process elsewhere
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def chunk_id(article_id: str, fingerprint: str, index: int) -> str:
    return f"{_version_key(article_id, fingerprint)}:{index:04d}"


def sentence_id(chunk_id_: str, start: int) -> str:
    """The sentence starting at ``start`` in the article version that ``chunk_id_`` belongs to."""
    return f"{_version_of(chunk_id_)}:s{start}"


def _version_key(article_id: str, fingerprint: str) -> str:
    """What the ids of an article version's chunks and sentences start with."""
    return f"{article_id}:{fingerprint[:12]}"


def _version_of(chunk_id_: str) -> str:
    return chunk_id_.rsplit(":", 1)[0]


def _chunk_metadata(article: Article, fingerprint: str, chunk: Chunk) -> Metadata:
    meta: dict[str, str | int | float | bool] = {
        "article_id": article.id,
        "fingerprint": fingerprint,
        "chunk_index": chunk.index,
        "section": chunk.section,
        "start": chunk.start,
        "end": chunk.end,
        "tokens": chunk.tokens,
        "title": article.title,
        "source": article.source,
        "url": article.url,
        "published_at": article.published_at,
    }
    if article.published_ts is not None:
        meta["published_ts"] = article.published_ts
    return meta


def _article(article_id: str, meta: Any, text: str) -> Article:
    meta = meta or {}
    return Article(
        id=article_id,
        text=text,
        sections=[Section(*s) for s in json.loads(str(meta.get("sections", "[]")))],
        quick_looks=json.loads(str(meta.get("quick_looks", "[]"))),
        **{key: str(meta.get(key, "")) for key in _ARTICLE_FIELDS},
    )


def _record(article_id: str, meta: Any) -> ArticleRecord:
    meta = meta or {}
    return ArticleRecord(
        id=article_id,
        title=str(meta.get("title", "")),
        source=str(meta.get("source", "")),
        url=str(meta.get("url", "")),
        published_at=str(meta.get("published_at", "")),
        fingerprint=str(meta.get("fingerprint", "")),
        chunk_count=int(meta.get("chunk_count", 0)),
        needs_cleanup=bool(meta.get("needs_cleanup", False)),
        origin=str(meta.get("origin", "")),
        ingested_at=float(meta.get("ingested_at", 0.0)),
    )


def _hit(chunk_id_: str, meta: Any, text: str, score: float) -> ChunkHit:
    return ChunkHit(
        chunk_id=chunk_id_,
        article_id=str(meta["article_id"]),
        title=str(meta.get("title", "")),
        source=str(meta.get("source", "")),
        url=str(meta.get("url", "")),
        published_at=str(meta.get("published_at", "")),
        section=str(meta.get("section", "")),
        chunk_index=int(meta["chunk_index"]),
        start=int(meta["start"]),
        end=int(meta["end"]),
        text=text,
        score=score,
    )
