"""The results store: one SQLite database per run directory, plus ``.npz`` files for per-round arrays.

Layout of a run directory::

    results.sqlite                                 experiments, rounds, metrics, queries (WAL mode)
    arrays/<experiment_id>/round-003.npz           dynamics and pool indices of round 3 (written atomically)
    arrays/<experiment_id>/round-003.samples.csv   round 3's per-sample table of the tracked pool (tracked
                                                   rounds only; see forgetting.exports), for other tools

Each round is written in one transaction, so a killed process loses at most the round it was computing.
Rounds are keyed by ``(experiment_id, round)``: writing a round that exists is a no-op when the record is
identical and a :class:`DuplicateRoundError` otherwise; a sample can be queried once per experiment.
Only one process (the driver) writes a store; :func:`forgetting.experiments.run_experiments` holds the run
directory's lock (``.lock``) while it does. Readers (the report) open the store read-only
(``readonly=True``) and may run while a run writes: SQLite's WAL mode gives them a consistent snapshot.

A damaged store raises :class:`~forgetting.exceptions.StoreCorruptError` naming the file and how to
recover: an unreadable ``results.sqlite`` (truncated, garbled, or empty when opened read-only), or an
unreadable ``arrays/<id>/round-*.npz`` (only that experiment is affected; the message says how to rerun
it).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from forgetting._csv import csv_text
from forgetting._io import NUMPY_READ_ERRORS, atomic_savez, atomic_write_text, describe_numpy_error
from forgetting.exceptions import ForgettingError, InputError, NotInStoreError, StoreCorruptError
from forgetting.experiments.config import ExperimentSpec
from forgetting.exports import write_csv
from forgetting.records import RoundRecord, TrainRecord

__all__ = ["DB_NAME", "SCHEMA_VERSION", "DuplicateRoundError", "ExperimentRow", "ResultStore"]

logger = logging.getLogger(__name__)

#: The groups of a round's ``.npz`` (its keys are ``<group>.<name>``, besides ``pool_indices``): the pool's
#: dynamics, the queried samples' arrays, the per-sample table, and what the strategy fitted.
ARRAY_GROUPS: tuple[str, ...] = ("dynamics", "query", "samples", "strategy")

DB_NAME = "results.sqlite"
SCHEMA_VERSION = "1"
PHASES = ("train", "track", "query", "eval")
STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    strategy TEXT NOT NULL,
    seed INTEGER NOT NULL,
    variant TEXT NOT NULL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    seconds REAL NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE IF NOT EXISTS rounds (
    experiment_id TEXT NOT NULL REFERENCES experiments(id),
    round INTEGER NOT NULL,
    n_labeled INTEGER NOT NULL,
    epochs INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    train_accuracy REAL,
    reached_target INTEGER,
    train_seconds REAL,
    track_seconds REAL,
    query_seconds REAL,
    eval_seconds REAL,
    fit_seconds REAL NOT NULL,
    fit_track_seconds REAL NOT NULL,
    seconds_json TEXT NOT NULL,
    arrays TEXT,
    written TEXT NOT NULL,
    PRIMARY KEY (experiment_id, round)
);
CREATE TABLE IF NOT EXISTS metrics (
    experiment_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    eval_set TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (experiment_id, round, eval_set, metric),
    FOREIGN KEY (experiment_id, round) REFERENCES rounds(experiment_id, round)
);
CREATE TABLE IF NOT EXISTS queries (
    experiment_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    sample_index INTEGER NOT NULL,
    score REAL,
    PRIMARY KEY (experiment_id, round, rank),
    UNIQUE (experiment_id, sample_index),
    FOREIGN KEY (experiment_id, round) REFERENCES rounds(experiment_id, round)
);
"""


class DuplicateRoundError(ForgettingError):
    """A round that is already stored was written again with different contents."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(method: _F) -> _F:
    """Turn SQLite's errors on a damaged or busy database into errors that name the file and the fix."""

    @functools.wraps(method)
    def wrapper(self: ResultStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise self._database_error(exc) from None

    return cast(_F, wrapper)


def corrupt_database_message(db_path: Path, reason: object) -> str:
    """What to say about a results database that cannot be read."""
    return (
        f"{db_path} cannot be read: {reason}. The file is damaged (truncated or overwritten), so the "
        "results stored in it are lost unless a copy exists. To recover: restore it from a backup; or try "
        f"`sqlite3 {db_path} .recover | sqlite3 recovered.sqlite` and use recovered.sqlite as the "
        f"{DB_NAME} of a new run directory; or move {db_path.parent} aside and rerun the same config "
        "(it starts over)"
    )


@dataclass(frozen=True)
class ExperimentRow:
    """One row of the ``experiments`` table.

    Attributes:
        spec: the experiment, parsed back from ``config_json``.
        n_rounds: rounds stored so far.
        seconds: wall time spent on the experiment, summed over every session that ran it.
    """

    id: str
    name: str
    spec: ExperimentSpec
    status: str
    created: str
    started: str | None
    finished: str | None
    seconds: float
    error: str | None
    n_rounds: int


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _nan_to_none(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _none_to_nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return bool(np.array_equal(a.astype(np.float64), b.astype(np.float64), equal_nan=True))
    return bool(np.array_equal(a, b))


def _float_equal(a: float | None, b: float | None) -> bool:
    fa, fb = _none_to_nan(a), _none_to_nan(b)
    return (math.isnan(fa) and math.isnan(fb)) or fa == fb


def records_equal(a: RoundRecord, b: RoundRecord) -> bool:
    """Whether two round records hold the same values (NaN equals NaN; array dtypes may differ)."""
    if (a.round, a.n_labeled) != (b.round, b.n_labeled):
        return False
    ta, tb = a.train, b.train
    if (ta.epochs, ta.steps, ta.reached_target) != (tb.epochs, tb.steps, tb.reached_target):
        return False
    for x, y in (
        (ta.seconds, tb.seconds),
        (ta.track_seconds, tb.track_seconds),
        (ta.train_accuracy, tb.train_accuracy),
    ):
        if not _float_equal(x, y):
            return False
    if set(a.seconds) != set(b.seconds) or any(
        not _float_equal(a.seconds[k], b.seconds[k]) for k in a.seconds
    ):
        return False
    if set(a.metrics) != set(b.metrics):
        return False
    for es, ma in a.metrics.items():
        mb = b.metrics[es]
        if set(ma) != set(mb) or any(not _float_equal(ma[k], mb[k]) for k in ma):
            return False
    if not (
        _arrays_equal(a.query_indices, b.query_indices) and _arrays_equal(a.query_scores, b.query_scores)
    ):
        return False
    if not _arrays_equal(a.pool_indices, b.pool_indices) or set(a.dynamics) != set(b.dynamics):
        return False
    if set(a.query_arrays) != set(b.query_arrays):
        return False
    # the per-sample table and the strategy's fit are derived from what the round computed; rounds stored
    # before they existed have none
    for ga, gb in ((a.samples, b.samples), (a.strategy_arrays, b.strategy_arrays)):
        if ga and gb and (set(ga) != set(gb) or not all(_arrays_equal(ga[k], gb[k]) for k in ga)):
            return False
    return all(_arrays_equal(a.dynamics[k], b.dynamics[k]) for k in a.dynamics) and all(
        _arrays_equal(a.query_arrays[k], b.query_arrays[k]) for k in a.query_arrays
    )


class ResultStore:
    """The SQLite results database of one run directory.

    Args:
        path: the run directory (the database is ``<path>/results.sqlite``) or the ``.sqlite`` file itself.
            Created if missing (unless ``readonly``).
        readonly: open an existing store for reading only: nothing is created or written (the report).

    Raises:
        StoreCorruptError: the database is damaged, or (``readonly``) empty or not a results database.
        ForgettingError: ``readonly`` and there is no database; or it has another schema version.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        path = Path(path)
        if path.suffix in (".sqlite", ".db"):
            self.db_path = path
            self.root = path.parent
        else:
            self.root = path
            self.db_path = path / DB_NAME
        self.readonly = readonly
        if readonly:
            if not self.db_path.is_file():
                raise ForgettingError(
                    f"{self.root} holds no {DB_NAME}; pass the directory that `forgetting run` wrote "
                    "(its --out)"
                )
            if self.db_path.stat().st_size == 0:
                raise StoreCorruptError(
                    f"{self.db_path} is empty (0 bytes): it holds no results. A run that was killed while it "
                    "created the file leaves this; rerun the config into this directory to start it"
                )
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            if self.db_path.is_file() and self.db_path.stat().st_size == 0:
                logger.warning("%s is empty (0 bytes); starting a new results database in it", self.db_path)
        try:
            self._connect()
        except BaseException as exc:
            conn = getattr(self, "_conn", None)
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise self._database_error(exc) from None
            raise

    def _connect(self) -> None:
        if self.readonly:
            uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, timeout=60.0, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = {"meta", "experiments", "rounds", "metrics", "queries"} - tables
            if missing:
                raise StoreCorruptError(
                    f"{self.db_path} is an SQLite file but not a forgetting results database (no table "
                    f"{', '.join(sorted(missing))}); pass the directory that `forgetting run` wrote"
                )
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            self._check_version(row)
            return
        self._conn = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # executescript commits any open transaction first, so the schema gets its own script transaction.
        self._conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        with self._transaction():
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
            else:
                self._check_version(row)

    def _check_version(self, row: sqlite3.Row | None) -> None:
        if row is not None and row["value"] != SCHEMA_VERSION:
            raise ForgettingError(
                f"{self.db_path} has results schema version {row['value']}, this version of forgetting "
                f"reads version {SCHEMA_VERSION}; use a new output directory (--out)"
            )

    def _database_error(self, exc: sqlite3.DatabaseError) -> ForgettingError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return ForgettingError(
                f"{self.db_path} is locked by another process ({text}); only one `forgetting run` may "
                "write a run directory: wait for the other one to finish"
            )
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in text.replace("-", "").replace(" ", ""):
            return ForgettingError(f"{self.db_path} is not writable ({text}); pass a writable --out")
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text:
            return ForgettingError(f"{self.db_path} cannot be opened ({text}); pass a writable --out")
        return StoreCorruptError(corrupt_database_message(self.db_path, text))

    # -- plumbing -------------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta -----------------------------------------------------------------------------------------
    @_guarded
    def set_meta(self, key: str, value: str) -> None:
        """Store a run-level string (e.g. the config file's text)."""
        with self._transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @_guarded
    def get_meta(self, key: str) -> str | None:
        """A run-level string stored with :meth:`set_meta`, or ``None``."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    # -- experiments ----------------------------------------------------------------------------------
    @_guarded
    def add_experiment(self, spec: ExperimentSpec) -> bool:
        """Register ``spec`` as pending. ``False`` (and nothing changed) if its id is already stored."""
        with self._transaction() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO experiments (id, name, dataset, model, strategy, seed, variant, "
                "config_json, status, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (
                    spec.id,
                    spec.name,
                    spec.dataset,
                    spec.model,
                    spec.strategy,
                    spec.seed,
                    spec.variant,
                    spec.to_json(),
                    _now(),
                ),
            )
            return cur.rowcount == 1

    @_guarded
    def _set_status(self, experiment_id: str, sql: str, params: Sequence[Any]) -> None:
        with self._transaction() as c:
            cur = c.execute(sql, (*params, experiment_id))
            if cur.rowcount != 1:
                raise NotInStoreError(f"no experiment {experiment_id!r} in {self.db_path}")

    def mark_started(self, experiment_id: str) -> None:
        """Status ``running``; ``started`` keeps the time of the first session."""
        self._set_status(
            experiment_id,
            "UPDATE experiments SET status = 'running', started = COALESCE(started, ?), error = NULL "
            "WHERE id = ?",
            (_now(),),
        )

    def mark_done(self, experiment_id: str, seconds: float = 0.0) -> None:
        """Status ``done``; adds ``seconds`` (this session's wall time) to the experiment's total."""
        self._set_status(
            experiment_id,
            "UPDATE experiments SET status = 'done', finished = ?, seconds = seconds + ?, error = NULL "
            "WHERE id = ?",
            (_now(), float(seconds)),
        )

    def mark_failed(self, experiment_id: str, error: str, seconds: float = 0.0) -> None:
        """Status ``failed`` with the error text; its stored rounds stay and a rerun resumes after them."""
        self._set_status(
            experiment_id,
            "UPDATE experiments SET status = 'failed', seconds = seconds + ?, error = ? WHERE id = ?",
            (float(seconds), error),
        )

    @_guarded
    def experiments(self) -> list[ExperimentRow]:
        """Every experiment, in insertion order."""
        rows = self._conn.execute(
            "SELECT e.*, (SELECT COUNT(*) FROM rounds r WHERE r.experiment_id = e.id) AS n_rounds "
            "FROM experiments e ORDER BY e.rowid"
        ).fetchall()
        return [
            ExperimentRow(
                id=r["id"],
                name=r["name"],
                spec=self._spec(r["id"], r["config_json"]),
                status=r["status"],
                created=r["created"],
                started=r["started"],
                finished=r["finished"],
                seconds=float(r["seconds"]),
                error=r["error"],
                n_rounds=int(r["n_rounds"]),
            )
            for r in rows
        ]

    def _spec(self, experiment_id: str, text: str) -> ExperimentSpec:
        try:
            return ExperimentSpec.from_json(text)
        except (ValueError, TypeError) as exc:  # JSONDecodeError, pydantic's ValidationError
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreCorruptError(
                f"{self.db_path}: the stored config of experiment {experiment_id} cannot be read ({first}); "
                "was the directory written by another version of forgetting? Use a new --out"
            ) from None

    def experiment(self, experiment_id: str) -> ExperimentRow:
        """One experiment by id (``KeyError`` if absent)."""
        for row in self.experiments():
            if row.id == experiment_id:
                return row
        raise NotInStoreError(f"no experiment {experiment_id!r} in {self.db_path}")

    # -- rounds ---------------------------------------------------------------------------------------
    def _arrays_path(self, experiment_id: str, round_: int) -> Path:
        return Path("arrays") / experiment_id / f"round-{round_:03d}.npz"

    def samples_path(self, experiment_id: str, round_: int) -> Path:
        """Where round ``round_``'s per-sample table is written as CSV (tracked rounds only)."""
        return self.root / "arrays" / experiment_id / f"round-{round_:03d}.samples.csv"

    @_guarded
    def write_round(self, experiment_id: str, record: RoundRecord) -> bool:
        """Persist one round in one transaction (and its arrays as an ``.npz`` beside the database).

        Returns ``True`` when written, ``False`` when an identical record was already stored.

        Raises:
            DuplicateRoundError: the round is stored with different contents, or a queried sample was
                already queried in an earlier round of the experiment.
        """
        existing = self._conn.execute(
            "SELECT 1 FROM rounds WHERE experiment_id = ? AND round = ?", (experiment_id, record.round)
        ).fetchone()
        if existing is not None:
            return self._check_identical(experiment_id, record)
        rel: str | None = None
        groups = (record.dynamics, record.query_arrays, record.samples, record.strategy_arrays)
        if len(record.pool_indices) > 0 or any(groups):
            rel_path = self._arrays_path(experiment_id, record.round)
            payload = {"pool_indices": np.asarray(record.pool_indices, dtype=np.int64)}
            payload.update({f"dynamics.{k}": np.asarray(v) for k, v in record.dynamics.items()})
            payload.update({f"query.{k}": np.asarray(v) for k, v in record.query_arrays.items()})
            payload.update({f"samples.{k}": np.asarray(v) for k, v in record.samples.items()})
            payload.update({f"strategy.{k}": np.asarray(v) for k, v in record.strategy_arrays.items()})
            if record.samples:
                write_csv(record.samples, self.samples_path(experiment_id, record.round))
            atomic_savez(self.root / rel_path, payload)
            rel = rel_path.as_posix()
        seconds = {k: float(v) for k, v in record.seconds.items()}
        t = record.train
        q_idx = np.asarray(record.query_indices, dtype=np.int64).reshape(-1)
        q_score = np.asarray(record.query_scores, dtype=np.float64).reshape(-1)
        if q_idx.shape != q_score.shape:
            raise InputError(
                f"round {record.round}: query_indices {q_idx.shape} and query_scores {q_score.shape} differ"
            )
        try:
            with self._transaction() as c:
                c.execute(
                    "INSERT INTO rounds (experiment_id, round, n_labeled, epochs, steps, train_accuracy, "
                    "reached_target, train_seconds, track_seconds, query_seconds, eval_seconds, fit_seconds, "
                    "fit_track_seconds, seconds_json, arrays, written) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        experiment_id,
                        int(record.round),
                        int(record.n_labeled),
                        int(t.epochs),
                        int(t.steps),
                        _nan_to_none(t.train_accuracy),
                        None if t.reached_target is None else int(bool(t.reached_target)),
                        *(seconds.get(p) for p in PHASES),
                        float(t.seconds),
                        float(t.track_seconds),
                        json.dumps(seconds, sort_keys=True),
                        rel,
                        _now(),
                    ),
                )
                c.executemany(
                    "INSERT INTO metrics (experiment_id, round, eval_set, metric, value) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        (experiment_id, int(record.round), es, m, _nan_to_none(v))
                        for es, ms in record.metrics.items()
                        for m, v in ms.items()
                    ],
                )
                c.executemany(
                    "INSERT INTO queries (experiment_id, round, rank, sample_index, score) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        (experiment_id, int(record.round), rank, int(i), _nan_to_none(s))
                        for rank, (i, s) in enumerate(zip(q_idx.tolist(), q_score.tolist(), strict=True))
                    ],
                )
                c.execute(
                    "UPDATE experiments SET status = 'running', started = COALESCE(started, ?) "
                    "WHERE id = ? AND status = 'pending'",
                    (_now(), experiment_id),
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateRoundError(
                f"experiment {experiment_id} round {record.round}: {exc} (a round is written once, and a "
                "sample is queried at most once per experiment). Was another process writing this run "
                "directory? Rerun the same command to resume from the stored rounds, or add `--rerun "
                f"{experiment_id}` to recompute the experiment from round 0"
            ) from exc
        return True

    def _check_identical(self, experiment_id: str, record: RoundRecord) -> bool:
        stored = self._load_round(experiment_id, record.round, arrays=True)
        if records_equal(stored, record):
            logger.debug("round %d of %s already stored; identical, skipped", record.round, experiment_id)
            return False
        raise DuplicateRoundError(
            f"experiment {experiment_id} round {record.round} is already stored with different contents; "
            "a round is written once. Was another process writing this run directory? Rerun the same "
            "command: the stored rounds are kept and the experiment resumes after them (`--rerun "
            f"{experiment_id}` recomputes it from round 0)"
        )

    def _load_round(self, experiment_id: str, round_: int, *, arrays: bool) -> RoundRecord:
        rows = self.load_rounds(experiment_id, arrays=arrays, rounds=[round_])
        if not rows:
            raise NotInStoreError(f"experiment {experiment_id!r} has no round {round_}")
        return rows[0]

    def queries(self) -> dict[str, list[list[int]]]:
        """Per experiment id (in insertion order): the pool indices queried in each stored round, in order
        (the last round of a finished experiment queries nothing)."""
        return {
            row.id: [r.query_indices.tolist() for r in self.load_rounds(row.id, arrays=False)]
            for row in self.experiments()
        }

    @_guarded
    def load_rounds(
        self, experiment_id: str, *, arrays: bool = True, rounds: Sequence[int] | None = None
    ) -> list[RoundRecord]:
        """The stored rounds of an experiment, in round order, as :class:`RoundRecord`.

        Args:
            arrays: also read the dynamics and pool indices from the ``.npz`` files (otherwise they are
                empty; enough to resume, which needs only rounds and query indices).
            rounds: only these round numbers.
        """
        where = "experiment_id = ?"
        params: list[Any] = [experiment_id]
        if rounds is not None:
            where += f" AND round IN ({','.join('?' * len(rounds))})"
            params += [int(r) for r in rounds]
        rows = self._conn.execute(f"SELECT * FROM rounds WHERE {where} ORDER BY round", params).fetchall()
        metrics: dict[int, dict[str, dict[str, float]]] = {}
        for m in self._conn.execute(
            f"SELECT round, eval_set, metric, value FROM metrics WHERE {where} ORDER BY rowid", params
        ):
            metrics.setdefault(m["round"], {}).setdefault(m["eval_set"], {})[m["metric"]] = _none_to_nan(
                m["value"]
            )
        queries: dict[int, list[tuple[int, float]]] = {}
        for q in self._conn.execute(
            f"SELECT round, sample_index, score FROM queries WHERE {where} ORDER BY round, rank", params
        ):
            queries.setdefault(q["round"], []).append((q["sample_index"], _none_to_nan(q["score"])))
        out = []
        for r in rows:
            qs = queries.get(r["round"], [])
            dynamics: dict[str, np.ndarray] = {}
            query_arrays: dict[str, np.ndarray] = {}
            samples: dict[str, np.ndarray] = {}
            strategy_arrays: dict[str, np.ndarray] = {}
            pool = np.zeros(0, dtype=np.int64)
            if arrays and r["arrays"]:
                pool, groups = self._read_arrays(experiment_id, int(r["round"]), r["arrays"])
                dynamics, query_arrays, samples = groups["dynamics"], groups["query"], groups["samples"]
                strategy_arrays = groups["strategy"]
            reached = r["reached_target"]
            out.append(
                RoundRecord(
                    round=int(r["round"]),
                    n_labeled=int(r["n_labeled"]),
                    train=TrainRecord(
                        epochs=int(r["epochs"]),
                        steps=int(r["steps"]),
                        seconds=float(r["fit_seconds"]),
                        track_seconds=float(r["fit_track_seconds"]),
                        train_accuracy=_none_to_nan(r["train_accuracy"]),
                        reached_target=None if reached is None else bool(reached),
                    ),
                    seconds=self._seconds(experiment_id, int(r["round"]), r["seconds_json"]),
                    metrics=metrics.get(r["round"], {}),
                    query_indices=np.array([i for i, _ in qs], dtype=np.int64),
                    query_scores=np.array([s for _, s in qs], dtype=np.float64),
                    dynamics=dynamics,
                    pool_indices=pool,
                    query_arrays=query_arrays,
                    samples=samples,
                    strategy_arrays=strategy_arrays,
                )
            )
        return out

    def _seconds(self, experiment_id: str, round_: int, text: str) -> dict[str, float]:
        try:
            return {k: float(v) for k, v in json.loads(text).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise StoreCorruptError(
                corrupt_database_message(
                    self.db_path, f"experiment {experiment_id} round {round_} holds garbled timings ({exc})"
                )
            ) from None

    def _read_arrays(
        self, experiment_id: str, round_: int, rel: str
    ) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """The pool indices of one round's ``.npz`` and its arrays grouped by prefix: every group of
        :data:`ARRAY_GROUPS` (``dynamics``, ``query``, ``samples``, ``strategy``), empty when absent.

        Raises:
            StoreCorruptError: the file is missing, truncated or garbled (naming it and how to rerun).
        """
        path = self.root / rel
        groups: dict[str, dict[str, np.ndarray]] = {g: {} for g in ARRAY_GROUPS}
        try:
            with np.load(path, allow_pickle=False) as z:
                pool = z["pool_indices"]
                for key in z.files:
                    group, _, name = key.partition(".")
                    if group in groups and name:
                        groups[group][name] = z[key]
        except NUMPY_READ_ERRORS as exc:
            reason = "missing" if isinstance(exc, FileNotFoundError) else describe_numpy_error(exc)
            raise StoreCorruptError(self.arrays_error(experiment_id, round_, path, reason)) from None
        return pool, groups

    def arrays_error(self, experiment_id: str, round_: int, path: Path, reason: str) -> str:
        """The message for an unreadable ``arrays/<id>/round-*.npz``."""
        return (
            f"{path}: the arrays of experiment {experiment_id} round {round_} cannot be read ({reason}). "
            "Only this experiment's dynamics and queried images are affected; the other experiments are "
            "intact. To recompute it, rerun the config with "
            f"`forgetting run CONFIG --out {self.root} --rerun {experiment_id}`"
        )

    @_guarded
    def array_names(self, experiment_id: str) -> dict[int, list[str]]:
        """Round -> the array names in that round's ``.npz`` (read from the archive's index only, not
        decompressed); rounds without arrays, or whose file cannot be read, are left out."""
        out: dict[int, list[str]] = {}
        for r in self._conn.execute(
            "SELECT round, arrays FROM rounds WHERE experiment_id = ? AND arrays IS NOT NULL ORDER BY round",
            (experiment_id,),
        ):
            try:
                with np.load(self.root / r["arrays"], allow_pickle=False) as z:
                    out[int(r["round"])] = list(z.files)
            except NUMPY_READ_ERRORS:
                continue
        return out

    @_guarded
    def reset_experiment(self, experiment_id: str) -> int:
        """Delete every stored round of an experiment (and its arrays) and mark it ``pending``, so that the
        next run computes it from round 0. Returns the number of rounds deleted."""
        with self._transaction() as c:
            n = c.execute("SELECT COUNT(*) FROM rounds WHERE experiment_id = ?", (experiment_id,)).fetchone()[
                0
            ]
            for table in ("queries", "metrics", "rounds"):
                c.execute(f"DELETE FROM {table} WHERE experiment_id = ?", (experiment_id,))
            cur = c.execute(
                "UPDATE experiments SET status = 'pending', started = NULL, finished = NULL, seconds = 0, "
                "error = NULL WHERE id = ?",
                (experiment_id,),
            )
            if cur.rowcount != 1:
                raise NotInStoreError(f"no experiment {experiment_id!r} in {self.db_path}")
        shutil.rmtree(self.root / "arrays" / experiment_id, ignore_errors=True)
        return int(n)

    @_guarded
    def round_table(self) -> list[dict[str, Any]]:
        """Every row of ``rounds`` joined with its experiment's dataset/model/strategy/seed/variant."""
        rows = self._conn.execute(
            "SELECT e.dataset, e.model, e.strategy, e.variant, e.seed, r.* FROM rounds r "
            "JOIN experiments e ON e.id = r.experiment_id ORDER BY e.rowid, r.round"
        ).fetchall()
        return [dict(r) for r in rows]

    # -- tables ---------------------------------------------------------------------------------------
    _FRAME_COLUMNS = (
        "experiment_id",
        "dataset",
        "model",
        "strategy",
        "variant",
        "seed",
        "round",
        "n_labeled",
        "eval_set",
        "metric",
        "value",
    )

    @_guarded
    def metrics_frame(self) -> list[dict[str, Any]]:
        """Every stored metric as a row dict with the keys of ``_FRAME_COLUMNS`` (NaN where NULL)."""
        rows = self._conn.execute(
            "SELECT m.experiment_id, e.dataset, e.model, e.strategy, e.variant, e.seed, m.round, "
            "r.n_labeled, m.eval_set, m.metric, m.value FROM metrics m "
            "JOIN rounds r ON r.experiment_id = m.experiment_id AND r.round = m.round "
            "JOIN experiments e ON e.id = m.experiment_id "
            "ORDER BY e.rowid, m.round, m.eval_set, m.metric"
        ).fetchall()
        return [{**dict(r), "value": _none_to_nan(r["value"])} for r in rows]

    def export_csv(self, path: str | Path) -> Path:
        """Write :meth:`metrics_frame` to ``path`` as CSV (header row; NaN written as ``nan``; text cells a
        spreadsheet would run as a formula get a leading ``'``, see :func:`forgetting._csv.safe_cell`)."""
        columns = list(self._FRAME_COLUMNS)
        rows = (
            [row[c] if c != "value" else repr(row["value"]) for c in columns] for row in self.metrics_frame()
        )
        return atomic_write_text(path, csv_text([columns, *rows]))
