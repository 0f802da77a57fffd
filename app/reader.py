"""The learned reader: a bi-encoder that embeds a question and each candidate sentence and scores
how well the sentence answers it (the cosine of the two vectors).

Fine-tuned from the bundled all-MiniLM-L6-v2 on past news quizzes by ``newsdesk train reader``
(``app/train.py``), which writes the weights and their model card to ``models/reader/``. It reads
only the candidates the engine shortlists, so nothing is stored for it at ingest. A cross-encoder
trained on the same examples ranked worse on the validation quizzes (models/reader/README.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.config import READER_DIR, Settings
from app.embed import VectorCache
from app.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

WEIGHTS_FILE = "model.safetensors"
MAX_TOKENS = 96  # title + sentence; longer candidates lose the end of the sentence
CANDIDATE_CACHE_SIZE = 20_000  # candidate vectors kept (1.5 KB each): questions about one story share them
REBUILD = "rebuild it with `newsdesk train reader` (see models/reader/README.md)"
READ_AHEAD_BATCH = 32  # candidates encoded at a time when reading ahead: a small ingest waits at most one batch

log = logging.getLogger("newsdesk.reader")


def candidate_text(title: str, sentence: str) -> str:
    """What the reader sees of a candidate: the article's title, then the sentence."""
    return f"{title.strip()} | {sentence.strip()}" if title.strip() else sentence.strip()


def build_reader(settings: Settings) -> LearnedReader | None:
    """The learned reader, or None for the hand-weighted scorer (``NEWSDESK_READER=heuristic``). With
    ``NEWSDESK_READ_AHEAD`` it keeps every candidate vector it computes in ``DATA_DIR/reader-vectors.sqlite``."""
    if settings.reader != "learned":
        return None
    saved = settings.data_dir / "reader-vectors.sqlite" if settings.read_ahead else None
    return LearnedReader(settings.reader_dir, quantized=settings.reader_precision == "int8", saved_path=saved)


class LearnedReader:
    """Scores candidates against a question with the bi-encoder in ``model_dir``; loads on first use.

    A candidate's vector depends on its text alone, so the last ``cache_size`` are kept: questions
    about the same story read the same sentences, and only the new ones run the model."""

    def __init__(
        self,
        model_dir: Path = READER_DIR,
        batch_size: int = 32,
        cache_size: int = CANDIDATE_CACHE_SIZE,
        quantized: bool = False,
        saved_path: Path | None = None,
    ) -> None:
        if not (model_dir / WEIGHTS_FILE).is_file():
            raise ConfigError(
                f"the reader's weights are missing ({model_dir / WEIGHTS_FILE}): {REBUILD}, "
                "or set NEWSDESK_READER=heuristic"
            )
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.quantized = quantized
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self.cache = VectorCache(cache_size)
        self.saved: SavedVectors | None = None
        if saved_path is not None:
            self.saved = SavedVectors(saved_path, model_key(model_dir / WEIGHTS_FILE, quantized))

    def load(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = load_bi_encoder(self.model_dir, self.quantized)
            return self._model

    def score(self, question: str, candidates: list[str]) -> list[float]:
        """One cosine per candidate, in [-1, 1]: higher answers the question better."""
        if not candidates:
            return []
        known = self.cache.get(candidates)
        missing = list(dict.fromkeys(text for text in candidates if text not in known))
        if missing and self.saved is not None:
            found = self.saved.get(missing)
            self.cache.put(list(found), found.values())
            known.update(found)
            missing = [text for text in missing if text not in found]
        query, *new = self._encode([question, *missing])
        self._remember(missing, new)
        known.update(zip(missing, new, strict=True))
        return [float(known[text] @ query) for text in candidates]

    def forget(self) -> None:
        """Empty the in-memory vectors (a benchmark does, to time the saved ones)."""
        self.cache.clear()

    def read_ahead(self, candidates: Sequence[str], on_batch: Callable[[int, int], None] | None = None) -> int:
        """Encode and save the candidates not saved yet, a batch at a time (``on_batch(done, total)``
        after each), so questions that read them later only run the question; how many were encoded."""
        if self.saved is None:
            return 0
        todo = self.saved.missing(list(dict.fromkeys(candidates)))
        for start in range(0, len(todo), READ_AHEAD_BATCH):
            batch = todo[start : start + READ_AHEAD_BATCH]
            self._remember(batch, list(self._encode(batch)))
            if on_batch is not None:
                on_batch(start + len(batch), len(todo))
        return len(todo)

    def _remember(self, texts: list[str], vectors: list[np.ndarray]) -> None:
        self.cache.put(texts, vectors)
        if self.saved is not None and texts:
            self.saved.put(texts, vectors)

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors: np.ndarray = self.load().encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors


def load_bi_encoder(model_dir: Path, quantized: bool = False) -> SentenceTransformer:
    """The model in float32 on the CPU, whatever the file's precision; ``quantized``: its linear
    layers then in int8, scaled per output channel (torch's dynamic quantization)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from safetensors import SafetensorError
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model = SentenceTransformer(str(model_dir), device="cpu", model_kwargs={"dtype": torch.float32})
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
        raise ConfigError(f"the reader's weights in {model_dir} cannot be loaded ({error}): {REBUILD}") from error
    model.max_seq_length = MAX_TOKENS
    model.eval()
    if quantized:
        linear_int8 = {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        with warnings.catch_warnings():  # torch 2.13 (pinned) warns of the API's move to torchao
            warnings.simplefilter("ignore")
            torch.ao.quantization.quantize_dynamic(model, linear_int8, inplace=True)  # type: ignore[no-untyped-call]
    return model


def model_key(weights: Path, quantized: bool) -> str:
    """Names the vectors these weights compute: a digest of the file and the arithmetic."""
    digest = hashlib.blake2b(digest_size=12)
    with weights.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return f"{digest.hexdigest()}-{'int8' if quantized else 'float32'}"


class SavedVectors:
    """The reader's candidate vectors on disk (SQLite), for the weights named by ``model``: vectors of
    other weights are dropped when it opens. A cache of what the model computes: a damaged file is
    replaced by an empty one (logged), never an error for the question that found it."""

    def __init__(self, path: Path, model: str) -> None:
        self.path = path
        self.model = model
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as error:
            log.warning("the reader's saved vectors in %s are unreadable (%s): starting them again", path, error)
            for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                stale.unlink(missing_ok=True)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA page_size=16384")  # a new file only: ten 1.5 KB vectors a page, not two in 4 KB
        db.execute("PRAGMA journal_mode=WAL")
        # keyed by rowid so a 1.5 KB vector sits in its leaf page (WITHOUT ROWID spills it to a 4 KB page)
        db.execute("CREATE TABLE IF NOT EXISTS vectors (key INTEGER PRIMARY KEY, vector BLOB NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        saved = db.execute("SELECT value FROM state WHERE name = 'model'").fetchone()
        if saved is None or saved[0] != self.model:
            with db:
                db.execute("BEGIN")
                db.execute("DELETE FROM vectors")
                db.execute("INSERT OR REPLACE INTO state VALUES ('model', ?)", (self.model,))
        return db

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        keys = {_key(text): text for text in texts}
        return {keys[key]: np.frombuffer(blob, dtype=np.float32) for key, blob in self._select("key, vector", keys)}

    def missing(self, texts: Sequence[str]) -> list[str]:
        keys = {_key(text): text for text in texts}
        saved = {key for (key,) in self._select("key", keys)}
        return [text for key, text in keys.items() if key not in saved]

    def _select(self, columns: str, keys: dict[int, str]) -> list[tuple[Any, ...]]:
        """The rows of these keys, or none when the file cannot be read (the model computes them)."""
        ordered, rows = list(keys), list[tuple[Any, ...]]()
        with self._lock:
            try:
                for start in range(0, len(ordered), 500):
                    chunk = ordered[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows.extend(self._db.execute(f"SELECT {columns} FROM vectors WHERE key IN ({marks})", chunk))
            except sqlite3.DatabaseError as error:
                log.warning("cannot read the reader's saved vectors in %s: %s", self.path, error)
        return rows

    def put(self, texts: Sequence[str], vectors: Sequence[np.ndarray]) -> None:
        rows = [(_key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in zip(texts, vectors, strict=True)]
        with self._lock:
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
            except sqlite3.DatabaseError as error:
                log.warning("cannot save the reader's vectors in %s: %s", self.path, error)

    def keep_only(self, texts: Sequence[str]) -> int:
        """Drop the vectors of every text not in ``texts`` (deleted articles); how many were dropped."""
        keep = {_key(text) for text in texts}
        with self._lock:
            stale = [(key,) for (key,) in self._db.execute("SELECT key FROM vectors") if key not in keep]
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM vectors WHERE key = ?", stale)
        return len(stale)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _key(text: str) -> int:
    """A 64-bit digest of the text (two of a million sentences share one with odds of about 3 in 10^8)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big", signed=True)
