"""The learned reader: the bundled weights load offline and read as expected, the training
command runs end to end, the setting switches scorers, and bad weights give a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.answer.extractive import LEARNED_INT8, ExtractiveEngine
from app.config import READER_DIR, Settings
from app.embed import Embedder
from app.errors import ConfigError
from app.reader import LearnedReader, build_reader
from app.service import Newsdesk

from .conftest import CORPUS, make_ingestor

TRAIN_FIXTURE = Path(__file__).parent / "data" / "reader_train"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`newsdesk train reader` run for real on a tiny fixture of our own (4 training questions, 2 to validate)."""
    target = tmp_path_factory.mktemp("reader")
    environment = {**os.environ, "NEWSDESK_DATA_DIR": str(target / "data"), "COLUMNS": "200"}
    command = [sys.executable, "-m", "app", "train", "reader", "--data", str(TRAIN_FIXTURE), "--output", str(target)]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=False)
    return target, done


@pytest.mark.slow
def test_the_training_command_runs_end_to_end_on_a_tiny_fixture(
    trained: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    target, done = trained
    assert done.returncode == 0, done.stderr
    assert "training" in done.stderr and "validating" in done.stderr, "progress bars"
    assert "reader" in done.stdout and "cosine" in done.stdout, "the validation figures"
    card = (target / "README.md").read_text()
    assert "newsdesk train reader" in card and "sha256" in card
    assert '"train_questions": 4' in card and '"validation_questions": 2' in card
    assert json.loads((target / "config.json").read_text())["num_hidden_layers"] == 6, "all of MiniLM's layers"
    assert (target / "modules.json").is_file(), "a sentence-transformers directory"
    assert (target / "model.safetensors").stat().st_size < 50_000_000, "fp16 weights"


@pytest.mark.slow
def test_trained_weights_load_offline_and_score(trained: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    reader = LearnedReader(trained[0])
    scores = reader.score("Who chairs the Federal Reserve?", ["Jerome Powell chairs the Fed.", "Stocks fell."])
    assert len(scores) == 2 and all(-1.0 <= s <= 1.0 for s in scores), "cosines"
    assert reader.score("Who chairs the Federal Reserve?", []) == []


# Questions about our own corpus/ articles, each with its answer sentence first, then sentences of the
# same article that do not answer it.
CORPUS_PAIRS = [
    (
        "Which Fed official dissented from the December rate cut?",
        "Beth Hammack, president of the Cleveland Fed, dissented because she preferred to leave rates unchanged.",
        "The Dow Jones Industrial Average dropped 1,123 points after the announcement.",
        "Fed officials raised their 2025 inflation forecast to 2.5% from 2.1%.",
    ),
    (
        "How many points did the Dow fall after the Fed decision?",
        "The Dow Jones Industrial Average dropped 1,123 points after the announcement.",
        "Beth Hammack, president of the Cleveland Fed, dissented because she preferred to leave rates unchanged.",
        "Policymakers now expect only two cuts next year.",
    ),
    (
        "How many people died in the Myanmar earthquake?",
        "Myanmar's military government said 2,719 people had been confirmed dead after the earthquake.",
        "The U.S. Geological Survey measured the earthquake at magnitude 7.7.",
        "A 30-story tower under construction collapsed in Bangkok's Chatuchak district.",
    ),
    (
        "How long were Butch Wilmore and Suni Williams in space?",
        "Their mission was meant to last about eight days but stretched to 286 days in orbit.",
        "Crew-10 launched on March 14 to relieve the Crew-9 astronauts.",
        "Their SpaceX Dragon capsule splashed down off Tallahassee, Florida.",
    ),
]


@pytest.mark.skipif(not (READER_DIR / "model.safetensors").is_file(), reason="no bundled reader weights")
def test_the_bundled_reader_puts_the_answer_first_on_our_own_pairs() -> None:
    reader = LearnedReader(READER_DIR)
    for question, answer, *others in CORPUS_PAIRS:
        scores = reader.score(question, [answer, *others])
        assert scores[0] == max(scores), (question, scores)


@pytest.mark.skipif(not (READER_DIR / "model.safetensors").is_file(), reason="no bundled reader weights")
def test_the_int8_reader_reads_like_the_float32_one(tmp_path: Path, embedder: Embedder) -> None:
    reader = build_reader(Settings(data_dir=tmp_path, reader_precision="int8"))
    assert isinstance(reader, LearnedReader) and reader.quantized
    assert ExtractiveEngine(embedder, reader=reader).scoring is LEARNED_INT8, "its own refusal threshold"
    layers = {type(module) for module in reader.load().modules()}
    assert torch.ao.nn.quantized.dynamic.Linear in layers and torch.nn.Linear not in layers
    exact = LearnedReader(READER_DIR)
    for question, answer, *others in CORPUS_PAIRS:
        scores, reference = reader.score(question, [answer, *others]), exact.score(question, [answer, *others])
        assert scores[0] == max(scores), (question, scores)
        assert scores != reference and scores == pytest.approx(reference, abs=0.08), "int8 arithmetic, close"


@pytest.mark.skipif(not (READER_DIR / "model.safetensors").is_file(), reason="no bundled reader weights")
def test_candidate_vectors_are_kept_and_give_the_same_scores() -> None:
    reader = LearnedReader(READER_DIR, cache_size=5)
    question, *candidates = CORPUS_PAIRS[0]
    encoded: list[list[str]] = []
    real_encode = reader._encode
    reader._encode = lambda texts: encoded.append(texts) or real_encode(texts)  # type: ignore[method-assign]
    first = reader.score(question, candidates)
    again = reader.score("Who voted against the rate cut?", candidates)
    assert encoded[1] == ["Who voted against the rate cut?"], "known candidates are not encoded again"
    assert again != first and reader.score(question, candidates) == pytest.approx(first, abs=1e-5)
    reader.score(question, [f"Sentence number {n} of a long story." for n in range(8)])
    assert len(reader._vectors) == 5, "the cache keeps at most cache_size vectors"


def test_missing_weights_say_how_to_rebuild(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="newsdesk train reader"):
        LearnedReader(tmp_path)


def test_damaged_weights_say_how_to_rebuild(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 10)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"cannot be loaded.*newsdesk train reader"):
        LearnedReader(tmp_path).load()


@pytest.mark.slow
def test_the_reader_setting_switches_the_scorer(
    tmp_path: Path, embedder: Embedder, trained: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    assert isinstance(build_reader(Settings(data_dir=tmp_path)), LearnedReader), "the learned reader is the default"
    assert build_reader(Settings(data_dir=tmp_path, reader="heuristic")) is None
    settings = Settings(data_dir=tmp_path, reader="learned", reader_dir=trained[0])
    make_ingestor(settings, embedder).ingest_paths([CORPUS / "2024-12-18-fed-rate-cut.txt"], max_bytes=10**7)
    desk = Newsdesk(settings, embedder=embedder)
    try:
        assert isinstance(desk.extractive.reader, LearnedReader)
        answer = desk.ask("To what range did the Federal Reserve lower its benchmark rate?", engine="extractive")
        assert answer.citations and all(c.quote in desk.article(c.article_id).text for c in answer.citations)
    finally:
        desk.close()
    with pytest.raises(ConfigError, match="weights are missing"):
        Newsdesk(Settings(data_dir=tmp_path, reader="learned", reader_dir=tmp_path / "none"), embedder=embedder)
