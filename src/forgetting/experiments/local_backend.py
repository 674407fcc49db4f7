"""The ``local`` backend: one experiment after the other, in this process."""

from __future__ import annotations

import time

from forgetting.experiments.driver import Driver, Work
from forgetting.experiments.experiment import RoundHook, run_spec
from forgetting.records import RoundRecord

__all__ = ["run_local"]


class _Ended(Exception):
    """The driver ended the experiment (a round contradicted the store): stop computing it."""


def run_local(work: Work, driver: Driver, *, fail_fast: bool, hook: RoundHook | None = None) -> None:
    """Run every experiment of ``work`` here, in order, handing each round to ``driver`` as it is finished.

    Raises:
        Exception: under ``fail_fast``, the first experiment's error (after it is marked failed).
        KeyboardInterrupt: after marking the experiment in progress ``failed`` (``interrupted``).
    """
    for spec, completed in work:
        driver.begin(spec.id, len(completed))
        t0 = time.perf_counter()

        def on_round(record: RoundRecord, exp_id: str = spec.id) -> None:
            driver.handle(("round", exp_id, record))
            if driver.ended(exp_id):
                raise _Ended

        def on_progress(done: int, total: int, exp_id: str = spec.id) -> None:
            driver.handle(("progress", exp_id, done, total))

        try:
            run_spec(spec, completed=completed, on_round=on_round, progress=on_progress, hook=hook)
        except _Ended:
            continue
        except Exception as exc:
            driver.fail(spec.id, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
            if fail_fast:
                raise
        except BaseException:  # KeyboardInterrupt and friends: keep the time spent, then stop
            driver.interrupt()
            raise
        else:
            driver.finish(spec.id, time.perf_counter() - t0)
