"""The learned reader: the bundled weights load offline and read as expected, the training
command runs end to end, the setting switches scorers, and bad weights give a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from app.answer.extractive import LEARNED_INT8, ExtractiveEngine, reader_inputs
from app.config import READER_DIR, Settings
from app.embed import Embedder
from app.errors import ConfigError
from app.reader import READ_AHEAD_BATCH, LearnedReader, SavedVectors, build_reader
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
    assert len(reader.cache) == 5, "the cache keeps at most cache_size vectors"
    held = reader.cache.nbytes()
    assert 5 * 384 * 4 < held < 5 * (384 * 4 + 200), "five float32 MiniLM vectors and their short texts"


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


@pytest.mark.skipif(not (READER_DIR / "model.safetensors").is_file(), reason="no bundled reader weights")
def test_read_ahead_saves_every_candidate_so_a_question_runs_only_itself(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path)
    paths = [CORPUS / "2024-12-18-fed-rate-cut.txt", CORPUS / "2025-04-01-myanmar-earthquake-toll.txt"]
    make_ingestor(settings, embedder).ingest_paths(paths, max_bytes=10**7)
    question = "How many people died in the Myanmar earthquake?"
    unsaved = Newsdesk(settings.model_copy(update={"read_ahead": False}), embedder=embedder)
    try:
        expected = unsaved.ask(question, engine="extractive")
    finally:
        unsaved.close()
    desk = Newsdesk(settings, embedder=embedder)
    try:
        assert isinstance(desk.reader, LearnedReader) and desk.reader.saved is not None
        progress: list[tuple[int, int]] = []
        read = desk.read_ahead(lambda done, total: progress.append((done, total)))
        assert read > 50 and progress[-1] == (read, read) and len(desk.reader.saved) == read
        assert desk.read_ahead() == 0, "nothing is read twice"
    finally:
        desk.close()
    restarted = Newsdesk(settings, embedder=embedder)
    try:
        reader = restarted.reader
        assert isinstance(reader, LearnedReader)
        encoded: list[list[str]] = []
        real_encode = reader._encode
        reader._encode = lambda texts: encoded.append(texts) or real_encode(texts)  # type: ignore[method-assign]
        answer = restarted.ask(question, engine="extractive")
        assert encoded == [[question]], "after a restart the saved vectors are read, not recomputed"
        assert answer.answer == expected.answer and answer.refused == expected.refused
        restarted.delete(next(r.id for r in restarted.articles() if r.url.endswith("fed-rate-cut")))
    finally:
        restarted.close()
    again = Newsdesk(settings, embedder=embedder)
    try:
        assert again.reader is not None and again.reader.saved is not None
        before = len(again.reader.saved)
        assert again.read_ahead() == 0 and 0 < len(again.reader.saved) < before, "a deleted article's are dropped"
    finally:
        again.close()


def test_saved_vectors_belong_to_their_weights_and_a_damaged_file_starts_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "reader-vectors.sqlite"
    saved = SavedVectors(path, "weights-a")
    saved.put(["one sentence", "another"], [np.ones(4, dtype=np.float32), np.zeros(4, dtype=np.float32)])
    assert saved.get(["one sentence", "unknown"]).keys() == {"one sentence"}
    assert saved.missing(["unknown", "another"]) == ["unknown"]
    saved.close()
    assert len(SavedVectors(path, "weights-a")) == 2
    assert len(SavedVectors(path, "weights-b")) == 0, "new weights do not read the old weights' vectors"
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level("WARNING", logger="newsdesk.reader"):
        fresh = SavedVectors(path, "weights-a")
    assert len(fresh) == 0 and "starting them again" in caplog.text
    fresh.put(["one sentence"], [np.ones(4, dtype=np.float32)])
    assert fresh.get(["one sentence"])["one sentence"].tolist() == [1.0] * 4


@pytest.mark.skipif(not (READER_DIR / "model.safetensors").is_file(), reason="no bundled reader weights")
def test_reading_ahead_in_the_background_waits_while_busy_and_follows_ingests(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = Settings(data_dir=tmp_path)
    desk = Newsdesk(settings, embedder=embedder)
    busy = threading.Event()
    try:
        assert desk.reader is not None and desk.reader.saved is not None
        desk.start_reading_ahead(busy=busy.is_set)
        busy.set()
        desk.ingest_paths([CORPUS / "2025-04-01-myanmar-earthquake-toll.txt"])
        first_batch = READ_AHEAD_BATCH
        time.sleep(2)
        assert len(desk.reader.saved) <= first_batch, "while busy it stops after the batch it is on"
        busy.clear()
        ids = [record.id for record in desk.articles()]
        expected = {text for hit, _ in desk.store.live_chunks(ids) for text in reader_inputs(hit.title, hit.text)}
        give_up = time.monotonic() + 120
        while desk.reader.saved.missing(sorted(expected)) and time.monotonic() < give_up:
            time.sleep(0.2)
        assert not desk.reader.saved.missing(sorted(expected)), "every candidate of the new article is read"
    finally:
        desk.close()
