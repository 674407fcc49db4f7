"""Round hooks that inject failures into experiments, for the tests of retries and resumes.

They are handed to :func:`forgetting.experiments.run_experiments` as ``round_hook``; the ``process`` and
``ray`` backends pickle them into their workers by reference, so this module must be importable there (the
``process`` workers inherit the test's ``sys.path``; a Ray test puts this directory on the workers'
``PYTHONPATH`` through its runtime environment, see :data:`RAY_RUNTIME_ENV`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from forgetting.exceptions import ForgettingError
from forgetting.experiments.config import ExperimentSpec
from forgetting.records import RoundRecord

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

#: A Ray runtime environment whose workers can import this module.
RAY_RUNTIME_ENV = {
    "env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
}


class InjectedFailure(ForgettingError):
    """The failure :class:`FailOnce` raises."""


def _first_time(marker: Path) -> bool:
    """Create ``marker``; ``True`` if it did not exist (atomic, so it holds across processes)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


@dataclass(frozen=True)
class FailOnce:
    """Each experiment raises :class:`InjectedFailure` right after handing over a round, once (a marker file
    ``raised/<experiment id>`` remembers, across processes), and, with ``crashed``, in a later round kills its
    process once (``os._exit(70)``, marker ``crashed/<experiment id>``). With both, an experiment first
    raises, then (in the round after) dies."""

    raised: Path | None = None
    crashed: Path | None = None

    def __call__(self, spec: ExperimentSpec, record: RoundRecord) -> None:
        if self.raised is not None and _first_time(self.raised / spec.id):
            raise InjectedFailure(f"experiment {spec.id}: failure injected after round {record.round}")
        if self.crashed is not None and _first_time(self.crashed / spec.id):
            logger.error("experiment %s: FailOnce kills this process", spec.id)
            os._exit(70)
