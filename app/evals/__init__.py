"""Stage 8: the eval harness behind ``newsdesk evals``.

Runs the real pipeline over labelled data (``labels``), scores it (``match``, ``suites``)
and reports and gates on committed thresholds (``report``). Suites over the shared
real-world data are skipped with a message when that data is absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.answer import EngineName
from app.config import CORPUS_DIR, EVALS_DIR, Settings
from app.embed import Embedder
from app.errors import InputError
from app.evals.suites import (
    Progress,
    SuiteResult,
    run_conflicts,
    run_corpus,
    run_question_file,
    run_reference_briefs,
    run_sample_brief,
    scratch_desk,
)

SUITES = ("corpus", "questions", "briefs", "conflicts")


@dataclass(frozen=True)
class EvalOptions:
    engine: EngineName = "extractive"
    questions: tuple[Path, ...] = ()
    articles: Path | None = None
    as_of: bool = True
    brief_bullets: int = 3  # CNN/DailyMail references hold 3-4 bullets
    sample_bullets: int | None = None  # the default count, picked from the article (its Quick Looks hold 8)
    corpus: Path = CORPUS_DIR
    labels: Path = EVALS_DIR / "corpus"


def run_suites(
    names: Sequence[str],
    settings: Settings,
    embedder: Embedder,
    options: EvalOptions,
    progress: Progress | None = None,
) -> list[SuiteResult]:
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        raise InputError(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    shared = settings.eval_data_dir
    results = []
    for name in names or SUITES:
        if name == "corpus":
            results.append(
                run_corpus(settings, embedder, options.corpus, options.labels, engine=options.engine, progress=progress)
            )
        elif name == "questions":
            questions = options.questions or (
                shared / "realtimeqa" / "questions_dev.jsonl",
                shared / "realtimeqa" / "questions_null_dev.jsonl",
            )
            articles = options.articles or shared / "realtimeqa" / "articles.jsonl"
            missing = [str(p) for p in (*questions, articles) if not p.exists()]
            if missing:
                results.append(SuiteResult(name, skipped=f"not found: {', '.join(missing)}"))
                continue
            results.append(
                run_question_file(
                    settings,
                    embedder,
                    questions,
                    articles,
                    engine=options.engine,
                    as_of=options.as_of,
                    progress=progress,
                )
            )
        elif name == "briefs":
            results.append(_briefs(settings, embedder, options, progress))
        else:
            questions_path = shared / "rgb_en_fact" / "questions_dev.jsonl"
            snippets_path = shared / "rgb_en_fact" / "snippets_dev.jsonl"
            if not (questions_path.exists() and snippets_path.exists()):
                results.append(SuiteResult(name, skipped=f"not found: {questions_path.parent}"))
                continue
            results.append(
                run_conflicts(
                    settings, embedder, questions_path, snippets_path, engine=options.engine, progress=progress
                )
            )
    return results


def _briefs(settings: Settings, embedder: Embedder, options: EvalOptions, progress: Progress | None) -> SuiteResult:
    references = options.articles if options.articles and not options.questions else None
    references = references or settings.eval_data_dir / "cnndm_highlights" / "articles_dev.jsonl"
    sample = settings.eval_data_dir / "seed" / "kursk_newslooks.txt"
    if not references.exists() and not sample.exists():
        return SuiteResult("briefs", skipped=f"not found: {references}, {sample}")
    desk = scratch_desk(settings, embedder, "briefs", [])  # briefs of documents given directly: no store needed
    try:
        if references.exists():
            result = run_reference_briefs(
                desk, references, bullets=options.brief_bullets, engine=options.engine, progress=progress
            )
        else:
            result = SuiteResult("briefs", notes=[f"ROUGE skipped: {references} not found"])
        if sample.exists():
            case = run_sample_brief(desk, sample, bullets=options.sample_bullets, engine=options.engine)
            result.cases.append(case)
            result.metrics["quick_looks_covered"] = case.values["quick_looks_covered"]
        else:
            result.notes.append(f"sample article skipped: {sample} not found")
    finally:
        desk.close()
    return result


__all__ = ["SUITES", "EvalOptions", "SuiteResult", "run_suites"]
