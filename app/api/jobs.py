"""Ingest jobs: an upload is answered ``202 Accepted`` at once and ingested in the background.

``POST /v1/articles/upload`` checks the file (type, size, text, parse) in the request, then
hands the article to ``Jobs``; ``GET /v1/jobs/{id}`` reports its status (queued, running,
done, failed), progress (chunks staged of the article's total) and outcome (the article's id,
title, added/updated/unchanged, chunks; or the error).

Two lanes, each one worker thread: articles up to ``SMALL_ARTICLE_CHARS`` characters go to
one, longer ones to the other, so a short upload never queues behind a long one. Both ingest
through ``Newsdesk.ingest_article``, which holds the store's write lock only per batch of
chunks and for the commit, so the two lanes (and synchronous ``POST /v1/articles``) interleave.
They also share two cores: after each batch a long upload waits while small ingests (the small
lane's, and short ``POST /v1/articles``, through ``run_small``) are running, up to
``MAKE_WAY_S`` a batch, so a stream of small ones slows a long one but never stops it.

Finished jobs are kept ``KEEP_SECONDS`` and at most ``KEEP_FINISHED`` of them; at most
``MAX_WAITING`` jobs wait at once (a further upload gets 503 with Retry-After).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from app.api.errors import ApiError, from_newsdesk
from app.api.schemas import ErrorDetail, IngestOut, JobOut, JobProgressOut
from app.api.state import unavailable
from app.errors import NewsdeskError

log = logging.getLogger("newsdesk.jobs")

JobStatus = Literal["queued", "running", "done", "failed"]
Lane = Literal["small", "large"]

SMALL_ARTICLE_CHARS = 20_000  # about 25 chunks: seconds of work
KEEP_SECONDS = 3600.0
KEEP_FINISHED = 500
MAX_WAITING = 50
RETRY_AFTER_S = 10
MAKE_WAY_S = 10.0


class JobCancelled(Exception):
    """Raised inside a running job when the server shuts down."""


@dataclass
class Job:
    id: str
    file: str
    lane: Lane
    created_at: float
    status: JobStatus = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    chunks_done: int = 0
    chunks_total: int | None = None  # known once the article is chunked
    outcome: IngestOut | None = None
    failure: ErrorDetail | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    def out(self) -> JobOut:
        return JobOut(
            id=self.id,
            status=self.status,
            file=self.file,
            created_at=_utc(self.created_at),
            started_at=_utc(self.started_at) if self.started_at is not None else None,
            finished_at=_utc(self.finished_at) if self.finished_at is not None else None,
            progress=JobProgressOut(
                articles_done=int(self.outcome is not None),
                articles_total=1,
                chunks_done=self.chunks_done,
                chunks_total=self.chunks_total,
            ),
            article=self.outcome,
            error=self.failure,
        )


Progress = Callable[[int, int], None]
"""(chunks staged, chunks in all): what a job's work reports; raises JobCancelled at shutdown."""
Work = Callable[[Progress], IngestOut]


@dataclass
class _Lane:
    waiting: queue.Queue[tuple[Job, Work] | None] = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None


class Jobs:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # oldest first
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._lanes: dict[Lane, _Lane] = {"small": _Lane(), "large": _Lane()}
        self._small_running = 0
        self._small_done = threading.Condition()

    @staticmethod
    def lane_for(characters: int) -> Lane:
        return "small" if characters <= SMALL_ARTICLE_CHARS else "large"

    def submit(self, file: str, characters: int, work: Work) -> Job:
        """Queue ``work`` (an article of ``characters``) as a job; ApiError 503 when too many wait."""
        if self._closing.is_set():
            raise unavailable("the server is shutting down", "shutting_down", RETRY_AFTER_S)
        with self._lock:
            self._forget_old(time.time())
            waiting = sum(1 for job in self._jobs.values() if job.status == "queued")
            if waiting >= MAX_WAITING:
                raise unavailable(
                    f"{waiting} uploads are already waiting to be ingested", "ingest_queue_full", RETRY_AFTER_S
                )
            job = Job(uuid.uuid4().hex, file, self.lane_for(characters), time.time())
            self._jobs[job.id] = job
            lane = self._lanes[job.lane]
            if lane.thread is None:
                lane.thread = threading.Thread(target=self._work, args=(lane,), name=f"ingest-{job.lane}", daemon=True)
                lane.thread.start()
            snapshot = replace(job)
        lane.waiting.put((job, work))
        return snapshot

    def run_small(self, work: Callable[[], IngestOut]) -> IngestOut:
        """Run a small ingest in the caller's thread (``POST /v1/articles``); long uploads make way for it."""
        with self._small_done:
            self._small_running += 1
        try:
            return work()
        finally:
            with self._small_done:
                self._small_running -= 1
                self._small_done.notify_all()

    def ingesting(self) -> bool:
        """Whether an ingest is running (a job, or a short ``POST /v1/articles``)."""
        with self._lock:
            running = any(job.status == "running" for job in self._jobs.values())
        return running or self._small_running > 0

    def get(self, job_id: str) -> Job:
        """A snapshot of the job; ApiError 404 for an unknown (or forgotten) one."""
        with self._lock:
            self._forget_old(time.time())
            job = self._jobs.get(job_id)
            if job is None:
                raise ApiError(
                    404,
                    f"no job with id '{job_id}' (finished jobs are kept for {KEEP_SECONDS / 3600:g} h, "
                    f"the last {KEEP_FINISHED})",
                    kind="not_found_error",
                    code="not_found",
                )
            return replace(job)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the workers: a running job stops after its current batch (failed, to be uploaded again)."""
        self._closing.set()
        with self._small_done:
            self._small_done.notify_all()
        for lane in self._lanes.values():
            lane.waiting.put(None)
        for lane in self._lanes.values():
            if lane.thread is not None:
                lane.thread.join(timeout)

    def _work(self, lane: _Lane) -> None:
        while (item := lane.waiting.get()) is not None:
            job, work = item
            if self._closing.is_set():
                self._finish(job, failure=_stopped())
            else:
                self._run(job, work)

    def _run(self, job: Job, work: Work) -> None:
        self._update(job, status="running", started_at=time.time())
        try:
            if job.lane == "small":
                outcome = self.run_small(lambda: work(lambda done, total: self._progress(job, done, total)))
            else:
                outcome = work(lambda done, total: self._progress(job, done, total, make_way=True))
        except JobCancelled:
            self._finish(job, failure=_stopped())
        except NewsdeskError as error:
            refused = from_newsdesk(error)
            self._finish(job, failure=ErrorDetail(message=refused.message, type=refused.kind, code=refused.code))
        except Exception:  # a worker thread must outlive any one job; the job says what happened
            log.exception("ingest job %s (%s) failed", job.id, job.file)
            failure = ErrorDetail(message="the ingest failed; details are in the server log", type="server_error")
            self._finish(job, failure=failure)
        else:
            self._finish(job, outcome=outcome)

    def _progress(self, job: Job, done: int, total: int, make_way: bool = False) -> None:
        if self._closing.is_set():
            raise JobCancelled
        self._update(job, chunks_done=done, chunks_total=total)
        if make_way and done < total:
            self._wait_for_small_ingests()

    def _wait_for_small_ingests(self) -> None:
        give_up = time.monotonic() + MAKE_WAY_S
        with self._small_done:
            while self._small_running and not self._closing.is_set() and (left := give_up - time.monotonic()) > 0:
                self._small_done.wait(left)

    def _finish(self, job: Job, *, outcome: IngestOut | None = None, failure: ErrorDetail | None = None) -> None:
        status: JobStatus = "done" if outcome is not None else "failed"
        self._update(job, status=status, finished_at=time.time(), outcome=outcome, failure=failure)
        if outcome is not None:  # an unchanged article stages nothing: all of it is done all the same
            self._update(job, chunks_done=outcome.chunks, chunks_total=outcome.chunks)
        log.info("ingest job %s (%s) %s", job.id, job.file, status)

    def _update(self, job: Job, **changes: object) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(job, name, value)

    def _forget_old(self, now: float) -> None:
        finished = [job for job in self._jobs.values() if job.finished]
        expired = {job.id for job in finished if job.finished_at is not None and now - job.finished_at > KEEP_SECONDS}
        expired.update(job.id for job in finished[: max(0, len(finished) - KEEP_FINISHED)])
        for job_id in expired:
            del self._jobs[job_id]


def _stopped() -> ErrorDetail:
    return ErrorDetail(
        message="the server stopped before this upload was ingested; upload the file again",
        type="service_unavailable",
        code="server_stopped",
    )


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
