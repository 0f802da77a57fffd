"""Whether the retrieved articles cover a topic at all: a topic brief refuses as ``ask`` does.

The evidence is the heuristic answer scorer's (``app.answer.extractive.HEURISTIC``): the best
embedding cosine of the topic to a sentence of the briefed passages, plus ``evidence_coverage`` times the
best share of the topic's content words one sentence holds (every word weighted alike: the
brief engines have no lexical index for IDF weights). Below its ``refuse_below`` the
topic is not covered, and the brief says so and names the nearest sentence instead of
briefing the nearest article.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.answer.extractive import HEURISTIC
from app.brief import Document
from app.brief.facts import source_label
from app.text.sentences import split_sentences
from app.text.terms import light_stem, light_stems, query_terms
from app.verify import Verifier, cosine


@dataclass(frozen=True)
class TopicEvidence:
    evidence: float
    nearest: str  # the sentence closest in meaning to the topic
    where: str  # its article's source and date (or title)

    @property
    def covered(self) -> bool:
        return self.evidence >= HEURISTIC.refuse_below

    def refusal(self, topic: str) -> str:
        return (
            f"The articles do not cover {topic!r} (evidence {self.evidence:.2f} < {HEURISTIC.refuse_below:.2f}). "
            f"The closest they come is {self.where}: {self.nearest}"
        )


def topic_evidence(topic: str, documents: list[Document], verifier: Verifier) -> TopicEvidence:
    """How well the briefed passages cover ``topic``; the verifier's vector cache saves re-embedding."""
    sentences = [
        (doc, sentence.text)
        for doc in documents
        for start, end in doc.spans
        for sentence in split_sentences(doc.article.text, start, end)
    ]
    if not sentences:
        return TopicEvidence(0.0, "", "")
    vectors = verifier.vectors([topic, *(text for _, text in sentences)])
    meanings = [cosine(vectors[topic], vectors[text]) for _, text in sentences]
    terms = {light_stem(term) for term in query_terms(topic)}
    coverage = max(len(terms & light_stems(text)) / len(terms) for _, text in sentences) if terms else 0.0
    best = max(range(len(sentences)), key=meanings.__getitem__)
    doc, nearest = sentences[best]
    article = doc.article
    where = source_label(article.source, article.published_at, article.title)
    return TopicEvidence(max(meanings) + HEURISTIC.evidence_coverage * coverage, nearest, where)
