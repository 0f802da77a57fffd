"""Question-answering quality and latency on a questions JSONL over an ingested store.

    NEWSDESK_DATA_DIR=/tmp/rtqa newsdesk ingest ../shared/data/realtimeqa/articles.jsonl
    NEWSDESK_DATA_DIR=/tmp/rtqa python bench/qa.py [QUESTIONS_JSONL ...] [--dump cases.jsonl]

Defaults to the RealTimeQA dev and null questions. Prints Hits@1/4/10, MRR@10, answer
accuracy, refusal rates and latency (extractive engine).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.config import Settings
from app.evals import load_questions, run_questions, summarize
from app.service import Newsdesk

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "realtimeqa"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", nargs="*", type=Path)
    parser.add_argument("--dump", type=Path, help="write every case as JSON Lines")
    args = parser.parse_args()
    paths = args.questions or [SHARED / "questions_dev.jsonl", SHARED / "questions_null_dev.jsonl"]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"skipped: {', '.join(map(str, missing))} not found")
        return 0
    desk = Newsdesk(Settings())
    desk.embedder.embed_query("warm up")
    questions = [q for path in paths for q in load_questions(path)]
    results = run_questions(desk, questions)
    for key, value in summarize(results).items():
        print(f"{key:<24} {value:.3f}")
    if args.dump:
        with args.dump.open("w", encoding="utf-8") as out:
            for r in results:
                case = {
                    "id": r.question.id,
                    "type": r.question.type,
                    "weak": r.question.weak,
                    "question": r.question.question,
                    "gold": r.question.answers,
                    "rank": r.rank,
                    "correct": r.correct,
                    "refused": r.answer.refused,
                    "answer": r.answer.answer,
                }
                out.write(json.dumps(case) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
