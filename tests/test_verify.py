"""The grounding verifier: facts compared as facts, meaning by the real MiniLM, calibration re-run."""

from __future__ import annotations

import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.embeddings import Embeddings

from app.answer import Answer
from app.embed import Embedder
from app.retrieve import Passage
from app.text.numbers import numbers_in
from app.verify import (
    SUPPORT_THRESHOLD,
    Verdict,
    Verifier,
    best_span,
    calibrate,
    check_answer,
    entities_in,
    incomplete_statement,
    missing_facts,
)

from .conftest import REPO

PAIRS = [
    (d["claim"], d["span"], d["supported"])
    for d in map(json.loads, (REPO / "tests" / "data" / "grounding_pairs.jsonl").read_text().splitlines())
]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("about 1,300 square kilometres", 1300),
        ("1300 square kilometres", 1300),
        ("three missiles", 3),
        ("thirty-one vessels", 31),
        ("1.3 million euros", 1_300_000),
        ("a budget of 1,300,000 euros", 1_300_000),
        ("up 6%", 6),
        ("up 6 percent", 6),
    ],
)
def test_numbers_are_compared_as_numbers(text: str, value: float) -> None:
    assert value in numbers_in(text)


def test_missing_numbers_dates_and_names_are_reported() -> None:
    span = "On Tuesday the council approved 1,300,000 euros for Mayor Ilse Brandt's cycle lanes."
    assert missing_facts("The council approved 1.3 million euros.", span) == []
    assert missing_facts("The council approved 1.4 million euros.", span) == ["1,400,000"]
    assert missing_facts("On Friday the council approved the lanes.", span) == ["friday"]
    assert missing_facts("Mayor Karl Weber got the lanes approved.", span) == ["karl", "weber"]
    assert missing_facts("The council did not approve the lanes.", span) == ["a negation"]


def test_sentence_initial_capitals_are_names_only_when_they_look_like_names() -> None:
    assert entities_in("Overnight attacks killed three people.") == []
    assert entities_in("Officials said the port reopened.") == []
    assert entities_in("Brandt said the port reopened.") == ["brandt"]
    assert entities_in("The ferry left Harwich for Esbjerg.") == ["harwich", "esbjerg"]
    assert "russia" not in missing_facts("Russia fired 114 drones.", "Russian forces fired 114 drones.")


def test_verdicts_from_the_real_embedder(embedder: Embedder) -> None:
    verifier = Verifier(embedder)
    span = "Shipping lines diverted 31 vessels to other harbours as the queue of ships grew."
    supported = verifier.check("Shipping lines diverted 31 vessels to other harbours.", [span])
    assert supported.supported and supported.similarity is not None and supported.similarity > SUPPORT_THRESHOLD
    wrong_number = verifier.check("Shipping lines diverted 13 vessels to other harbours.", [span])
    assert not wrong_number.supported and "13" in wrong_number.reason
    unrelated = verifier.check("The ferry operator is adding a new route to the mainland.", [span])
    assert not unrelated.supported and "meaning not supported" in unrelated.reason
    assert not verifier.check("Shipping lines diverted 31 vessels.", []).supported


def test_recorded_threshold_is_still_the_calibrated_one(embedder: Embedder) -> None:
    """Re-runs the calibration on the labelled pairs: the recorded threshold must sit in the best range."""
    verifier = Verifier(embedder)
    threshold, accuracy = calibrate(verifier, PAIRS)
    assert accuracy >= 0.9
    assert abs(threshold - SUPPORT_THRESHOLD) < 0.03
    predicted = verifier.check_many([(claim, [span]) for claim, span, _ in PAIRS])
    correct = sum(v.supported == label for v, (_, _, label) in zip(predicted, PAIRS, strict=True))
    assert correct / len(PAIRS) == pytest.approx(accuracy)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # a clause cut that kept the frame of reported speech and cut away the verb of what was said
        ("The Haldane Maritime Board said Ilse Brandt of the Northern Dockers' Union, Haldane", "keeps nothing"),
        ("The Haldane Maritime Board said.", "keeps nothing"),
        ("Mediator Ilse Brandt told reporters on Thursday", "keeps nothing"),
        ("The union demanded a 9 percent pay rise and", "ends on 'and'"),
        ("Shipping lines diverted 31 vessels to other harbours of the", "ends on 'the'"),
        ("The port authority of the northern harbour of Haldane", "no finite verb"),
        ("Was diverted to other harbours by the shipping lines.", "no subject"),
    ],
)
def test_fragments_are_not_complete_statements(text: str, problem: str) -> None:
    reason = incomplete_statement(text)
    assert reason is not None and problem in reason


@pytest.mark.parametrize(
    "text",
    [
        "The Haldane Maritime Board said Ilse Brandt and Karl Weber would meet on Thursday.",
        "The bridge will remain closed to all traffic until Thursday, police said.",
        "Forecasters expect more rain later in the week.",
        "Mediator Ilse Brandt told reporters that talks would resume on Thursday.",
        "Officials told residents to leave their homes before dark.",
        "The union's leader is said to have rejected the offer.",
        "Police reported no incidents at the picket lines.",
        'Brandt said: "We want a deal this week."',
        "It's the first strike at the port since 2011.",
        "He is expected to stay on until a new board is sworn in.",
        "Brandt and Weber discuss the pay offer in Haldane.",
    ],
)
def test_whole_sentences_are_complete_statements(text: str) -> None:
    assert incomplete_statement(text) is None


def test_a_fragment_is_not_a_supported_bullet(embedder: Embedder) -> None:
    """The fragment holds only words of its span, so facts and meaning pass; as a bullet it is refused."""
    span = (
        "The Haldane Maritime Board said Ilse Brandt of the Northern Dockers' Union, Haldane; Karl Weber of the "
        "Port Authority; and Mira Olsen of the Fish Exporters' Association would meet on Thursday."
    )
    fragment = "The Haldane Maritime Board said Ilse Brandt of the Northern Dockers' Union, Haldane"
    verifier = Verifier(embedder)
    assert verifier.check(fragment, [span]).supported, "an answer sentence is checked as before"
    verdict = verifier.check_many([(fragment, [span])], statements=True)[0]
    assert not verdict.supported and verdict.reason.startswith("not a complete statement")


def _passage(text: str, number: int) -> Passage:
    return Passage(
        chunk_id=f"a{number}:fp:0",
        article_id=f"a{number}",
        title="Port strike",
        source="Harbor Ledger",
        url="",
        published_at="2025-05-12",
        section="body",
        chunk_index=0,
        start=0,
        end=len(text),
        text=text,
        score=1.0,
    )


def test_unsupported_answer_sentences_are_flagged(embedder: Embedder) -> None:
    passages = [
        _passage("Dock workers walked out on Monday. The union said 2,400 members joined the strike.", 1),
        _passage("Shipping lines diverted 31 vessels to other harbours. Talks resume on Thursday.", 2),
    ]
    answer = Answer(
        question="What happened at the port?",
        answer="The union said 2,400 members joined the strike [1]. "
        "Shipping lines diverted 45 vessels to other harbours [2]. "
        "The mayor promised compensation for the harbour pilots [2].",
        citations=[],
        engine="llm",
        refused=False,
        passages=passages,
    )
    checks = check_answer(answer, Verifier(embedder))
    assert [c.verdict.supported for c in checks] == [True, False, False]
    assert checks[0].sources == (1,)
    assert answer.unsupported == [
        "Shipping lines diverted 45 vessels to other harbours.",
        "The mayor promised compensation for the harbour pilots.",
    ]
    assert any("45" in note for note in answer.notes)


class HashEmbeddings(Embeddings):
    """Deterministic vectors from a text's hash: fast enough to push thousands of texts through."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            vector = [b - 127.5 for b in digest[:16]]
            norm = math.sqrt(sum(x * x for x in vector))
            out.append([x / norm for x in vector])
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_one_verifier_checks_over_ten_thousand_texts_from_several_threads() -> None:
    """The cache is bounded and shared: eviction by one thread never breaks another's check."""
    verifier = Verifier(Embedder("hash", HashEmbeddings(), 16), cache_size=1_000)
    reference = Verifier(Embedder("hash", HashEmbeddings(), 16))

    def claims(worker: int) -> list[tuple[str, list[str]]]:
        return [
            (f"Worker {worker} counted {n} ships in port.", [f"In port {n} ships waited, said worker {worker}."])
            for n in range(700)
        ]

    def work(worker: int) -> list[Verdict]:
        verdicts = []
        for claim, spans in claims(worker):
            verdicts.append(verifier.check(claim, spans))
            text = f"{spans[0]} The harbour master of pier {worker} agreed. Queues grew."
            start, end = best_span(verifier, claim, text)
            assert 0 <= start < end <= len(text)
        return verdicts

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(8)))
    assert sum(len(r) for r in results) * 2 > 10_000, "more distinct texts than the cache holds, many times over"
    assert len(verifier.cache) <= 1_000
    for worker, verdicts in enumerate(results):
        assert verdicts == [reference.check(claim, spans) for claim, spans in claims(worker)]
