"""The ``process`` backend: a pool of spawned processes, ``jobs`` experiments at a time.

Workers are spawned (not forked), so everything they touch is importable and picklable. Each worker sends
its messages to the driver through one queue: ``("worker", pid)`` once when it starts, then per experiment
``progress`` and ``round`` messages while it runs and exactly one terminal ``finished`` or ``failed``, so
that the driver knows that every round of the experiment has arrived. A worker whose driver died stops at
its next round (nobody would store it).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from forgetting.experiments.config import ExperimentSpec
from forgetting.experiments.driver import Driver, Work
from forgetting.experiments.experiment import RoundHook, run_spec
from forgetting.records import RoundRecord

__all__ = ["run_pool"]

#: Seconds the driver waits, after the last experiment returned, for terminal messages still in the queue.
TERMINAL_TIMEOUT = 60.0

_WORKER_QUEUE: Any = None


def _worker_init(q: Any, threads: int) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = q
    torch.set_num_threads(threads)
    q.put(("worker", os.getpid()))


def _worker_run(
    spec_json: str, completed: list[RoundRecord], parent_pid: int, hook: RoundHook | None
) -> None:
    """Run one experiment in a pool worker, reporting to the driver (see the module docstring)."""
    spec = ExperimentSpec.from_json(spec_json)
    q = _WORKER_QUEUE
    t0 = time.perf_counter()

    def on_round(record: RoundRecord) -> None:
        if os.getppid() != parent_pid:  # the driver died: nobody will store this round, stop working
            os._exit(3)
        q.put(("round", spec.id, record))

    def progress(done: int, total: int) -> None:
        q.put(("progress", spec.id, done, total))

    try:
        run_spec(spec, completed=completed, on_round=on_round, progress=progress, hook=hook)
    except Exception as exc:
        q.put(("failed", spec.id, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0))
        raise
    q.put(("finished", spec.id, time.perf_counter() - t0))


def run_pool(
    work: Work,
    driver: Driver,
    *,
    fail_fast: bool,
    jobs: int,
    threads: int,
    hook: RoundHook | None = None,
) -> None:
    """Run the experiments of ``work`` on ``min(jobs, len(work))`` spawned processes of ``threads`` torch
    threads each; ``driver`` writes what they report.

    Raises:
        Exception: under ``fail_fast``, the first experiment's error (the others are cancelled).
        KeyboardInterrupt: after stopping the workers and marking the running experiments ``failed``.
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    pending: dict[Future[None], str] = {}
    awaiting: set[str] = set()  # returned or raised, terminal message not yet received
    workers: set[int] = set()  # PIDs of the pool's processes, as they announced themselves

    def handle(message: tuple[Any, ...]) -> None:
        if message[0] == "worker":
            workers.add(int(message[1]))
        else:
            driver.handle(message)

    def drain(timeout: float) -> None:
        try:
            handle(q.get(timeout=timeout))
            while True:
                handle(q.get_nowait())
        except queue_mod.Empty:
            return

    with ProcessPoolExecutor(
        max_workers=min(jobs, len(work)), mp_context=ctx, initializer=_worker_init, initargs=(q, threads)
    ) as pool:
        for spec, completed in work:
            future = pool.submit(_worker_run, spec.to_json(), list(completed), os.getpid(), hook)
            pending[future] = spec.id
        try:
            deadline = math.inf
            while pending or (awaiting - driver.terminal and time.monotonic() < deadline):
                drain(0.2)
                for fut in [f for f in pending if f.done()]:
                    exp_id = pending.pop(fut)
                    exc = fut.exception()
                    if isinstance(exc, BrokenProcessPool):  # the worker died: no terminal message will come
                        driver.fail(exp_id, f"worker process died: {exc}")
                        continue
                    awaiting.add(exp_id)
                    if exc is not None and fail_fast:
                        drain(1.0)
                        for other in pending:
                            other.cancel()
                        raise exc
                if not pending and deadline == math.inf:
                    deadline = time.monotonic() + TERMINAL_TIMEOUT  # at most a flush away
            drain(0.0)
        except BaseException as exc:  # Ctrl-C or fail_fast: store what arrived, stop the workers, mark
            pool.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(Exception):
                drain(0.0)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            driver.interrupt("interrupted" if not isinstance(exc, Exception) else "stopped by fail_fast")
            raise
    for exp_id in awaiting - driver.terminal:  # defensive: the terminal message never came
        driver.fail(exp_id, "the worker returned without reporting the end of the experiment")
