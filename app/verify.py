"""The grounding verifier: is a claim (a brief bullet, a sentence of an answer) supported by its cited span?

Two checks, both must pass:

1. **Facts.** Every number, date and named entity in the claim appears in the span.
   Numbers are compared as numbers ("1,300" = "1300" = "1.3 thousand", "three" = 3,
   "1.3 million" = "1,300,000", "6%" = "6 percent"); dates are month and weekday names
   (years are numbers); entities are capitalised words, a sentence's first word counting
   only when the span or its context never uses it in lower case ("Overnight" is a word,
   "Putin" a name). Entity words match across a demonym ending ("Russia" ~ "Russian").
2. **Meaning.** Cosine similarity of the claim and the span (the app's embedder,
   all-MiniLM-L6-v2, normalised vectors) is at least ``SUPPORT_THRESHOLD``.

A brief bullet must also be a **complete statement** (``incomplete_statement``, checked when
``check_many(..., statements=True)``): a verb, a subject before it, no dangling last word, and
a reported-speech frame ("X said ...") keeping a clause of what was said.

``SUPPORT_THRESHOLD`` was calibrated with ``calibrate`` on 48 labelled (claim, span,
supported) pairs written for newsdesk (``tests/data/grounding_pairs.jsonl``: paraphrases,
clause cuts, re-formatted numbers; unsupported claims on the same topic, swapped numbers,
names and dates): the midpoint of the widest range of thresholds at which the whole
verifier (facts + meaning) is most accurate. With all-MiniLM-L6-v2 that range is
0.43-0.55, so 0.49, accuracy 0.958: the two errors are antonyms the embedding cannot see
("rejected" for "approved", "died" for "unhurt"). A claim that negates and a span that
does not ("found no damage") is caught by the facts check. ``tests/test_verify.py``
re-runs the calibration and fails if the recorded threshold leaves the best range.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.embed import Embedder, VectorCache
from app.text.citations import MARKER, marker_numbers
from app.text.dates import DATE_WORD, dates_in
from app.text.numbers import numbers_in, word_value
from app.text.sentences import split_sentences
from app.text.terms import STOPWORDS

if TYPE_CHECKING:
    from app.answer import Answer

SUPPORT_THRESHOLD = 0.49
CACHE_SIZE = 8192  # texts whose vectors are kept (float64: about 25 MB with MiniLM)

_CAPITALISED = re.compile(r"\b[A-Z][\w’'.-]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]['\"’”)]*\s+|\n\s*|[\"“‘(]\s*)$")
_WORD = re.compile(r"[\w’']+")
_COMMON_SHAPE = re.compile(r"(?:[^s]s|ing|ed|ers?|ly|tion|ment|ness)$")
_NEGATION = re.compile(r"\b(?:no|not|never|none|nobody|nothing|neither|nor|cannot)\b|n['’]t\b", re.IGNORECASE)
# Capitalised words that are not names (titles and the like); they are not required in the span.
_NOT_NAMES_TEXT = (
    "i mr mrs ms dr prof gen sen rep gov president prime minister chief secretary spokesman spokeswoman "
    "spokesperson king queen pope sir lord lady the a an"
)
_NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split())


@dataclass(frozen=True)
class Verdict:
    """Whether a claim is supported by its span, and why (or why not)."""

    supported: bool
    reason: str
    similarity: float | None = None
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Facts:
    """The checkable facts of a piece of text."""

    numbers: frozenset[float] = frozenset()
    dates: frozenset[str] = frozenset()
    entities: tuple[str, ...] = ()


@dataclass(frozen=True)
class SentenceCheck:
    """One sentence of an answer and its verdict against the sources it cites."""

    sentence: str
    sources: tuple[int, ...]
    verdict: Verdict


# -- facts ------------------------------------------------------------------------------------


def entities_in(text: str, context: str = "") -> list[str]:
    """Capitalised name words of ``text`` (not dates, titles or numbers), lower-cased, possessives dropped.

    A word at the start of a sentence counts only if ``text`` and ``context`` never use it in
    lower case and it is not a common word.
    """
    lower_words = {w for w in _WORD.findall(f"{text} {context}") if w.islower()}
    out: list[str] = []
    for match in _CAPITALISED.finditer(text):
        word = _clean(match.group())
        if not word or word in _NOT_NAMES or word in STOPWORDS or DATE_WORD.fullmatch(match.group().rstrip(".")):
            continue
        if word_value(word.replace("'", "")) is not None:
            continue  # "Thirty-one" is a number
        if _SENTENCE_START.search(text[: match.start()]) and _common_word(word, lower_words):
            continue
        if word not in out:
            out.append(word)
    return out


def _common_word(word: str, lower_words: set[str]) -> bool:
    """A sentence's first word that is probably not a name: used in lower case nearby, a function word,
    or shaped like a common word (plural, -ing, -ed, -er, -ly, -tion)."""
    return word in lower_words or word in _COMMON_STARTS or bool(_COMMON_SHAPE.search(word))


def _clean(word: str) -> str:
    word = word.replace("’", "'").rstrip(".'-")
    if word.lower().endswith("'s"):
        word = word[:-2]
    return word.lower().strip(".'")


def facts_in(text: str, context: str = "") -> Facts:
    return Facts(frozenset(numbers_in(text)), frozenset(dates_in(text)), tuple(entities_in(text, context)))


def missing_facts(claim: str, span: str, context: str = "") -> list[str]:
    """Numbers, dates and entities of ``claim`` that ``span`` does not contain (as the claim writes them)."""
    facts = facts_in(claim, f"{span} {context}")
    missing: list[str] = []
    span_numbers = numbers_in(span, lenient=True)
    for value in sorted(facts.numbers):
        if not any(math.isclose(value, other, rel_tol=1e-9, abs_tol=1e-9) for other in span_numbers):
            missing.append(_format_number(value))
    span_dates = dates_in(span)
    missing.extend(sorted(d for d in facts.dates if d not in span_dates))
    span_words = {_clean(w) for w in _WORD.findall(span)}
    span_words.discard("")
    missing.extend(e for e in facts.entities if not _word_present(e, span_words))
    if _NEGATION.search(claim) and not _NEGATION.search(span):
        missing.append("a negation")
    return missing


def _word_present(word: str, words: set[str]) -> bool:
    parts = [p for p in re.split(r"[.'-]+", word) if p]
    if word in words or (parts and all(p in words for p in parts)):
        return True
    stem = word[: max(5, len(word) - 2)]
    return len(word) >= 5 and any(w.startswith(stem) or word.startswith(w[: max(5, len(w) - 2)]) for w in words)


def _format_number(value: float) -> str:
    return f"{value:,.0f}" if value.is_integer() else f"{value:,}"


# -- complete statements ----------------------------------------------------------------------------

# Verb forms that are finite on their own (auxiliaries, modals, common irregular pasts).
_FINITE_TEXT = (
    "is are was were am has have had will would can could may might must shall should do does did isn't "
    "aren't wasn't weren't hasn't haven't hadn't won't wouldn't can't couldn't don't doesn't didn't "
    "shouldn't mustn't said told won took made came went got gave fell rose met held left led ran saw sent "
    "spent struck stood thought brought bought caught began became broke chose drew drove fought found "
    "flew grew kept knew lost meant paid sought sold spoke stole taught threw understood wrote built felt "
    "fled flung heard hid laid lay lent shot shook sank sat slid spread stuck swept swung withdrew overtook "
    "forecast"
)
_FINITE = frozenset(_FINITE_TEXT.split())
# Past tenses spelled like nouns ("a cut", "the cost"): verbs anywhere but at the start of a bullet.
_NOUN_LIKE_PAST_TEXT = "hit cut set put cost hurt let shut quit spread beat bid read"
_NOUN_LIKE_PAST = frozenset(_NOUN_LIKE_PAST_TEXT.split())
# Present-tense verbs that carry no -s after a plural subject ("Forecasters expect more rain").
_BASE_VERB_TEXT = (
    "say expect want need plan hope fear remain continue hold face believe think know see agree warn "
    "urge insist deny reject accept claim estimate predict show suggest discuss take top host meet lead "
    "win play seek join sign vote launch ask"
)
_BASE_VERBS = frozenset(_BASE_VERB_TEXT.split())
_SUBJECT_PRONOUN_TEXT = "i we they you he she it who"
_SUBJECT_PRONOUNS = frozenset(_SUBJECT_PRONOUN_TEXT.split())
# "it's", "they've", "I'm": a contracted verb ("Knight's" is a possessive, not a verb).
_CONTRACTED_VERB = re.compile(r"(?:'(?:re|ve|m|ll|d)|^(?:it|he|she|that|there|what|who|here|where)'s)$")
# A statement does not end on these.
_DANGLING_TEXT = (
    "a an the and or but nor of than which whose whom whether because while its their his our your my these those"
)
_DANGLING = frozenset(_DANGLING_TEXT.split())
# Reporting verbs whose complement is what was said: "said John Clarke of Berkeley" keeps none of it.
_SPEECH_FRAME = re.compile(r"\b(?:said|says|say|insisted|insists|argued|argues|told|tells)\b")
_PASSIVE_BEFORE = re.compile(r"\b(?:is|are|was|were|be|been|being|a|the|have|has|had)\s+$")
_NOT_S_VERB = re.compile(r"(?:ss|us|is|ics|ous|'s|’s)$")
_DEMONYM = re.compile(r"(?:ian|ican|ean|ese|ish|man|ch|i)$")  # "Russian territory", "Swedish kronor"


def incomplete_statement(text: str) -> str | None:
    """Why ``text`` is not a complete statement, or None when it is one: it needs a finite verb with a
    subject before it, must not end on a function word ("... and", "... of the"), and a reported-speech
    frame must keep a clause of what was said ("X said" + a verb; "..., police said." after a clause)."""
    words = _bare_words(text)
    if not words:
        return "no words"
    if words[-1].lower() in _DANGLING:
        return f"it ends on {words[-1]!r}"
    verbs = _finite_verbs(words)
    if not verbs:
        return "no finite verb"
    if verbs[0] == 0 and words[0].lower() in _FINITE:
        return f"no subject before {words[0]!r}"
    for frame in _SPEECH_FRAME.finditer(text):
        if _PASSIVE_BEFORE.search(text[: frame.start()]):
            continue  # "is said to ...", "has the final say"
        said = _bare_words(text[frame.end() :])
        if frame.group() in {"told", "tells"}:
            said = said[1:]  # the person told
        if _finite_verbs(said) or "to" in (w.lower() for w in said):
            continue  # "X said the talks would resume", "told residents to leave"
        if not _finite_verbs(_bare_words(text[: frame.start()])):  # not a trailing "..., police said"
            return f"{frame.group()!r} keeps nothing of what was said"
    return None


def _bare_words(text: str) -> list[str]:
    words = (w.strip("\"'“”‘’()[],;:.!?—–-") for w in text.split())
    return [w for w in words if w]


def _finite_verbs(words: Sequence[str]) -> list[int]:
    """Positions of words that can be finite verbs (liberally: a plural noun may pass as a verb)."""
    positions = []
    for k, word in enumerate(words):
        lower = word.lower().replace("’", "'")
        previous = words[k - 1] if k else ""
        after_name = k > 1 and previous[:1].isupper() and not _DEMONYM.search(previous)  # "Trump and Zelenskyy discuss"
        if (
            lower in _FINITE
            or _CONTRACTED_VERB.search(lower)
            or (lower in _NOUN_LIKE_PAST | _BASE_VERBS and k > 0)
            or (previous.lower() in _SUBJECT_PRONOUNS and word.islower() and lower not in _DANGLING)
            or (after_name and word.islower() and lower not in STOPWORDS and not lower.endswith("ly"))
            or (word.islower() and len(lower) > 3 and lower.endswith("ed"))
            or (word.islower() and len(lower) > 3 and lower.endswith("s") and not _NOT_S_VERB.search(lower))
        ):
            positions.append(k)
    return positions


# -- the verifier -------------------------------------------------------------------------------


class Verifier:
    """Checks claims against spans. Vectors of the last ``cache_size`` texts are kept (shared by the
    threads of a server, under a lock); each check holds the vectors it needs, so eviction by another
    thread never takes them away mid-check."""

    def __init__(self, embedder: Embedder, threshold: float = SUPPORT_THRESHOLD, cache_size: int = CACHE_SIZE) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.cache = VectorCache(cache_size, np.float64)

    def check(self, claim: str, spans: Sequence[str], context: str = "") -> Verdict:
        return self.check_many([(claim, spans)], context)[0]

    def check_many(
        self, items: Sequence[tuple[str, Sequence[str]]], context: str = "", *, statements: bool = False
    ) -> list[Verdict]:
        """One verdict per (claim, spans): facts must be in the spans together; meaning is the best
        similarity to any one span or to all of them joined. With ``statements`` (brief bullets) a
        claim must also be a complete statement."""
        texts: list[str] = []
        for claim, spans in items:
            texts.append(claim)
            texts.extend(spans)
            if len(spans) > 1:
                texts.append(" ".join(spans))
        vectors = self.vectors(texts)
        verdicts = [self._verdict(claim, list(spans), context, vectors) for claim, spans in items]
        if statements:
            verdicts = [_as_statement(claim, verdict) for (claim, _), verdict in zip(items, verdicts, strict=True)]
        return verdicts

    def remember(self, texts: Sequence[str], vectors: Iterable[Sequence[float]]) -> None:
        """Vectors already computed by the caller (same embedder), so checks do not embed them again."""
        self.cache.put(texts, vectors)

    def similarity(self, a: str, b: str) -> float:
        vectors = self.vectors([a, b])
        return cosine(vectors[a], vectors[b])

    def vectors(self, texts: Iterable[str]) -> dict[str, list[float]]:
        """The vector of each text: from the cache, the rest embedded in one call (and cached)."""
        wanted = list(dict.fromkeys(texts))
        found = {text: vector.tolist() for text, vector in self.cache.get(wanted).items()}
        todo = [text for text in wanted if text not in found]
        if todo:
            embedded = self.embedder.embed_documents(todo)
            found.update(zip(todo, embedded, strict=True))
            self.cache.put(todo, embedded)
        return found

    def _verdict(self, claim: str, spans: list[str], context: str, vectors: dict[str, list[float]]) -> Verdict:
        if not claim.strip():
            return Verdict(False, "empty claim")
        spans = [s for s in spans if s.strip()]
        if not spans:
            return Verdict(False, "cites no source text")
        candidates = [*spans, " ".join(spans)] if len(spans) > 1 else spans
        similarity = max(cosine(vectors[claim], vectors[s]) for s in candidates)
        missing = missing_facts(claim, " ".join(spans), context)
        if missing:
            return Verdict(False, f"not in the cited text: {', '.join(missing)}", similarity, tuple(missing))
        if similarity < self.threshold:
            return Verdict(
                False, f"meaning not supported (similarity {similarity:.2f} < {self.threshold:.2f})", similarity
            )
        return Verdict(True, f"numbers, dates and names found; similarity {similarity:.2f}", similarity)


def _as_statement(claim: str, verdict: Verdict) -> Verdict:
    problem = incomplete_statement(claim) if verdict.supported else None
    if problem is None:
        return verdict
    return Verdict(False, f"not a complete statement: {problem}", verdict.similarity)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


# -- calibration ---------------------------------------------------------------------------------


def calibrate(verifier: Verifier, pairs: Sequence[tuple[str, str, bool]]) -> tuple[float, float]:
    """The similarity threshold that maximises the verifier's accuracy on labelled (claim, span, supported)
    pairs, as the midpoint of the widest such gap; returns (threshold, accuracy)."""
    verifier.check_many([(claim, [span]) for claim, span, _ in pairs])
    scored = []
    for claim, span, label in pairs:
        facts_ok = not missing_facts(claim, span)
        scored.append((verifier.similarity(claim, span), facts_ok, label))
    cuts = sorted({s for s, _, _ in scored} | {0.0, 1.0})
    gaps = []  # (low, high, accuracy) for a threshold anywhere strictly between two observed similarities
    for low, high in itertools.pairwise(cuts):
        threshold = (low + high) / 2
        correct = sum((facts_ok and s >= threshold) == label for s, facts_ok, label in scored)
        gaps.append((low, high, correct / len(scored)))
    best_accuracy = max(accuracy for _, _, accuracy in gaps)
    regions: list[tuple[float, float]] = []  # runs of consecutive gaps at the best accuracy
    for low, high, accuracy in gaps:
        if accuracy != best_accuracy:
            continue
        if regions and regions[-1][1] == low:
            regions[-1] = (regions[-1][0], high)
        else:
            regions.append((low, high))
    low, high = max(regions, key=lambda region: region[1] - region[0])
    return (low + high) / 2, best_accuracy


# -- answers ----------------------------------------------------------------------------------------


def check_answer(answer: Answer, verifier: Verifier) -> list[SentenceCheck]:
    """Each sentence of an answer against the passages it cites ([n] markers; an unmarked sentence
    against all passages), the span being the passage's best sentence or pair of adjacent sentences.
    Unsupported sentences are recorded on ``answer.unsupported`` and in ``answer.notes``."""
    if answer.refused or not answer.passages:
        return []
    sentences = [s.text for s in split_sentences(answer.answer)]
    checks: list[SentenceCheck] = []
    items: list[tuple[str, list[str]]] = []
    cited: list[tuple[int, ...]] = []
    for sentence in sentences:
        numbers = tuple(sorted({n for m in MARKER.finditer(sentence) for n in marker_numbers(m)}))
        claim = re.sub(r"\s*" + MARKER.pattern, "", sentence).strip()
        if len(_WORD.findall(claim)) < 3:
            continue  # a fragment ("Sources differ:") states nothing checkable
        valid = tuple(n for n in numbers if 1 <= n <= len(answer.passages))
        passages = [answer.passages[n - 1] for n in valid] or answer.passages
        items.append((claim, [_best_window(verifier, claim, p.text) for p in passages]))
        cited.append(valid)
    context = " ".join(p.text for p in answer.passages)
    for (claim, spans), sources in zip(items, cited, strict=True):
        verdict = _best_of(verifier, claim, spans, context)
        checks.append(SentenceCheck(claim, sources, verdict))
        if not verdict.supported:
            answer.unsupported.append(claim)
            answer.notes.append(f"unsupported by its sources: {claim!r} ({verdict.reason})")
    return checks


def _best_of(verifier: Verifier, claim: str, spans: list[str], context: str) -> Verdict:
    """Supported by the cited spans together, or by any one of them."""
    verdicts = verifier.check_many([(claim, spans), *[(claim, [s]) for s in spans]], context)
    supported = [v for v in verdicts if v.supported]
    return supported[0] if supported else verdicts[0]


def _best_window(verifier: Verifier, claim: str, text: str) -> str:
    start, end = best_span(verifier, claim, text)
    return text[start:end]


def best_span(verifier: Verifier, claim: str, text: str) -> tuple[int, int]:
    """The span of the sentence, or two adjacent sentences, of ``text`` closest in meaning to ``claim``."""
    sentences = split_sentences(text)
    spans = [(s.start, s.end) for s in sentences]
    spans += [(a.start, b.end) for a, b in itertools.pairwise(sentences)]
    if not spans:
        return 0, len(text)
    vectors = verifier.vectors([claim, *(text[s:e] for s, e in spans)])
    return max(spans, key=lambda span: cosine(vectors[claim], vectors[text[span[0] : span[1]]]))


_COMMON_STARTS_TEXT = (
    "but and so yet also however meanwhile still then now today yesterday overnight later earlier officials "
    "local both all some many most several few each every other others another nearly about around almost "
    "despite after before during while when where if although though because since until as with without "
    "among against under over across in on at by for from into of to up down out new first last next "
    "asked told said says according"
)
_COMMON_STARTS = frozenset(_COMMON_STARTS_TEXT.split())
