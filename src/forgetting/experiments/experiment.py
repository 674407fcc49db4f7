"""One experiment: run, or resume, an :class:`~forgetting.experiments.config.ExperimentSpec` with the
active-learning loop. No store and no backend: every backend's worker calls :func:`run_spec`, and hands each
round it returns to the driver (:mod:`forgetting.experiments.driver`), which alone writes the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from forgetting.exceptions import ForgettingError
from forgetting.experiments.config import ExperimentSpec
from forgetting.experiments.prepared import build_task, prepare_data
from forgetting.records import RoundRecord

__all__ = ["ProgressCallback", "RoundCallback", "RoundHook", "run_spec"]

#: Called with each finished round, in order.
RoundCallback = Callable[[RoundRecord], None]
#: Called with ``(rounds done, rounds in all)`` while an experiment runs.
ProgressCallback = Callable[[int, int], None]
#: Called in the worker after each round has been handed over, with the experiment and the round; an
#: exception it raises fails the experiment there. It travels to the workers of the ``process`` and ``ray``
#: backends, so it must pickle (a module-level function, or an instance of a module-level class). The
#: tests inject failures and crashes through it; nothing in the library sets one.
RoundHook = Callable[[ExperimentSpec, RoundRecord], None]


def run_spec(
    spec: ExperimentSpec,
    *,
    completed: Sequence[RoundRecord] = (),
    on_round: RoundCallback | None = None,
    progress: ProgressCallback | None = None,
    hook: RoundHook | None = None,
) -> list[RoundRecord]:
    """Run (or resume after ``completed``) one experiment with the active-learning loop; no store involved.

    Args:
        spec: the experiment.
        completed: its rounds stored so far (rounds ``0..k-1``); the loop resumes at round ``k``.
        on_round: receives every round as soon as it is finished.
        progress: receives ``(rounds done, rounds in all)``.
        hook: called after ``on_round`` with the spec and the round (see :data:`RoundHook`).

    Returns:
        The rounds computed by this call.

    Raises:
        ForgettingError: ``completed`` is not rounds ``0..k-1``.
    """
    from forgetting.loop import run_active_learning

    rounds = [r.round for r in completed]
    if rounds != list(range(len(rounds))):
        raise ForgettingError(
            f"experiment {spec.id} ({spec.label}): stored rounds {rounds} are not 0..{len(rounds) - 1}; "
            "the run directory is inconsistent"
        )
    if hook is not None:
        on_round = _then(on_round, hook, spec)
    data = prepare_data(spec)
    return run_active_learning(
        data.train,
        data.eval_sets,
        data.num_classes,
        spec.loop_config(),
        task=build_task(spec, data),
        completed=completed,
        on_round=on_round,
        progress=progress,
    )


def _then(on_round: RoundCallback | None, hook: RoundHook, spec: ExperimentSpec) -> RoundCallback:
    """``on_round``, then ``hook``."""

    def handover(record: RoundRecord) -> None:
        if on_round is not None:
            on_round(record)
        hook(spec, record)

    return handover
