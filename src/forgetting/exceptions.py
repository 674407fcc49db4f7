"""Named exceptions. Every error says what went wrong and what the user can do about it."""

from __future__ import annotations


class ForgettingError(Exception):
    """Base class of every error raised by ``forgetting``."""


class DatasetNotFoundError(ForgettingError, FileNotFoundError):
    """A dataset's files were not found. The message lists every path looked in and how to get the data."""


class DatasetFormatError(ForgettingError, ValueError):
    """A dataset's files were found but are malformed. The message names the file and the bad field."""


class ConfigError(ForgettingError, ValueError):
    """A bad option or configuration value. The message names the key and the allowed values."""


class UnknownNameError(ConfigError, KeyError):
    """An unknown registry name (dataset, model, strategy, corruption). The message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PoolExhaustedError(ForgettingError, ValueError):
    """More samples were requested than the unlabeled pool holds."""


class TrainingLimitError(ForgettingError, RuntimeError):
    """Training with no epoch cap (``max_epochs = None``) did not reach its target accuracy within the hard
    safety limit (``forgetting.training.UNCAPPED_EPOCH_LIMIT`` epochs). The message gives the accuracy
    reached; lower the target, change the optimizer, or set ``max_epochs``."""


class MissingInputError(ForgettingError, ValueError):
    """A strategy was called without an input it declared as required."""


class MissingDependencyError(ForgettingError, ImportError):
    """An optional dependency is not installed. The message says which extra to install."""


class ProjectError(ForgettingError, ValueError):
    """A labelling project is missing, malformed, or cannot do what was asked (e.g. query with no labels)."""


class LabelImportError(ForgettingError, ValueError):
    """A label file could not be read: bad format, unknown item or class. The message names the row/task."""


class LabelConflictError(ForgettingError, ValueError):
    """Labels contradict each other or the project's ledger. The message lists each item with its old and
    new label and how to resolve it (fix the file, or import with ``overwrite``)."""


class DirectoryInUseError(ForgettingError):
    """Another process holds the lock of a run directory or labelling project. The message names its PID."""


class DivergedError(ForgettingError):
    """Training diverged: the loss (or the model's weights) became NaN or infinite.

    Attributes:
        epoch: the epoch (1-based) in which it was detected.
        round: the active-learning round, when known (set by the loop).
        lr: the learning rate of the run, for the message.
    """

    def __init__(
        self, epoch: int, *, lr: float | None = None, round: int | None = None, what: str = ""
    ) -> None:
        self.epoch = int(epoch)
        self.lr = lr
        self.round = round
        self.what = what or "the training loss became non-finite (NaN or inf)"
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"round {self.round}, epoch {self.epoch}" if self.round is not None else f"epoch {self.epoch}"
        lr = f" (train.lr = {self.lr:g})" if self.lr is not None else ""
        return (
            f"training diverged in {where}: {self.what}; lower the learning rate{lr}, e.g. tenfold, and rerun"
        )

    def in_round(self, round_: int) -> DivergedError:
        """The same error, naming the active-learning round."""
        return DivergedError(self.epoch, lr=self.lr, round=round_, what=self.what)

    def __reduce__(self) -> tuple[object, ...]:  # picklable across process-pool and Ray workers
        return (_rebuild_diverged, (self.epoch, self.lr, self.round, self.what))


def _rebuild_diverged(epoch: int, lr: float | None, round_: int | None, what: str) -> DivergedError:
    return DivergedError(epoch, lr=lr, round=round_, what=what)


class StoreCorruptError(ForgettingError):
    """A file of a run directory (``results.sqlite`` or an ``arrays/.../round-*.npz``) cannot be read. The
    message names the file, what is wrong and how to recover."""


def check_choice(key: str, value: object, allowed: tuple[str, ...] | list[str]) -> None:
    """Raise a :class:`ConfigError` naming ``key`` and the allowed values unless ``value`` is one of them."""
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {list(allowed)}")


class InputError(ForgettingError, ValueError):
    """An array or value handed to a function is not what it accepts (its values, range or length); the
    message names the argument and what is allowed."""


class ShapeError(InputError):
    """An array or tensor has the wrong shape (or number of dimensions) for the function it was given to; the
    message names the argument, the expected shape and the one received."""


class NotInStoreError(ForgettingError, KeyError):
    """A results store holds no experiment (or round) of that id; the message names the store file."""

    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0]) if self.args else ""
