"""The learned reader: a cross-encoder that reads a question and a candidate sentence together
and scores how well the sentence answers it (a logit; ``sigmoid`` gives a probability).

Fine-tuned from the bundled all-MiniLM-L6-v2 on past news quizzes by ``newsdesk train reader``
(``app/train.py``), which writes the weights and their model card to ``models/reader/``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import READER_DIR, Settings
from app.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

WEIGHTS_FILE = "model.safetensors"
MAX_TOKENS = 96  # question + title + sentence; longer pairs lose the end of the sentence
REBUILD = "rebuild it with `newsdesk train reader` (see models/reader/README.md)"


def candidate_text(title: str, sentence: str) -> str:
    """What the reader sees of a candidate: the article's title, then the sentence."""
    return f"{title.strip()} | {sentence.strip()}" if title.strip() else sentence.strip()


def build_reader(settings: Settings) -> LearnedReader | None:
    """The learned reader, or None for the hand-weighted scorer (``NEWSDESK_READER=heuristic``)."""
    return LearnedReader(settings.reader_dir) if settings.reader == "learned" else None


class LearnedReader:
    """Scores (question, candidate) pairs with the cross-encoder in ``model_dir``; loads on first use."""

    def __init__(self, model_dir: Path = READER_DIR, batch_size: int = 32) -> None:
        if not (model_dir / WEIGHTS_FILE).is_file():
            raise ConfigError(
                f"the reader's weights are missing ({model_dir / WEIGHTS_FILE}): {REBUILD}, "
                "or set NEWSDESK_READER=heuristic"
            )
        self.model_dir = model_dir
        self.batch_size = batch_size
        self._loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None
        self._lock = threading.Lock()

    def load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        with self._lock:
            if self._loaded is None:
                self._loaded = load_cross_encoder(self.model_dir)
            return self._loaded

    def score(self, question: str, candidates: list[str]) -> list[float]:
        """One logit per candidate: higher answers the question better."""
        if not candidates:
            return []
        import torch

        model, tokenizer = self.load()
        logits: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(candidates), self.batch_size):
                batch = candidates[start : start + self.batch_size]
                encoded = encode_pairs(tokenizer, [question] * len(batch), batch)
                logits.extend(model(**encoded).logits.squeeze(-1).float().tolist())
        return logits


def encode_pairs(tokenizer: PreTrainedTokenizerBase, questions: list[str], candidates: list[str]) -> Any:
    return tokenizer(
        questions, candidates, padding=True, truncation="only_second", max_length=MAX_TOKENS, return_tensors="pt"
    )


def load_cross_encoder(
    model_dir: Path, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (float32 on the CPU, whatever the file's precision) and its tokenizer."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=dtype or torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError, RuntimeError, SafetensorError, json.JSONDecodeError) as error:
        raise ConfigError(f"the reader's weights in {model_dir} cannot be loaded ({error}): {REBUILD}") from error
    model.eval()
    return model, tokenizer
