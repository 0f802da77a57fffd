"""The LLM brief engine: numbered sources -> JSON bullets citing them -> verifier -> Brief.

The model is asked for ``{"bullets": [{"text": ..., "sources": [n, ...]}]}`` with the JSON
schema sent as ``response_format`` (``json_schema`` for OpenAI, ``json_object`` plus the
schema for llama.cpp and other OpenAI-compatible servers, or only the prompt's instructions;
``NEWSDESK_LLM_STRUCTURED_OUTPUT``). Each bullet's citation is the cited source's sentence
(or two adjacent sentences) closest in meaning to it, quoted with its exact span; the
verifier then drops bullets the cited text does not support (or that are not complete
statements) and the Brief reports them. A citation whose quote gives a different figure for the
bullet's fact is not a citation but a disagreement, noted claim by claim; of several citations,
only those supporting the bullet on their own are kept (all of them when only together they
do). Two bullets stating one fact are one, the better-cited. A topic no source covers is
refused before the model is called (``app.brief.topic``), and without a bullet count asked
for, the sources' length picks it (``app.brief.length``).
Sources that do not fit the context window are briefed in further calls (map) and the
bullets pooled, near-duplicates merged (reduce): nothing is cut off silently.
A reply that is not the expected JSON is a ``MalformedOutputError``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import TYPE_CHECKING, Any

from langchain_core.output_parsers import StrOutputParser
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.answer import Citation, EngineName
from app.answer.llm import MESSAGE_OVERHEAD_TOKENS, LLMEngine, format_source
from app.article import Section
from app.brief import Brief, BriefKind, Bullet, Document, Dropped, not_covered, number_citations
from app.brief.facts import add_distinct, differing_figures, disagreement, same_bullet, source_label
from app.brief.length import default_bullets
from app.brief.topic import topic_evidence
from app.chunk import Chunker
from app.config import Settings
from app.errors import MalformedOutputError
from app.prompts import load_prompt
from app.retrieve import Passage
from app.verify import Verifier, best_span

if TYPE_CHECKING:
    from langchain_core.language_models.chat_models import BaseChatModel

logger = logging.getLogger("newsdesk.llm")
DUPLICATE_SIMILARITY = 0.85


class BulletOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    sources: list[int]


class BriefOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bullets: list[BulletOut]


def response_format(settings: Settings) -> dict[str, Any] | None:
    mode = settings.llm_structured_output
    if mode == "auto":
        openai_itself = settings.llm_base_url is None or "api.openai.com" in settings.llm_base_url
        mode = "json_schema" if openai_itself else "json_object"
    schema = BriefOut.model_json_schema()
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "quick_looks", "schema": schema, "strict": True}}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def parse_output(raw: str, where: str) -> BriefOut:
    """The model's reply as ``BriefOut``; fences and chatter around the JSON object are tolerated."""
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", raw.strip())
    start, end = text.find("{"), text.rfind("}")
    candidate = text[start : end + 1] if 0 <= start < end else text
    try:
        return BriefOut.model_validate_json(candidate)
    except ValidationError as error:
        problem = error.errors()[0]
        reason = f"{problem['msg']} at {'.'.join(map(str, problem['loc'])) or 'the top'}"
        raise MalformedOutputError(
            f"{where} did not reply with the JSON brief asked for ({reason}); the reply starts {raw[:120]!r}. "
            "Use a model that follows JSON output, or set NEWSDESK_LLM_STRUCTURED_OUTPUT to json_schema or "
            "json_object if the server supports it."
        ) from None


class LLMBriefEngine:
    name: EngineName = "llm"

    def __init__(
        self,
        settings: Settings,
        verifier: Verifier,
        llm: LLMEngine | None = None,
        chat_model: BaseChatModel | None = None,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.llm = llm or LLMEngine(settings, chat_model)
        self.prompt = load_prompt("brief", settings.prompts_dir)
        self.chunker = Chunker(settings.chunk_tokens, settings.chunk_overlap_tokens, settings.tokenizer)

    def brief(self, documents: list[Document], *, bullets: int | None, kind: BriefKind, subject: str) -> Brief:
        """``bullets``: how many; None lets the sources' length choose (``default_bullets``)."""
        result = Brief(subject=subject, kind=kind, engine=self.name, bullets=[])
        passages = [p for doc in documents for p in self._passages(doc)]
        if not passages:
            result.notes.append("nothing to brief: no text in the input; the model was not called")
            return result
        topic = documents[0].relevance_query if kind == "topic" else ""
        if topic and not (evidence := topic_evidence(topic, documents, self.verifier)).covered:
            return not_covered(result, evidence.refusal(topic) + " (the model was not called)")
        bullets = bullets or default_bullets(documents)
        groups = self._groups(passages, bullets)
        if len(groups) > 1:
            result.notes.append(
                f"the sources did not fit the model's context in one request: briefed in {len(groups)} parts "
                "and the bullets merged"
            )
        drafts: list[tuple[str, list[Passage]]] = []
        for group in groups:
            output = self._call(group, bullets)
            for item in output.bullets:
                valid = sorted({n for n in item.sources if 1 <= n <= len(group)})
                invalid = sorted({n for n in item.sources if not 1 <= n <= len(group)})
                if invalid:
                    result.notes.append(f"removed citation(s) {invalid} from {item.text!r}: no such source")
                if not valid:
                    result.dropped.append(Dropped(item.text, "cites no source"))
                    continue
                drafts.append((item.text.strip(), [group[n - 1] for n in valid]))
        result.bullets = self._verify(drafts, bullets, result)
        return result

    # -- sources ------------------------------------------------------------------------------------

    def _passages(self, doc: Document) -> list[Passage]:
        article = doc.article
        sections = [Section("brief", start, end) for start, end in doc.spans]
        chunks = self.chunker.chunk(dataclasses.replace(article, sections=sections))
        return [
            Passage(
                chunk_id=f"{article.id}:brief:{chunk.index}",
                article_id=article.id,
                title=article.title,
                source=article.source,
                url=article.url,
                published_at=article.published_at,
                section=chunk.section,
                chunk_index=chunk.index,
                start=chunk.start,
                end=chunk.end,
                text=chunk.text,
                score=0.0,
            )
            for chunk in chunks
        ]

    def _groups(self, passages: list[Passage], bullets: int) -> list[list[Passage]]:
        """Consecutive passages packed into requests that fit the context window."""
        budget = self.settings.llm_context_tokens - self.settings.llm_max_answer_tokens
        fixed = sum(self.llm._count(text) + MESSAGE_OVERHEAD_TOKENS for _, text in self._render("", bullets))
        groups: list[list[Passage]] = [[]]
        used = fixed
        for passage in passages:
            cost = self.llm._count(format_source(len(groups[-1]) + 1, passage) + "\n\n")
            if fixed + cost > budget:
                raise MalformedOutputError(
                    f"one source ({cost} tokens) does not fit the model's context ({budget} tokens for the "
                    "prompt): raise NEWSDESK_LLM_CONTEXT_TOKENS or lower NEWSDESK_CHUNK_TOKENS"
                )
            if groups[-1] and used + cost > budget:
                groups.append([])
                used = fixed
            groups[-1].append(passage)
            used += cost
        return groups

    def _render(self, sources: str, bullets: int) -> list[tuple[str, str]]:
        return [(role, text) for role, text in self.prompt.render(sources=sources, bullets=str(bullets))]

    def _call(self, group: list[Passage], bullets: int) -> BriefOut:
        values = {
            "sources": "\n\n".join(format_source(n, p) for n, p in enumerate(group, 1)),
            "bullets": str(bullets),
        }
        self.llm._log_request("brief", self.prompt, values, group)
        model = self.llm.chat_model
        bound = model.bind(response_format=fmt) if (fmt := response_format(self.settings)) else model
        chain = self.prompt.chat_template() | bound | StrOutputParser()
        raw = self.llm._with_retries("writing a brief", lambda: chain.invoke(values))
        where = f"LLM server {self.llm.server} (model '{self.llm.model_id}')"
        return parse_output(raw, where)

    # -- citations and the verifier -------------------------------------------------------------------

    def _verify(self, drafts: list[tuple[str, list[Passage]]], bullets: int, result: Brief) -> list[Bullet]:
        cited: list[tuple[str, list[Citation], list[Citation]]] = []  # text, citations, differing ones
        for text, passages in drafts:
            citations = []
            for passage in passages:
                start, end = best_span(self.verifier, text, passage.text)
                citations.append(Citation.from_passage(0, passage, start, end))
            differing = [c for c in citations if differing_figures(text, c.quote)]
            agreeing = [c for c in citations if c not in differing]
            # (cited only by sources giving other figures: checked against them, to be dropped with the reason)
            cited.append((text, agreeing, differing) if agreeing else (text, citations, []))
        context = " ".join(dict.fromkeys(p.text for _, ps in drafts for p in ps))
        checks: list[tuple[str, list[str]]] = []
        for text, citations, _ in cited:  # all citations together, then each alone when there are several
            checks.append((text, [c.quote for c in citations]))
            checks.extend((text, [c.quote]) for c in citations if len(citations) > 1)
        verdicts = iter(self.verifier.check_many(checks, context, statements=True))
        kept: list[Bullet] = []
        notes: dict[int, list[str]] = {}
        for text, citations, differing in cited:
            together = next(verdicts)
            alone = [next(verdicts) for _ in citations] if len(citations) > 1 else [together]
            if not together.supported:
                result.dropped.append(Dropped(text, together.reason, citations + differing))
                continue
            supporting = [(c, v) for c, v in zip(citations, alone, strict=True) if v.supported]
            citations, verdict = ([c for c, _ in supporting], supporting[0][1]) if supporting else (citations, together)
            where = "; ".join(dict.fromkeys(source_label(c.source, c.published_at, c.title) for c in citations))
            bullet = Bullet(text, citations, verdict, event_date=min(c.published_at[:10] for c in citations))
            notes[id(bullet)] = [
                disagreement((where, text), (source_label(c.source, c.published_at, c.title), c.quote))
                for c in differing
            ]
            bullet.note = " | ".join(notes[id(bullet)])
            add_distinct(kept, bullet, self._same)
        kept = kept[:bullets]
        result.disagreements = [note for bullet in kept for note in notes[id(bullet)]]
        number_citations(kept)
        return kept

    def _same(self, a: Bullet, b: Bullet) -> bool:
        """One fact: a shared figure of the same thing, a sentence both cite, or nearly the same words."""
        return same_bullet(a, b) or self.verifier.similarity(a.text, b.text) >= DUPLICATE_SIMILARITY
