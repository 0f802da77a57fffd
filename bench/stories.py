"""Story grouping benchmark: the similarity rule on labelled pairs, and the stories of a real corpus.

    python bench/stories.py [--articles ../shared/data/realtimeqa/articles.jsonl] [--largest 5]

Prints precision and recall of ``app.stories.STORY_THRESHOLD`` on the labelled pairs of
tests/data/story_pairs.json: on the pairs of topics 1-4 (which the threshold was fitted on, and the
threshold ``fit_threshold`` picks there) and on the held-out topics 5-8, with the misses. Then groups
the articles of a JSON Lines file (the 600 RealTimeQA articles by default; skipped when absent) the way
ingest does, in a story index over an in-memory stand-in for the store, and prints how many stories
they make, how long grouping took, and the titles and sources of the largest stories.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from app.article import Article
from app.parse import parse_record
from app.stories import STORY_THRESHOLD, StoryIndex, fit_threshold, score_pairs, similarity

REPO = Path(__file__).resolve().parents[1]
PAIRS = REPO / "tests" / "data" / "story_pairs.json"
REALTIMEQA = REPO.parent / "shared" / "data" / "realtimeqa" / "articles.jsonl"
FITTED_TOPICS = 4


class ArticlesInMemory:
    """The store's reads a story index makes, over a list of articles (one version each)."""

    def __init__(self, articles: Sequence[Article]) -> None:
        self.articles = {a.id: a for a in articles}

    def generation(self) -> str:
        return str(len(self.articles))

    def live_fingerprints(self) -> dict[str, str]:
        return {i: a.content_hash[:16] for i, a in self.articles.items()}

    def get_articles(self, article_ids: Sequence[str]) -> list[Article]:
        return [self.articles[i] for i in article_ids if i in self.articles]


def labelled_pairs() -> None:
    data = json.loads(PAIRS.read_text(encoding="utf-8"))
    texts = data["articles"]
    rows = [(a, b, same, kind, similarity(texts[a], texts[b])) for a, b, same, kind in data["pairs"]]
    fitted = [(score, same) for a, _, same, _, score in rows if int(a[1]) <= FITTED_TOPICS]
    held_out = [(score, same) for a, _, same, _, score in rows if int(a[1]) > FITTED_TOPICS]
    print(f"labelled pairs: {len(rows)} ({sum(r[2] for r in rows)} same story)")
    print(f"threshold fitted on topics 1-{FITTED_TOPICS}: {fit_threshold(fitted):.3f}; shipped: {STORY_THRESHOLD}")
    for name, pairs in (("fitted", fitted), ("held out", held_out)):
        figures = score_pairs(pairs, STORY_THRESHOLD)
        print(f"  {name:9} {figures.pairs} pairs: precision {figures.precision:.3f}, recall {figures.recall:.3f}")
    for a, b, same, kind, score in rows:
        if (score >= STORY_THRESHOLD) != same:
            print(f"  miss: {a} ~ {b} ({kind}) containment {score:.2f}")


def corpus_stories(path: Path, largest: int) -> None:
    if not path.exists():
        print(f"{path} not present: skipped")
        return
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    articles = [parse_record(record, origin=str(path)) for record in lines]
    with tempfile.TemporaryDirectory() as folder:
        index = StoryIndex(Path(folder) / "stories.sqlite", ArticlesInMemory(articles))
        started = time.perf_counter()
        index.sync()
        seconds = time.perf_counter() - started
        stories = index.stories()
        index.close()
    grouped = [s for s in stories if len(s.articles) > 1]
    print(f"\n{path.name}: {len(articles)} articles -> {len(stories)} stories in {seconds:.1f} s")
    print(f"  stories of 2 or more articles: {len(grouped)}, holding {sum(len(s.articles) for s in grouped)}")
    for story in sorted(stories, key=lambda s: len(s.articles), reverse=True)[:largest]:
        print(f"  {story.id}: {len(story.articles)} articles")
        for member in story.articles:
            print(f"    {member.published_at[:10]}  {member.source:24.24}  {member.title[:90]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=Path, default=REALTIMEQA)
    parser.add_argument("--largest", type=int, default=5)
    args = parser.parse_args()
    labelled_pairs()
    corpus_stories(args.articles, args.largest)


if __name__ == "__main__":
    main()
