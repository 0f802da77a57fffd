"""The newsdesk command as a user runs it: a real process, real files, real Chroma."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.config import Settings
from app.embed import Embedder
from app.store import Store

from .conftest import copy_corpus

pytestmark = pytest.mark.slow
NEWSDESK = [sys.executable, "-m", "app"]


def run(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "NEWSDESK_DATA_DIR": str(data_dir), "COLUMNS": "200", **env}
    return subprocess.run([*NEWSDESK, *args], capture_output=True, text=True, env=environment, timeout=600, check=False)


def test_ingest_list_show_search_delete_stats(tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path / "corpus", count=4)
    data = tmp_path / "data"

    first = run(["ingest", str(tmp_path / "corpus")], data)
    assert first.returncode == 0, first.stderr
    assert "articles added" in first.stdout, "a summary table"
    assert "ingesting" in first.stderr and "4/4" in first.stderr, "a progress bar"

    listed = json.loads(run(["articles", "--json"], data).stdout)
    assert len(listed) == 4 and all(a["chunk_count"] > 0 for a in listed)
    article_id = listed[0]["id"]

    shown = json.loads(run(["show", article_id, "--json"], data).stdout)
    assert shown["title"] == listed[0]["title"] and len(shown["quick_looks"]) >= 6
    assert shown["origin"] in {str(p) for p in corpus}

    query = shown["quick_looks"][0]
    hits = json.loads(run(["search", query, "--k", "3", "--json"], data).stdout)
    assert len(hits) == 3
    assert hits[0]["article_id"] == article_id
    assert shown["text"][hits[0]["start"] : hits[0]["end"]] == hits[0]["text"]
    assert hits[0]["dense_rank"] and hits[0]["lexical_rank"], "hybrid, as GET /v1/search"

    again = json.loads(run(["ingest", str(tmp_path / "corpus"), "--json"], data).stdout)
    assert (again["unchanged"], again["added"], again["chunks_embedded"]) == (4, 0, 0)

    assert run(["delete", article_id], data).returncode == 0
    stats = json.loads(run(["stats", "--json"], data).stdout)
    assert stats["articles"] == 3 and stats["mode"] == "embedded"
    missing = run(["show", article_id], data)
    assert missing.returncode == 1 and f"no article with id '{article_id}' (see 'newsdesk articles')" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_read_ahead_reads_each_stored_sentence_once_with_a_progress_bar(tmp_path: Path) -> None:
    copy_corpus(tmp_path / "corpus", count=2)
    data = tmp_path / "data"
    assert run(["ingest", str(tmp_path / "corpus")], data).returncode == 0

    first = run(["read-ahead"], data)
    assert first.returncode == 0, first.stderr
    assert "reading sentences ahead" in first.stderr, "a progress bar"
    read, saved = (
        int(n.replace(",", ""))
        for n in re.findall(r"read ([\d,]+) sentences ahead .*; ([\d,]+) saved", first.stdout)[0]
    )
    assert read > 20 and saved == read
    assert (data / "reader-vectors.sqlite").is_file()

    again = run(["read-ahead"], data)
    assert again.returncode == 0 and "read 0 sentences ahead" in again.stdout and f"{saved:,} saved" in again.stdout

    off = run(["read-ahead"], data, NEWSDESK_READ_AHEAD="false")
    assert off.returncode == 0 and "needs NEWSDESK_READER=learned and NEWSDESK_READ_AHEAD=true" in off.stdout


def test_bad_files_fail_alone_and_leave_the_store_untouched(tmp_path: Path) -> None:
    copy_corpus(tmp_path / "in", count=2)
    data = tmp_path / "data"
    assert run(["ingest", str(tmp_path / "in")], data).returncode == 0
    before = json.loads(run(["stats", "--json"], data).stdout)

    (tmp_path / "in" / "broken.jsonl").write_text('{"id": "x", "body": "Fine text here."}\n{oops\n', encoding="utf-8")
    (tmp_path / "in" / "binary.txt").write_bytes(b"\x00\x01\x02")
    result = run(["ingest", str(tmp_path / "in")], data)
    assert result.returncode == 1
    assert "binary.txt: looks like a binary file" in result.stderr
    assert "broken.jsonl, line 2: not valid JSON at column 2: a key must be in double quotes" in result.stderr
    assert "Traceback" not in result.stderr
    after = json.loads(run(["stats", "--json"], data).stdout)
    assert after["articles"] == before["articles"] + 1, "the good record still went in"


def test_invalid_setting_is_a_readable_error(tmp_path: Path) -> None:
    result = run(["stats"], tmp_path, NEWSDESK_CHUNK_TOKENS="lots")
    assert result.returncode == 2
    assert "NEWSDESK_CHUNK_TOKENS" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_chroma_server_is_a_readable_error(tmp_path: Path) -> None:
    result = run(["stats"], tmp_path, NEWSDESK_CHROMA_HOST="127.0.0.1", NEWSDESK_CHROMA_PORT="9")
    assert result.returncode == 1
    assert "Chroma server" in result.stderr and "Traceback" not in result.stderr


def test_sigkill_mid_ingest_then_rerun_finishes_without_duplicates(tmp_path: Path, embedder: Embedder) -> None:
    copy_corpus(tmp_path / "corpus")
    data = tmp_path / "data"
    env = {
        **os.environ,
        "NEWSDESK_DATA_DIR": str(data),
        "NEWSDESK_LOG_LEVEL": "INFO",
        "NEWSDESK_EMBEDDING_BATCH_SIZE": "4",
    }
    process = subprocess.Popen(
        [*NEWSDESK, "ingest", str(tmp_path / "corpus")],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    committed = 0
    for line in process.stderr:
        committed += "committed" in line
        if committed == 3:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "the run was killed part way"

    settings = Settings(data_dir=data)
    store = Store.open(settings, embedder)
    partial = store.list_articles()
    assert 3 <= len(partial) < len(list((tmp_path / "corpus").glob("*.txt")))
    live = {r.id: r.fingerprint for r in partial}
    for hit in store.query(embedder.embed_query("government announcement"), k=50):
        assert live.get(hit.article_id) is not None, "only committed articles are searchable"
    del store

    rerun = run(["ingest", str(tmp_path / "corpus"), "--json"], data)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["chunks_reused"] + json.loads(rerun.stdout)["unchanged"] >= 3
    store = Store.open(settings, embedder)
    records = store.list_articles()
    assert len(records) == len(list((tmp_path / "corpus").glob("*.txt")))
    metas = store.chunks.get(include=["metadatas"])["metadatas"] or []
    assert len(metas) == sum(r.chunk_count for r in records), "no duplicate or stale chunks"
    assert {(m["article_id"], m["fingerprint"]) for m in metas} == {(r.id, r.fingerprint) for r in records}
    unchanged = json.loads(run(["ingest", str(tmp_path / "corpus"), "--json"], data).stdout)
    assert (unchanged["unchanged"], unchanged["chunks_embedded"]) == (len(records), 0)


@dataclass
class Ingested:
    data: Path
    result: subprocess.CompletedProcess[str]
    articles: int


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    """The bundled corpus ingested once by a real ``newsdesk ingest``."""
    root = tmp_path_factory.mktemp("cli-corpus")
    files = copy_corpus(root / "corpus")
    result = run(["ingest", str(root / "corpus")], root / "data")
    assert result.returncode == 0, result.stderr
    return Ingested(root / "data", result, len(files))


def test_ingest_rate_is_articles_over_the_time_elapsed(ingested: Ingested) -> None:
    """The bar's articles/s agrees with its own count and elapsed time (it printed 100,418/s for a run
    doing 0.7/s: rich's speed spans only the last burst of updates)."""
    bars = re.findall(
        r"(\d+)/\d+ articles · \d+ chunks · ([\d,.]+) articles/s (\d+):(\d\d):(\d\d)", ingested.result.stderr
    )
    assert bars, ingested.result.stderr
    done, rate_text, hours, minutes, seconds = bars[-1]
    assert int(done) == ingested.articles
    rate = float(rate_text.replace(",", ""))
    elapsed = int(hours) * 3600 + int(minutes) * 60 + int(seconds)  # whole seconds, rounded down
    assert ingested.articles / (elapsed + 1) - 0.05 <= rate
    if elapsed:
        assert rate <= ingested.articles / elapsed + 0.05


def test_articles_prints_ids_whole_in_a_narrow_terminal(ingested: Ingested) -> None:
    ids = [a["id"] for a in json.loads(run(["articles", "--json"], ingested.data).stdout)]
    table = run(["articles"], ingested.data, COLUMNS="60")
    assert table.returncode == 0, table.stderr
    printed = re.findall(r"^│ (\S+)", table.stdout, re.MULTILINE)
    assert printed == ids, "every id on one line, whole, ready to copy into 'show' and 'brief'"
    shown = run(["show", printed[0]], ingested.data)
    assert shown.returncode == 0 and f"id {ids[0]}" in shown.stdout


def test_topic_brief_numbers_citations_in_reading_order(ingested: Ingested) -> None:
    """Bullets put in date order keep their citations numbered 1, 2, ... as they are read."""
    topic = "civilians killed in overnight Russian strikes on Ukraine"
    brief = json.loads(run(["brief", "--topic", topic, "--json"], ingested.data).stdout)
    assert "bullets in date order: the articles report events on different days" in brief["notes"]
    numbers = [c["number"] for b in brief["bullets"] for c in b["citations"]]
    assert numbers == first_appearance_order(numbers)
    assert [c["number"] for c in brief["sources"]] == list(range(1, max(numbers) + 1))
    printed = run(["brief", "--topic", topic], ingested.data).stdout
    bullet_marks = [
        int(n) for line in printed.splitlines() if line.startswith("- ") for n in re.findall(r"\[(\d+)\]", line)
    ]
    assert bullet_marks == numbers


def first_appearance_order(numbers: list[int]) -> list[int]:
    """``numbers`` renumbered 1, 2, ... in order of first appearance."""
    seen: dict[int, int] = {}
    return [seen.setdefault(n, len(seen) + 1) for n in numbers]


def test_missing_source_fields_are_left_out(tmp_path: Path) -> None:
    """Records without a date: no '(Newslooks, )' in the answer, no empty '·  ·' in the listings."""
    records = [
        {
            "id": "crash-a",
            "title": "Bridge Crash Injures Commuters",
            "source": "Newslooks",
            "body": "Officials said 12 people were injured when a bus hit the Orwell bridge railing on Monday.",
        },
        {
            "id": "crash-b",
            "title": "Hospital Counts Bridge Crash Injured",
            "source": "Harbor Ledger",
            "body": "Hospital staff said 19 people were injured when a bus hit the Orwell bridge railing on Monday.",
        },
    ]
    feed = tmp_path / "crash.jsonl"
    feed.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    data = tmp_path / "data"
    assert run(["ingest", str(feed)], data).returncode == 0

    answer = run(["ask", "How many people were injured when the bus hit the Orwell bridge?"], data)
    assert answer.returncode == 0, answer.stderr
    assert "Sources differ" in answer.stdout, answer.stdout
    assert "(Newslooks)" in answer.stdout and "(Harbor Ledger)" in answer.stdout
    brief = run(["brief", "crash-a"], data)
    shown = run(["show", "crash-a"], data)
    for output in (answer.stdout, brief.stdout, shown.stdout):
        assert ", )" not in output and "()" not in output
        assert not re.search(r"·\s+·", output), output
    assert "Bridge Crash Injures Commuters · Newslooks · crash-a" in answer.stdout + brief.stdout
    assert "Newslooks\n" in shown.stdout, "only the fields the article has"


def test_pdf_and_other_documents_say_they_are_not_supported(tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
    renamed = tmp_path / "scan.txt"  # known by its first bytes, whatever its name
    renamed.write_bytes(b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n")
    docx = tmp_path / "letter.docx"
    docx.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01")
    result = run(["ingest", str(pdf), str(renamed), str(docx), str(photo)], tmp_path / "data")
    assert result.returncode == 1
    errors = " ".join(result.stderr.split())  # rich wraps long lines
    assert f"{pdf}: this is a PDF, not text: PDFs are not supported; convert it to text or HTML first" in errors
    assert "pdftotext report.pdf report.txt" in errors
    assert f"{renamed}: this is a PDF" in errors
    assert f"{docx}: this is a word-processor document" in errors and "pandoc letter.docx -o letter.md" in errors
    assert f"{photo}: this is an image" in errors
    assert "UTF-8" not in errors and "Traceback" not in errors


def test_malformed_json_records_are_reported_in_words(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        '{"id": "ok-1", "body": "The council met on Monday."}\n'
        '{"id": "bad-2", "body": "Trailing comma here.",}\n'
        "{'id': 'bad-3', 'body': 'Single quotes.'}\n"
        '{"id": "bad-4", "body": "Never closed.}\n',
        encoding="utf-8",
    )
    array = tmp_path / "array.json"
    array.write_text('[\n  {"id": "a-1", "body": "First."}\n  {"id": "a-2", "body": "Second."}\n]\n', encoding="utf-8")
    pretty = tmp_path / "one.json"
    pretty.write_text(
        json.dumps({"id": "pretty-1", "body": "One record over several lines."}, indent=2), encoding="utf-8"
    )
    data = tmp_path / "data"
    result = run(["ingest", str(feed), str(array), str(pretty), "--json"], data)
    assert result.returncode == 1
    errors = json.loads(result.stdout)["errors"]
    assert errors == [
        f"{feed}, line 2: not valid JSON at column 48: a key must be in double quotes, and there must be no comma "
        "before a closing brace",
        f"{feed}, line 3: not valid JSON at column 2: a key must be in double quotes, and there must be no comma "
        "before a closing brace",
        f"{feed}, line 4: not valid JSON at column 25: the string that starts there is never closed with a "
        "double quote",
        f"{array}: not valid JSON at line 3, column 3: a comma is missing between two items",
    ]
    stored = {a["id"] for a in json.loads(run(["articles", "--json"], data).stdout)}
    assert stored == {"ok-1", "pretty-1"}, "the good line and the pretty-printed object went in"
