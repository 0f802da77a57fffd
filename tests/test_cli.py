"""The newsdesk command as a user runs it: a real process, real files, real Chroma."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
    assert "broken.jsonl:2: not valid JSON" in result.stderr
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
