"""Run Math-Verify comparisons in worker processes that are killed and replaced when they pass a deadline.

Math-Verify's own timeout uses `signal.alarm`, which only works on the main thread and cannot interrupt long
C-level work (sympy evaluating `9^{9^{9^{9}}}`), so the timeout is enforced here, from outside: a worker that
passes its deadline is killed and replaced, and only the comparison it was stuck on is lost. Comparisons go
out in chunks and come back one by one, so a deadline covers one comparison, not a whole chunk.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Literal

logger = logging.getLogger(__name__)

Verdict = Literal["math_verify", "timeout", "error"]
"""The rules a pool can decide by: a subset of `cotlab.trainer.grading.grader.Rule`."""

Comparison = tuple[int, str, str]
"""(slot, gold, predicted), both already NeMo-normalised; the slot names the comparison's outcome."""

Outcome = tuple[bool, Verdict, str | None]
"""(correct, rule, detail) for one comparison."""

_Result = tuple[int, bool, str | None]  # what a worker sends back: (slot, equal, error)

_CHUNK_SIZE = 32
"""Comparisons sent to a worker per message: amortises pipe round trips (~0.1 ms) over ~1 ms comparisons."""

# NeMo-Skills' test for "already in a LaTeX environment"; anything else is wrapped in `$...$`.
_LATEX_ENV = re.compile(r"\$.*\$|\\\(.*\\\)|\\\[.*\\\]|\\boxed\{", re.DOTALL)


def _wrap_for_math_verify(answer: str) -> str:
    """Wrap `answer` in `$...$` unless it already is LaTeX, so Math-Verify's LaTeX extraction finds it."""
    return answer if _LATEX_ENV.search(answer) else f"${answer}$"


def _math_verify_equal(gold: str, predicted: str) -> bool:
    """Math-Verify on answer strings, gold first. Called in workers, whose parent enforces the timeout."""
    from math_verify import parse, verify  # the parent never needs sympy

    # Timeouts off (None): signals cannot stop C-level work, so the parent kills the worker instead.
    gold_parsed = parse(_wrap_for_math_verify(gold), parsing_timeout=None)
    pred_parsed = parse(_wrap_for_math_verify(predicted), parsing_timeout=None)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _serve(conn: Connection) -> None:
    """Worker loop: receive chunks of comparisons, send one result per comparison as soon as it is known."""
    import warnings

    warnings.simplefilter("ignore")
    # The "timeout is disabled" warning is expected here: the parent enforces the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    conn.send(None)  # ready: the parent starts deadlines only now, so a slow start never counts as a timeout
    while True:
        try:
            chunk: list[Comparison] = conn.recv()
        except (EOFError, OSError):
            return
        for slot, gold, predicted in chunk:
            try:
                result: _Result = (slot, _math_verify_equal(gold, predicted), None)
            except Exception as exc:  # noqa: BLE001 - model text must never take the worker down
                result = (slot, False, f"{type(exc).__name__}: {exc}"[:200])
            conn.send(result)


_START_TIMEOUT_S = 120.0
"""How long a new worker may take to start (import Math-Verify) before grading gives up: minutes on a loaded
machine are possible, and start-up must not eat into a comparison's own timeout."""


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    in_flight: deque[Comparison]
    deadline: float = 0.0


class MathVerifyPool:
    """Worker processes for Math-Verify comparisons, started on first need and reused across `run` calls.

    Not thread-safe: `cotlab.trainer.grading.grader.Grader` serialises calls. See `Grader` for `start_method`.

    Fork-safe: a process forked after the pool started (a DataLoader worker, a test runner) inherits copies of
    the parent's pipes, and talking to the parent's workers would interleave with the parent's own comparisons.
    The child forgets them without touching them and starts workers of its own on first need.
    """

    def __init__(self, *, workers: int, timeout_s: float, start_method: str) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self._context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # Replacements for killed workers fork from a server that has Math-Verify imported already.
            self._context.set_forkserver_preload(["math_verify", __name__])
        self._pool: list[_Worker | None] = [None] * workers
        self._owner = os.getpid()

    def _forget_inherited(self) -> None:
        """In a forked child: drop the parent's workers (only our copies of their pipes are closed)."""
        if os.getpid() == self._owner:
            return
        for worker in self._pool:
            if worker is not None:
                worker.conn.close()
        self._pool = [None] * self.workers
        self._owner = os.getpid()
        if self._context.get_start_method() == "forkserver":
            # The parent's fork server is not this process's child: `ForkServer.ensure_running` calls
            # `os.waitpid` on it and gets ChildProcessError (CPython 3.11 multiprocessing/forkserver.py).
            # Spawned workers need nothing from the parent.
            self._context = multiprocessing.get_context("spawn")

    def close(self) -> None:
        """Stop the workers. Idempotent."""
        self._forget_inherited()
        for i, worker in enumerate(self._pool):
            if worker is not None:
                self._stop(worker)
                self._pool[i] = None

    def run(self, tasks: Sequence[Comparison]) -> dict[int, Outcome]:
        """Run comparisons on the workers; kill and replace any worker that passes its deadline."""
        self._forget_inherited()
        outcomes: dict[int, Outcome] = {}
        pending = deque(tasks)
        while pending or any(w is not None and w.in_flight for w in self._pool):
            # Only idle workers get work: their pipe is empty, so a send never blocks this loop.
            for i in range(self.workers):
                worker = self._pool[i]
                if pending and (worker is None or not worker.in_flight):
                    worker = worker or self._start()
                    self._pool[i] = worker
                    share = -(-len(pending) // self.workers)  # small batches still use every worker
                    chunk = [pending.popleft() for _ in range(min(_CHUNK_SIZE, share, len(pending)))]
                    worker.in_flight.extend(chunk)
                    worker.deadline = time.monotonic() + self.timeout_s
                    worker.conn.send(chunk)
            busy = [w for w in self._pool if w is not None and w.in_flight]
            next_deadline = min(w.deadline for w in busy)
            ready = wait([w.conn for w in busy], timeout=max(0.0, next_deadline - time.monotonic()))
            for worker in busy:
                if worker.conn in ready:
                    self._collect(worker, outcomes, pending)
                elif time.monotonic() >= worker.deadline:
                    slot = worker.in_flight.popleft()[0]
                    logger.warning("grading comparison timed out", extra={"timeout_s": self.timeout_s})
                    outcomes[slot] = (False, "timeout", f"no result within {self.timeout_s:g} s")
                    self._replace(worker, pending)
        return outcomes

    def _collect(self, worker: _Worker, outcomes: dict[int, Outcome], pending: deque[Comparison]) -> None:
        try:
            while worker.in_flight and worker.conn.poll():
                result: _Result = worker.conn.recv()
                slot, equal, error = result
                head = worker.in_flight.popleft()
                assert head[0] == slot, "workers answer in order"
                outcomes[slot] = (False, "error", error) if error else (equal, "math_verify", None)
                worker.deadline = time.monotonic() + self.timeout_s
        except (EOFError, OSError):
            # The worker died mid-comparison (out of memory, a crash in native code): blame that one task.
            slot = worker.in_flight.popleft()[0]
            logger.warning("grading worker died", extra={"exitcode": worker.process.exitcode})
            outcomes[slot] = (False, "error", "grading worker died")
            self._replace(worker, pending)

    def _replace(self, worker: _Worker, pending: deque[Comparison]) -> None:
        """Stop `worker`, put its unfinished tasks back at the front, and leave its slot for a fresh one."""
        pending.extendleft(reversed(worker.in_flight))
        worker.in_flight.clear()
        self._stop(worker, kill=True)
        self._pool[self._pool.index(worker)] = None

    def _start(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        # Every concrete context has Process; typeshed's BaseContext does not declare it.
        process = self._context.Process(  # type: ignore[attr-defined]
            target=_serve, args=(child_conn,), daemon=True, name="cotlab-grader"
        )
        process.start()
        child_conn.close()  # so the parent sees EOF when the worker dies
        if not parent_conn.poll(_START_TIMEOUT_S):
            process.kill()
            raise RuntimeError(f"a grading worker did not start within {_START_TIMEOUT_S:g} s")
        parent_conn.recv()  # the ready message
        return _Worker(process, parent_conn, deque())

    @staticmethod
    def _stop(worker: _Worker, *, kill: bool = False) -> None:
        if kill:
            worker.process.kill()
        worker.conn.close()  # a live worker reads EOF and returns
        worker.process.join(timeout=2.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
