"""The driver side of every backend: turns what the workers report into store writes and progress.

Only the driver (the process that called :func:`~forgetting.experiments.runner.run_experiments`) writes the
results store. A backend (:mod:`~forgetting.experiments.local_backend`,
:mod:`~forgetting.experiments.process_backend`, :mod:`~forgetting.experiments.ray_backend`) runs
:func:`~forgetting.experiments.experiment.run_spec` somewhere and hands every message to one :class:`Driver`;
the bookkeeping (stored rounds, their order, statuses, the summary, the progress bars) lives here once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from forgetting.exceptions import ForgettingError
from forgetting.experiments.config import ExperimentSpec
from forgetting.experiments.store import DuplicateRoundError, ResultStore
from forgetting.records import RoundRecord

__all__ = ["Display", "Driver", "RunSummary", "Work"]

logger = logging.getLogger(__name__)

#: What a backend runs: each experiment with the rounds already stored for it.
Work = Sequence[tuple[ExperimentSpec, Sequence[RoundRecord]]]


@dataclass
class RunSummary:
    """What :func:`run_experiments` did.

    Attributes:
        out_dir: the run directory.
        experiment_ids: every experiment of the config, in grid order.
        skipped: ids already finished before this call.
        finished: ids finished by this call.
        failed: id -> error text, for experiments that raised (their stored rounds stay; rerun to resume).
        rounds_written: rounds stored by this call.
        seconds: wall time of this call.
        ended_early: id -> why, for finished experiments with fewer rounds than configured (the pool ran
            out, with ``al.on_exhausted = "partial"``).
        warnings: what the pre-flight check warned about (see :func:`forgetting.experiments.preflight`).
    """

    out_dir: Path
    experiment_ids: list[str]
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rounds_written: int = 0
    seconds: float = 0.0
    ended_early: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No experiment failed."""
        return not self.failed


class Display:
    """Rich progress bars: one overall (rounds) and one per running experiment; silent when not a TTY."""

    def __init__(self, enabled: bool, console: Console | None, total_rounds: int) -> None:
        console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not (enabled and console.is_terminal),
            transient=False,
        )
        self.overall = self.progress.add_task("all experiments (rounds)", total=total_rounds)
        self.tasks: dict[str, Any] = {}
        self._done: dict[str, int] = {}

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, spec: ExperimentSpec, done: int) -> None:
        self.tasks[spec.id] = self.progress.add_task(spec.label, total=spec.total_rounds, completed=done)
        self._done[spec.id] = done

    def update(self, experiment_id: str, done: int) -> None:
        task = self.tasks.get(experiment_id)
        if task is None:
            return
        delta = done - self._done[experiment_id]
        if delta > 0:
            self._done[experiment_id] = done
            self.progress.update(task, completed=done)
            self.progress.advance(self.overall, delta)

    def stop(self, experiment_id: str) -> None:
        task = self.tasks.pop(experiment_id, None)
        if task is not None:
            self.progress.remove_task(task)


class Driver:
    """The driver side of the parallel backends: turns what workers report into store writes and progress.

    Workers report with messages (tuples): ``("progress", id, rounds_done, rounds_total)`` and
    ``("round", id, RoundRecord)`` while an experiment runs, and the ``process`` backend's workers end each
    experiment with ``("finished", id, seconds)`` or ``("failed", id, error, seconds)``; the ``ray`` backend
    learns the end from the task's result and calls :meth:`finish` / :meth:`fail` itself.
    """

    def __init__(
        self,
        store: ResultStore,
        display: Display,
        summary: RunSummary,
        todo: Work,
    ) -> None:
        self.store = store
        self.display = display
        self.summary = summary
        self.specs = {spec.id: spec for spec, _ in todo}
        self.started: dict[str, float] = {}  # id -> perf_counter() of its first message
        self.terminal: set[str] = set()
        self.received: dict[str, set[int]] = {}  # id -> round numbers received (and stored) in this run
        self.next_round = {spec.id: len(completed) for spec, completed in todo}  # rounds stored: 0..n-1
        self.gaps: set[str] = set()  # ids whose rounds arrived with a gap (a message was lost)

    def ended(self, exp_id: str) -> bool:
        """Whether the experiment has finished or failed (its later messages are ignored)."""
        return exp_id in self.terminal

    def begin(self, exp_id: str, done: int) -> None:
        """Note that an experiment runs (on its first message): status ``running``, a progress bar."""
        if exp_id in self.started or exp_id in self.terminal:
            return
        self.started[exp_id] = time.perf_counter()
        self.store.mark_started(exp_id)
        self.display.start(self.specs[exp_id], done)

    def handle(self, msg: tuple[Any, ...]) -> None:
        """Act on one message from a worker."""
        kind, exp_id = msg[0], msg[1]
        if kind == "round":
            record: RoundRecord = msg[2]
            if exp_id in self.terminal:  # the experiment failed here already: its later rounds are moot
                return
            self.begin(exp_id, record.round)
            if record.round > self.next_round[exp_id]:  # stored rounds must stay 0..n-1: drop, retry later
                self.gaps.add(exp_id)
                logger.warning(
                    "experiment %s: round %d arrived before round %d; not stored",
                    exp_id,
                    record.round,
                    self.next_round[exp_id],
                )
                return
            try:
                if self.store.write_round(exp_id, record):
                    self.summary.rounds_written += 1
            except DuplicateRoundError as exc:  # fail this experiment, not the whole run
                self.fail(exp_id, f"{type(exc).__name__}: {exc}")
                return
            self.received.setdefault(exp_id, set()).add(record.round)
            self.next_round[exp_id] = max(self.next_round[exp_id], record.round + 1)
        elif kind == "progress":
            if exp_id in self.terminal:  # a late progress message of a finished experiment
                return
            self.begin(exp_id, msg[2])
            self.display.update(exp_id, msg[2])
        elif kind == "finished":
            self.finish(exp_id, msg[2])
        elif kind == "failed":
            self.fail(exp_id, msg[2], msg[3])
        else:
            raise ForgettingError(f"unknown worker message {kind!r}")

    def _seconds(self, exp_id: str, seconds: float | None) -> float:
        if seconds is not None:
            return seconds
        t0 = self.started.get(exp_id)
        return 0.0 if t0 is None else time.perf_counter() - t0

    def finish(self, exp_id: str, seconds: float | None = None) -> None:
        """The experiment ended normally (every one of its rounds has been handled)."""
        if exp_id in self.terminal:
            return
        if exp_id in self.gaps:
            self.fail(exp_id, "a round was lost on its way to the driver", seconds)
            return
        self.terminal.add(exp_id)
        self.store.mark_done(exp_id, self._seconds(exp_id, seconds))
        self.summary.finished.append(exp_id)
        self.display.stop(exp_id)

    def fail(self, exp_id: str, error: str, seconds: float | None = None) -> None:
        """The experiment failed; its stored rounds stay and a rerun resumes after them."""
        if exp_id in self.terminal:
            return
        self.terminal.add(exp_id)
        self.store.mark_failed(exp_id, error, self._seconds(exp_id, seconds))
        self.summary.failed[exp_id] = error
        self.display.stop(exp_id)
        logger.error("experiment %s (%s) failed: %s", exp_id, self.specs[exp_id].label, error)

    def interrupt(self, reason: str = "interrupted") -> None:
        """Mark every experiment that started and did not end as failed with ``reason`` (resumable)."""
        for exp_id in [e for e in self.started if e not in self.terminal]:
            self.terminal.add(exp_id)
            self.store.mark_failed(exp_id, reason, self._seconds(exp_id, None))
            self.summary.failed[exp_id] = reason
            self.display.stop(exp_id)
        logger.warning("%s: rerun the same command to resume", reason)
