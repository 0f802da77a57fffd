"""The learned reader: a bi-encoder that embeds a question and each candidate sentence and scores
how well the sentence answers it (the cosine of the two vectors).

Fine-tuned from the bundled all-MiniLM-L6-v2 on past news quizzes by ``newsdesk train reader``
(``app/train.py``), which writes the weights and their model card to ``models/reader/``. It reads
only the candidates the engine shortlists, so nothing is stored for it at ingest. A cross-encoder
trained on the same examples ranked worse on the validation quizzes (models/reader/README.md).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

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


def candidate_text(title: str, sentence: str) -> str:
    """What the reader sees of a candidate: the article's title, then the sentence."""
    return f"{title.strip()} | {sentence.strip()}" if title.strip() else sentence.strip()


def build_reader(settings: Settings) -> LearnedReader | None:
    """The learned reader, or None for the hand-weighted scorer (``NEWSDESK_READER=heuristic``)."""
    if settings.reader != "learned":
        return None
    return LearnedReader(settings.reader_dir, quantized=settings.reader_precision == "int8")


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
        self._vectors = VectorCache(cache_size)

    def load(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = load_bi_encoder(self.model_dir, self.quantized)
            return self._model

    def score(self, question: str, candidates: list[str]) -> list[float]:
        """One cosine per candidate, in [-1, 1]: higher answers the question better."""
        if not candidates:
            return []
        known = self._vectors.get(candidates)
        missing = list(dict.fromkeys(text for text in candidates if text not in known))
        query, *new = self._encode([question, *missing])
        self._vectors.put(missing, new)
        known.update(zip(missing, new, strict=True))
        return [float(known[text] @ query) for text in candidates]

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
