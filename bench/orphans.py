"""Orphan chunks benchmark: what uncommitted chunks cost a store, and the ways to live with them.

    python bench/orphans.py [--articles 2000] [--orphans 2728]

Builds an embedded store of ``--articles`` committed articles (10 chunks each) and one article
of ``--orphans`` chunks that was never committed, all nearer the query than any live chunk (the
worst case: they fill every candidate list). Random unit vectors stand in for the model. Reports
the latency of the retriever's dense leg (nearest chunk ids, kept if the lexical index holds them)
and of ``Store.query`` (k=30) with no orphans, with the orphans (the store widens its request
until enough live chunks come back), and with the alternatives: a Chroma ``where`` that
excludes the orphans' fingerprint, or one that allows only the live fingerprints; the cost of
flagging a big article's chunks live at commit (a metadata update); and the time to open the
store while the orphans' writer is alive (nothing swept), after it died and the retention passed
(swept), and with nothing pending; and what counting live data (``stats``) costs.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
from chromadb.api.types import Where

import app.store as store_module
from app.article import Article, Chunk, Section
from app.config import Settings
from app.embed import build_embedder
from app.lexical import LexicalIndex
from app.store import ArticleVersion, Store, chunk_id

DIMENSION = 384
CHUNKS_PER_ARTICLE = 10
K = 30
REPEATS = 20


def unit(rows: int, rng: np.random.Generator, centre: np.ndarray | None = None, spread: float = 1.0) -> np.ndarray:
    vectors = rng.normal(size=(rows, DIMENSION)) * spread + (0 if centre is None else centre)
    normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def version(article_id: str, chunks: int) -> ArticleVersion:
    text = f"A line of {article_id}."
    article = Article(id=article_id, title=article_id, text=text, sections=[Section("body", 0, len(text))])
    pieces = [Chunk(article_id, i, "body", 0, len(text), text, 5) for i in range(chunks)]
    return ArticleVersion(article, f"fp-{article_id}", pieces)


def write(store: Store, versions: list[ArticleVersion], vectors: np.ndarray) -> None:
    ids = [chunk_id(v.article.id, v.fingerprint, c.index) for v in versions for c in v.chunks]
    store.write_chunks(versions, dict(zip(ids, vectors.tolist(), strict=True)))


def ms(work: Callable[[], object]) -> float:
    work()
    started = time.perf_counter()
    for _ in range(REPEATS):
        work()
    return (time.perf_counter() - started) / REPEATS * 1000


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--orphans", type=int, default=2728)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir))
        embedder = build_embedder(settings)
        store = Store.open(settings, embedder)
        centre = unit(1, rng)[0] * 3
        live = [version(f"live-{i}", CHUNKS_PER_ARTICLE) for i in range(args.articles)]
        for start in range(0, len(live), 500):
            batch = live[start : start + 500]
            write(store, batch, unit(len(batch) * CHUNKS_PER_ARTICLE, rng))
            store.commit(batch, set())
        query = unit(1, rng, centre, 0.3)[0].tolist()
        lexical = LexicalIndex(Path(data_dir) / "lexical.sqlite", store)
        lexical.sync()

        def dense_leg() -> object:
            return store.nearest_kept(query, K, lexical.indexed_chunks)

        leg_no_orphans = ms(dense_leg)
        counts_clean = ms(store.counts)
        no_orphans = ms(lambda: store.query(query, K))

        orphan = version("orphan", args.orphans)
        started = time.perf_counter()
        write(store, [orphan], unit(args.orphans, rng, centre, 0.3))
        write_seconds = time.perf_counter() - started
        assert len(store.query(query, K)) == K
        assert store.nearest(query, K * 2 + 8)[-1][0].startswith("orphan:"), "the orphans fill the first request"
        leg_widened = ms(dense_leg)
        counts_orphans = ms(store.counts)
        widened = ms(lambda: store.query(query, K))
        not_orphan = cast(Where, {"fingerprint": {"$nin": [orphan.fingerprint]}})
        excluded = ms(lambda: store.query(query, K, where=not_orphan))
        only_live = cast(Where, {"fingerprint": {"$in": [v.fingerprint for v in live]}})
        allowed = ms(lambda: store.query(query, K, where=only_live))

        ids = [chunk_id(orphan.article.id, orphan.fingerprint, c.index) for c in orphan.chunks]
        started = time.perf_counter()
        step = store.client.get_max_batch_size()
        for offset in range(0, len(ids), step):
            id_batch = ids[offset : offset + step]
            store.chunks.update(ids=id_batch, metadatas=[{"live": True}] * len(id_batch))
        flag_seconds = time.perf_counter() - started

        started = time.perf_counter()
        Store.open(settings, embedder)
        open_alive = time.perf_counter() - started
        meta = store._meta  # the orphans' writer dies: its pending record now names a finished process
        assert meta is not None
        got = meta.get(where={"kind": "pending"}, include=["metadatas"])
        meta.update(ids=got["ids"], metadatas=[{**(m or {}), "pid": dead_pid()} for m in got["metadatas"] or []])
        store_module.PENDING_WRITE_RETENTION_S = 0.0  # and an hour went by
        started = time.perf_counter()
        Store.open(settings, embedder)
        open_swept = time.perf_counter() - started
        started = time.perf_counter()
        reopened = Store.open(settings, embedder)
        open_clean = time.perf_counter() - started
        assert reopened.counts().orphan_chunks == 0

    total = args.articles * CHUNKS_PER_ARTICLE
    print(f"store: {total:,} live chunks, {args.orphans:,} uncommitted chunks nearest the query")
    print(f"  writing the uncommitted chunks        {write_seconds:7.2f} s")
    print(f"dense leg of retrieval k={K}, mean of {REPEATS}:")
    print(f"  no orphans                            {leg_no_orphans:7.1f} ms")
    print(f"  orphans, widening until enough live   {leg_widened:7.1f} ms")
    print(f"Store.query k={K}, mean of {REPEATS}:")
    print(f"  no orphans                            {no_orphans:7.1f} ms")
    print(f"  orphans, widening until enough live   {widened:7.1f} ms")
    print(f"  orphans, where fingerprint $nin [1]   {excluded:7.1f} ms")
    print(f"  orphans, where fingerprint $in [{args.articles}] {allowed:7.1f} ms")
    print(f"Store.counts (stats, /readyz): {counts_clean:.1f} ms clean, {counts_orphans:.1f} ms with the orphans")
    print(f"flagging {args.orphans:,} chunks live at commit  {flag_seconds:7.2f} s")
    print("opening the store:")
    print(f"  writer alive (nothing swept)          {open_alive * 1000:7.1f} ms")
    print(f"  writer dead, retention over (swept)   {open_swept * 1000:7.1f} ms")
    print(f"  nothing pending                       {open_clean * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
