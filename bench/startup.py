"""How soon ``newsdesk serve`` answers: seconds from starting the process to its port accepting a TCP
connection, and to the first ``GET /healthz`` 200, before and after the port was bound ahead of the
imports (issue 14), side by side.

    .venv/bin/python bench/startup.py [--runs 5] [--before REV]

"before" is ``app/`` and ``prompts/`` of git revision REV (default: the last commit whose serve opened
its port only after importing the app), unpacked into a temporary folder and run from there with this
venv; "after" is this checkout. Both run ``python -m app serve`` on a free loopback port over a fresh
empty store (no seeding, no feed polling), in turn, ``--runs`` times each. The client tries to connect
every 5 ms; once connected it sends ``GET /healthz`` on that connection (a request that arrives while
the app is still being imported waits in the listen backlog) and, if that is not a 200, asks again.
Prints each run and the medians, and the load average (other work on the machine slows start-up).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import free_port, stop  # bench/serve.py

REPO = Path(__file__).resolve().parents[1]
BEFORE = "e1110ba"  # serve imported the CLI's and the app's modules, then uvicorn bound the port
POLL_S = 0.005
TIMEOUT_S = 120.0
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: newsdesk\r\nConnection: close\r\n\r\n"


def unpack(revision: str, into: Path) -> Path:
    """``app/`` and ``prompts/`` as they were at ``revision``; ``python -m app`` run there imports them."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision, "app", "prompts"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    found = subprocess.run(
        [sys.executable, "-c", "import app.cli; print(app.cli.__file__)"], cwd=into, capture_output=True, text=True
    )
    if not found.stdout.startswith(str(into)):
        raise SystemExit(f"the unpacked {revision} is not what python -m app imports: {found.stdout}{found.stderr}")
    return into


def healthz(port: int, deadline: float) -> tuple[float, bytes] | None:
    """When the port accepted a connection, and the reply to /healthz sent on it (None: refused)."""
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=1)
    except ConnectionRefusedError:
        return None
    with conn:
        connected = time.monotonic()
        conn.settimeout(max(deadline - connected, 1))
        conn.sendall(HEALTHZ)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return connected, reply


def one_start(workdir: Path, data: Path) -> tuple[float, float]:
    """Seconds from starting ``python -m app serve`` in ``workdir`` to a TCP connection being accepted,
    and to the first /healthz 200."""
    port = free_port()
    env = {
        **os.environ,
        "NEWSDESK_DATA_DIR": str(data),
        "NEWSDESK_SEED_CORPUS": "false",
        "NEWSDESK_WATCH_FEEDS": "false",
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = data / "server.log"
    data.mkdir(parents=True)
    accepted = None
    with log.open("w") as out:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = started + TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise SystemExit(f"the server exited: {log.read_text()[-3000:]}")
                got = healthz(port, deadline)
                if got is None:
                    time.sleep(POLL_S)
                    continue
                connected, reply = got
                if accepted is None:
                    accepted = connected - started
                if reply.startswith(b"HTTP/1.1 200"):
                    return accepted, time.monotonic() - started
            raise SystemExit(f"no /healthz 200 after {TIMEOUT_S:.0f} s: {log.read_text()[-3000:]}")
        finally:
            stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="Starts of each side (default 5).")
    parser.add_argument("--before", default=BEFORE, help=f"The git revision for 'before' (default {BEFORE}).")
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="newsdesk-startup-") as tmp:
        sides = {"before": unpack(args.before, Path(tmp) / "before"), "after": REPO}
        for run in range(args.runs):
            for side, workdir in sides.items():
                accepted, healthy = one_start(workdir, Path(tmp) / f"data-{side}-{run}")
                figures[side].append((accepted, healthy))
                print(f"run {run + 1} {side:6}: port accepts {accepted:5.2f} s, /healthz 200 {healthy:5.2f} s")
    print(f"\nmedians of {args.runs} starts each (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores):")
    print(f"{'':24} {'port accepts':>13} {'/healthz 200':>13}")
    for side, label in (("before", f"before ({args.before})"), ("after", "after (this checkout)")):
        accepted = statistics.median(a for a, _ in figures[side])
        healthy = statistics.median(h for _, h in figures[side])
        print(f"{label:24} {accepted:11.2f} s {healthy:11.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
