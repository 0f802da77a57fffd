"""Load benchmark of the HTTP service: concurrent clients on /v1/ask against a real server.

    NEWSDESK_DATA_DIR=/tmp/rtqa .venv/bin/python bench/serve.py [--clients 20] [--seconds 30] [--once]

Starts ``newsdesk serve`` as a subprocess on a free loopback port over the existing store in
NEWSDESK_DATA_DIR (nothing is ingested or deleted: seeding is off), with the extractive engine
and an API key. Each client asks the next question of the questions JSONL (default
../shared/data/realtimeqa/questions_dev.jsonl), waits for the answer, and asks again until the
time is up (with ``--once``: until each question has been asked once, so the server's
embedding cache never helps); the run then stops by itself. Prints requests/s, latency p50/p95/p99, errors, the
server's CPU time per request (what the machine could sustain if the server had it alone), the
load average (other work on the machine lowers the figures), the server's peak RSS and how many
texts its embedding cache already held; exit code 1 when any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

DEFAULT_QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "realtimeqa" / "questions_dev.jsonl"
KEY = "bench-serve-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server: SIGTERM, and SIGKILL if it has not exited after 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float, path: str = "/readyz") -> None:
    """Until ``url + path`` answers 200; SystemExit with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server was not ready after {timeout:.0f} s: {log.read_text()[-3000:]}")


async def load(
    url: str, questions: list[str], clients: int, seconds: float, once: bool
) -> tuple[list[float], list[str], float]:
    """``once``: every question is asked once (no repeats, so nothing comes from the server's cache)."""
    latencies: list[float] = []
    errors: list[str] = []
    order = iter(questions) if once else itertools.cycle(questions)
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as http:
        for question in ("Who won?", "How many were killed?", "Where did it happen?"):  # warm-up, not counted
            await http.post("/v1/ask", json={"question": question})
        started_run = time.monotonic()
        deadline = started_run + seconds

        async def client() -> None:
            while time.monotonic() < deadline and (question := next(order, None)) is not None:
                started = time.perf_counter()
                try:
                    response = await http.post("/v1/ask", json={"question": question})
                    if response.status_code != 200:
                        errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                        continue
                    response.json()
                except httpx.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, time.monotonic() - started_run


def cache_figures(metrics: str) -> str:
    counts = {"hit": 0.0, "miss": 0.0}
    for line in metrics.splitlines():
        if line.startswith("newsdesk_embedding_cache_texts_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            counts[result] = float(line.rsplit(" ", 1)[1])
    total = counts["hit"] + counts["miss"] or 1.0
    return f"{counts['hit'] / total:.0%} of {total:,.0f} embedded texts came from the cache"


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", nargs="?", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--once", action="store_true", help="ask each question once (a cold cache), then stop")
    args = parser.parse_args()
    if not args.questions.exists():
        print(f"skipped: {args.questions} not found")
        return 0
    questions = [json.loads(line)["question"] for line in args.questions.read_text().splitlines() if line.strip()]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "NEWSDESK_ENGINE": "extractive",
        "NEWSDESK_SEED_CORPUS": "false",
        "NEWSDESK_API_KEYS": KEY,
        "NEWSDESK_RATE_LIMIT_PER_MINUTE": "0",
        "HF_HUB_OFFLINE": "1",
    }
    data_dir = env.get("NEWSDESK_DATA_DIR", ".newsdesk")
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with log.open("w") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, process, log, timeout=300)
            articles = httpx.get(f"{url}/readyz", timeout=10).json()["articles"]
            cpu_before = cpu_seconds(process.pid)
            latencies, errors, elapsed = asyncio.run(load(url, questions, args.clients, args.seconds, args.once))
            cpu = cpu_seconds(process.pid) - cpu_before
            rss = peak_rss_mb(process.pid)
            cache = cache_figures(httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text)
        finally:
            stop(process)
    total = len(latencies) + len(errors)
    print(f"store                {data_dir} ({articles} articles), extractive engine")
    print(f"clients              {args.clients} for {elapsed:.1f} s, {len(questions)} questions")
    print(f"requests             {total} ({len(latencies)} ok, {len(errors)} errors)")
    print(f"throughput           {len(latencies) / elapsed:.1f} requests/s")
    if latencies:
        print(f"latency p50          {percentile(latencies, 50) * 1000:.0f} ms")
        print(f"latency p95          {percentile(latencies, 95) * 1000:.0f} ms")
        print(f"latency p99          {percentile(latencies, 99) * 1000:.0f} ms")
        print(f"latency max          {max(latencies) * 1000:.0f} ms")
    if latencies:
        per_request = cpu / (len(latencies) + 3) * 1000  # the 3 warm-up questions ran in that span too
        cores = os.cpu_count() or 1
        print(
            f"server CPU           {per_request:.0f} ms per request (at most ~{cores * 1000 / per_request:.0f}"
            f" requests/s on {cores} idle cores); load average now {os.getloadavg()[0]:.1f}"
        )
    print(f"server peak RSS      {rss:.0f} MB")
    print(f"embedding cache      {cache}")
    for error in sorted(set(errors))[:5]:
        print(f"error: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
