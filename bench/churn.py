"""What Chroma's embedded store holds on to under add/delete churn, with no newsdesk code.

Adds 400 random 384-dimension vectors (a large article's chunks, MiniLM's size) to a fresh
on-disk collection and deletes the previous 400, over and over, printing the process's RSS:
the live count stays 400 while RSS grows with every chunk ever written. HNSW marks a deleted
vector and keeps it in the graph and in memory (chroma-core/chroma#2594), so a service that
deletes and re-ingests grows by this much per chunk written, which `bench/soak.py` shows.

    .venv/bin/python bench/churn.py [--rounds 60]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import chromadb
import numpy as np

CHUNKS = 400
DIMENSION = 384


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=60, help="add/delete rounds of 400 chunks")
    rounds = parser.parse_args().rounds
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        collection = chromadb.PersistentClient(path=folder).create_collection(
            "churn", metadata={"hnsw:space": "cosine"}
        )
        previous: list[str] = []
        start = 0.0
        for round_ in range(rounds + 1):
            ids = [f"{round_}-{i}" for i in range(CHUNKS)]
            vectors = rng.normal(size=(CHUNKS, DIMENSION)).astype(np.float32)
            collection.add(ids=ids, embeddings=vectors, documents=["x" * 800] * CHUNKS)
            if previous:
                collection.delete(ids=previous)
            previous = ids
            if round_ == 0:
                start = rss_mb()
            if round_ % 10 == 0:
                print(f"{(round_ + 1) * CHUNKS:>7,} chunks written, {collection.count():,} live: {rss_mb():.0f} MB")
        grown = rss_mb() - start
        each = grown * 1024 / (rounds * CHUNKS)
        print(f"RSS grew {grown:.0f} MB over {rounds * CHUNKS:,} chunks written: {each:.1f} KB each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
