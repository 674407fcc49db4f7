"""forgetting vs baal vs scikit-activeml on the same active-learning work (issue 11).

Each library runs the same protocol through its own API, and the same evaluator scores every model it
trains:

* entropy, margin and BALD: baal 2.1 (``ActiveLearningDataset``, ``ActiveLearningLoop.step`` with its
  ``Entropy``/``Margin``/``BALD`` heuristics over ``ModelWrapper.predict_on_dataset``; ``MCDropoutModule``
  for BALD) and ours (``forgetting.training.fit``, ``forgetting.inference.predict``,
  ``get_strategy(name).select``);
* BADGE and core-set: scikit-activeml 1.0 (``Badge.query(X, y, clf)`` and ``CoreSet.query(embeddings, y)``
  with a ``SkorchClassifier``) and ours;
* random: all three.

Protocol (``protocol.Protocol``): data ``mnist-5k``, seeds 0, 1, 2 (its 4,000 training images are the pool;
test 1,000; OOD ``digits``, ``gaussian_noise-3`` and ``contrast-3``, 500 images each) and ``fashion-mnist``,
seed 0 only, to fit the time (a seeded 4,000-image pool, 1,000 test images, ``gaussian_noise-3`` and
``contrast-3``); 20 stratified initial labels, 8 queries of 20 (budget 180); every round a fresh
``small-cnn`` (width 8, embed 64, dropout 0.25) trained for 10 epochs with Adam (lr 3e-3, batch 8); BALD
with 20 MC-dropout passes in both libraries; inference batch 64 for every library.

Then the phase costs on identical work (:func:`phase_costs`): each library's fit, deterministic pass and
MC-dropout pass repeated on the same data, interleaved, so that the per-run timings can be told from the
noise of a shared machine; and, with one trained model, whether ours and the peer pick the same images
(:func:`same_model_agreement`).

Fairness rules (also at the top of ``RESULTS.md``; ``protocol.FAIRNESS_RULES`` is the text):

1. the same data, as the same pixels; 2. the same initial labeled set per seed for every library; 3. the same
model and the same initial weights per round (one seed per (seed, round), shared); 4. the same training:
optimizer, learning rate, batch size, fixed epochs, no augmentation, each library with its own training loop;
5. the same query: size, rounds, the whole unlabeled pool as candidates, the same number of MC passes, the
same inference batch size (baal's single ``TrainingArgs.batch_size`` is switched to it for the query step;
skorch gets ``iterator_valid__batch_size``), entropy and margin on the eval-mode softmax in both; 6. each
library through its own recommended API; 7. the same evaluator (``forgetting.evaluation.evaluate``, eval mode,
untimed) on the test set and every OOD set for every trained model; 8. the same machine: CPU, one torch thread
and one BLAS thread per run, subnormals flushed to zero, runs one after the other; 9. phases: ``train`` (the
fit), ``score`` (forward passes for the query), ``select`` (the rest of the query step); a peer that scores
inside its query call is timed around its own prediction call, and ``select`` is the query call minus that.

Output: per-run JSON lines in ``benchmarks/peers/results/runs-<protocol hash>.jsonl`` (a rerun skips the
finished runs: the benchmark is resumable), and ``benchmarks/peers/RESULTS.md`` (the fairness rules, the
setup, the versions, and per dataset: AUBC and final accuracy, accuracy per round, wall time per phase and
our time over the peer's). ``benchmarks/peers/notes.md``, when present, is appended as the observations.

Run: ``make bench-peers`` (builds ``.venv-peers`` from ``benchmarks/peers/requirements*.txt`` once, about 2
minutes, then runs this script: about 18 minutes on 2 CPU cores, 16 of them the runs). ``--quick`` is a
half-minute smoke run into ``benchmarks/peers/results/quick/``. The peers are not project dependencies; they
are imported lazily, so ``protocol.py`` and this module import without them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from protocol import (  # the sibling module, through the path set above
    BAAL,
    INITIAL,
    LIBRARIES,
    MATRIX,
    MC,
    MODEL,
    OURS,
    PHASES,
    QUERY,
    SKAL,
    TRAIN,
    Protocol,
    append_run,
    initial_labeled,
    jobs,
    load_runs,
    results_markdown,
    round_seed,
    run_key,
)

from forgetting.data.dataset import Split
from forgetting.evaluation import evaluate
from forgetting.inference import predict
from forgetting.models import build_model
from forgetting.strategies import Input, StrategyInputs, get_strategy
from forgetting.training import TrainConfig, fit

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
OOD_SETS = {
    "mnist-5k": ("digits", "gaussian_noise-3", "contrast-3"),
    "fashion-mnist": ("gaussian_noise-3", "contrast-3"),
}
DEFAULT_DATASETS = ("mnist-5k:0,1,2", "fashion-mnist:0")
QUICK = Protocol(rounds=2, epochs=2, mc_samples=4, train_limit=600, test_limit=200, ood_limit=100)
DATA_SEED = 0
PEER_MODULES = {BAAL: "baal", SKAL: "skactiveml"}
PEER_DISTRIBUTIONS = ("forgetting", "torch", "baal", "scikit-activeml", "skorch", "numpy", "scikit-learn")

logger = logging.getLogger("bench-peers")


# ------------------------------------------------------------------------------------------------- data


@dataclass
class BenchData:
    """One dataset as every library gets it.

    Attributes:
        images: uint8 ``[N, C, H, W]`` the pool (what ours trains and scores on).
        images_float: float32 ``[N, C, H, W]`` the same pixels in ``[0, 1]`` (what the peers get).
        targets: int64 ``[N]`` labels (the oracle).
        eval_sets: name -> uint8 images and int64 labels; ``test`` first, then the OOD sets.
        num_classes: C.
    """

    images: torch.Tensor
    images_float: torch.Tensor
    targets: torch.Tensor
    eval_sets: dict[str, Split]
    num_classes: int


def _subset(split: Split, limit: int, stream: int) -> Split:
    """A seeded subset of ``limit`` rows (sorted), or ``split`` when it is not larger."""
    n = len(split)
    if n <= limit:
        return split
    rng = np.random.default_rng(np.random.SeedSequence([DATA_SEED, stream]))
    idx = torch.from_numpy(np.sort(rng.choice(n, size=limit, replace=False)))
    return Split(split.images[idx], split.targets[idx])


_DATA: dict[tuple[str, str], BenchData] = {}


def load_data(name: str, protocol: Protocol) -> BenchData:
    """The pool, the test set and the OOD sets of ``name`` (seeded subsets; cached per process)."""
    from forgetting.data import build_eval_set, load_dataset

    key = (name, protocol.fingerprint())
    if key in _DATA:
        return _DATA[key]
    dataset = load_dataset(name, seed=DATA_SEED)
    train = _subset(dataset.train, protocol.train_limit, 0)
    test = _subset(dataset.test, protocol.test_limit, 1)
    eval_sets = {"test": test}
    for i, ood in enumerate(OOD_SETS.get(name, ())):
        split = build_eval_set(ood, test, seed=DATA_SEED, classes=dataset.classes)
        eval_sets[ood] = _subset(split, protocol.ood_limit, 2 + i)
    data = BenchData(
        images=train.images.contiguous(),
        images_float=train.images.float().div(255.0).contiguous(),
        targets=train.targets.contiguous(),
        eval_sets=eval_sets,
        num_classes=int(dataset.num_classes),
    )
    _DATA[key] = data
    return data


def new_model(protocol: Protocol, data: BenchData, seed: int, rnd: int) -> nn.Module:
    """Round ``rnd``'s fresh ``small-cnn``: the same weights for every library (fairness rule 3)."""
    return build_model(
        "small-cnn",
        int(data.images.shape[1]),
        data.num_classes,
        seed=round_seed(seed, rnd, MODEL),
        **dict(protocol.model_options),
    )


# ----------------------------------------------------------------------------------------------- runners


class Clock:
    """Wall and CPU (process) seconds per phase, accumulated over one round.

    Runners time ``train`` (the fit call), ``query`` (the whole query step) and, nested in it, ``score`` (the
    forward passes); :meth:`phases` reports ``select = query - score``.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - wall
            self.cpu[name] += time.process_time() - cpu

    def phases(self, source: str = "wall") -> dict[str, float]:
        """``{train, score, select}`` seconds of ``source`` (``wall`` or ``cpu``)."""
        d = self.wall if source == "wall" else self.cpu
        return {"train": d["train"], "score": d["score"], "select": max(d["query"] - d["score"], 0.0)}


class Runner:
    """One library's side of one run: trains round ``rnd``'s model and queries the next labels.

    Subclasses keep the labeled set in the library's own structures; :func:`run_one` checks every query
    against its own copy.
    """

    library = ""

    def __init__(
        self, data: BenchData, protocol: Protocol, strategy: str, seed: int, initial: np.ndarray
    ) -> None:
        self.data = data
        self.protocol = protocol
        self.strategy = strategy
        self.seed = seed
        self.n = int(data.targets.shape[0])

    def train(self, rnd: int, clock: Clock) -> None:
        """Build round ``rnd``'s model and fit it, timing the library's fit call as ``train``."""
        raise NotImplementedError

    def eval_model(self) -> nn.Module:
        """The model just trained, as a plain deterministic module for ``evaluate``."""
        raise NotImplementedError

    def query(self, rnd: int, n: int, clock: Clock) -> np.ndarray:
        """Pick ``n`` unlabeled samples: int64 ``[n]`` indices into the pool data. Times ``query`` and
        ``score``."""
        raise NotImplementedError


class OursRunner(Runner):
    """forgetting: ``fit``, ``predict`` (MC dropout re-runs only the head) and the strategy's ``select``."""

    library = OURS

    def __init__(
        self, data: BenchData, protocol: Protocol, strategy: str, seed: int, initial: np.ndarray
    ) -> None:
        super().__init__(data, protocol, strategy, seed, initial)
        self.labeled = np.sort(initial).astype(np.int64)
        self.plan = get_strategy(strategy)
        self.train_config = TrainConfig(
            optimizer="adam",
            lr=protocol.lr,
            batch_size=protocol.batch_size,
            epochs=protocol.epochs,
            augment=False,
        )
        self.model: nn.Module | None = None

    def train(self, rnd: int, clock: Clock) -> None:
        model = new_model(self.protocol, self.data, self.seed, rnd)
        with clock.phase("train"):
            idx = torch.from_numpy(self.labeled)
            fit(
                model,
                Split(self.data.images[idx], self.data.targets[idx]),
                self.train_config,
                seed=round_seed(self.seed, rnd, TRAIN),
            )
        self.model = model

    def eval_model(self) -> nn.Module:
        assert self.model is not None
        return self.model

    def query(self, rnd: int, n: int, clock: Clock) -> np.ndarray:
        assert self.model is not None
        requires = self.plan.requires
        want_probs, want_embed = Input.PROBS in requires, Input.EMBEDDINGS in requires
        want_mc = Input.MC_PROBS in requires
        with clock.phase("query"):
            unlabeled = np.ones(self.n, dtype=bool)
            unlabeled[self.labeled] = False
            pool = np.flatnonzero(unlabeled).astype(np.int64)
            inputs = StrategyInputs(n_pool=int(pool.size))
            if want_probs or want_embed or want_mc:
                with clock.phase("score"):
                    out = predict(
                        self.model,
                        self.data.images[torch.from_numpy(pool)],
                        probs=want_probs,
                        embeddings=want_embed,
                        mc_samples=self.protocol.mc_samples if want_mc else 0,
                        batch_size=self.protocol.infer_batch,
                        generator_seed=round_seed(self.seed, rnd, MC),
                    )
                    inputs.probs_N_C = out.probs_N_C
                    inputs.embeddings_N_D = out.embeddings_N_D
                    inputs.mc_probs_K_N_C = out.mc_probs_K_N_C
                    if want_embed:
                        inputs.labeled_embeddings_L_D = predict(
                            self.model,
                            self.data.images[torch.from_numpy(self.labeled)],
                            probs=False,
                            embeddings=True,
                            batch_size=self.protocol.infer_batch,
                        ).embeddings_N_D
            selection = self.plan.select(inputs, n, seed=round_seed(self.seed, rnd, QUERY))
            picked = pool[np.asarray(selection.indices, dtype=np.int64)]
            self.labeled = np.sort(np.concatenate([self.labeled, picked]))
        return picked


class BaalRunner(Runner):
    """baal: ``ModelWrapper`` training, ``ActiveLearningLoop.step`` over ``predict_on_dataset``."""

    library = BAAL

    def __init__(
        self, data: BenchData, protocol: Protocol, strategy: str, seed: int, initial: np.ndarray
    ) -> None:
        super().__init__(data, protocol, strategy, seed, initial)
        from baal.active import ActiveLearningDataset

        quiet_baal()
        labelled = np.zeros(self.n, dtype=bool)
        labelled[initial] = True
        dataset = torch.utils.data.TensorDataset(data.images_float, data.targets)
        self.al_dataset = ActiveLearningDataset(dataset, labelled=labelled)
        self.iterations = protocol.mc_samples if strategy == "bald" else 1
        self.wrapper: Any = None
        self.clock: Clock | None = None

    def train(self, rnd: int, clock: Clock) -> None:
        from baal.bayesian.dropout import MCDropoutModule
        from baal.modelwrapper import ModelWrapper, TrainingArgs

        net: nn.Module = new_model(self.protocol, self.data, self.seed, rnd)
        if self.strategy == "bald":
            net = MCDropoutModule(net)
        args = TrainingArgs(
            optimizer=torch.optim.Adam(net.parameters(), lr=self.protocol.lr),
            batch_size=self.protocol.batch_size,
            epoch=self.protocol.epochs,
            use_cuda=False,
            workers=0,  # in-process loading, as ours and skorch do; 4 worker processes per epoch on 2 cores
            criterion=nn.CrossEntropyLoss(),
            replicate_in_memory=self.protocol.baal_replicate_in_memory,
        )
        self.wrapper = ModelWrapper(net, args)
        torch.manual_seed(round_seed(self.seed, rnd, TRAIN))
        with clock.phase("train"):
            self.wrapper.train_on_dataset(self.al_dataset)

    def eval_model(self) -> nn.Module:
        from baal.bayesian.dropout import MCDropoutModule, unpatch_module

        model = self.wrapper.model
        if isinstance(model, MCDropoutModule):
            # baal's MC dropout ignores eval mode; score a copy with ordinary dropout (off in eval mode).
            return unpatch_module(model.parent_module, inplace=False)
        return model

    def _predict(self, pool: Any, **kwargs: Any) -> np.ndarray:
        """``ModelWrapper.predict_on_dataset``, timed as ``score``: ``[P, C, iterations]`` logits."""
        assert self.clock is not None
        with self.clock.phase("score"):
            return self.wrapper.predict_on_dataset(pool, **kwargs)

    def query(self, rnd: int, n: int, clock: Clock) -> np.ndarray:
        from baal.active import ActiveLearningLoop
        from baal.active.heuristics import BALD, Entropy, Margin, Random

        query_seed = round_seed(self.seed, rnd, QUERY)
        heuristic = {
            "random": lambda: Random(seed=query_seed),
            "entropy": Entropy,
            "margin": Margin,
            "bald": BALD,
        }[self.strategy]()
        loop = ActiveLearningLoop(
            self.al_dataset,
            self._predict,
            heuristic,
            query_size=n,
            iterations=self.iterations,
            verbose=False,
        )
        before = self.al_dataset.labelled.copy()
        self.wrapper.args.batch_size = self.protocol.infer_batch  # fairness rule 5
        torch.manual_seed(round_seed(self.seed, rnd, MC))
        # ActiveLearningLoop draws random's placeholder scores from the global np.random.
        np.random.seed(query_seed)  # noqa: NPY002
        self.clock = clock
        with clock.phase("query"):
            loop.step()
        self.wrapper.args.batch_size = self.protocol.batch_size
        return np.flatnonzero(self.al_dataset.labelled & ~before).astype(np.int64)


def quiet_baal() -> None:
    """baal logs every training and prediction call at INFO through structlog; keep WARNING and above."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


class LogitsAndEmbeddings(nn.Module):
    """A forgetting classifier for skorch: float32 ``[B, C*H*W]`` -> (logits ``[B, K]``, features ``[B, D]``).

    scikit-activeml's ``Badge`` reads embeddings from ``predict_proba(X, extra_outputs=...)``, which a
    ``SkorchClassifier`` serves from a module that returns them next to the logits.
    """

    def __init__(self, net: nn.Module, image_shape: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.image_shape = tuple(int(s) for s in image_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net.embed(x.view(-1, *self.image_shape))
        return self.net.head(self.net.dropout_layer(h)), h


def _timed_skorch_classifier() -> type:
    """``SkorchClassifier`` whose ``predict_proba`` is timed as ``score`` on its ``clock_`` (lazy import)."""
    from skactiveml.classifier import SkorchClassifier

    class TimedSkorchClassifier(SkorchClassifier):
        def predict_proba(self, X: Any, extra_outputs: Any = None) -> Any:
            clock = getattr(self, "clock_", None)
            if clock is None:
                return super().predict_proba(X, extra_outputs=extra_outputs)
            with clock.phase("score"):
                return super().predict_proba(X, extra_outputs=extra_outputs)

    return TimedSkorchClassifier


class SkactivemlRunner(Runner):
    """scikit-activeml: ``SkorchClassifier.fit`` on (X, y with NaN for unlabeled), then its query strategy."""

    library = SKAL

    def __init__(
        self, data: BenchData, protocol: Protocol, strategy: str, seed: int, initial: np.ndarray
    ) -> None:
        super().__init__(data, protocol, strategy, seed, initial)
        self.X = data.images_float.reshape(self.n, -1).numpy()
        self.y_true = data.targets.numpy().astype(np.float64)
        self.y = np.full(self.n, np.nan)
        self.y[initial] = self.y_true[initial]
        self.classifier_cls = _timed_skorch_classifier()
        self.clf: Any = None
        self.net: nn.Module | None = None

    def train(self, rnd: int, clock: Clock) -> None:
        net = new_model(self.protocol, self.data, self.seed, rnd)
        module = LogitsAndEmbeddings(net, self.data.images.shape[1:])
        self.clf = self.classifier_cls(
            module,
            criterion=nn.CrossEntropyLoss,
            forward_outputs={"proba": (0, nn.Softmax(dim=-1)), "emb": (1, None)},
            criterion_output_keys="proba",
            neural_net_param_dict={
                "optimizer": torch.optim.Adam,
                "lr": self.protocol.lr,
                "max_epochs": self.protocol.epochs,
                "batch_size": self.protocol.batch_size,
                "iterator_train__shuffle": True,
                "iterator_valid__batch_size": self.protocol.infer_batch,  # fairness rule 5
                "train_split": None,
                "verbose": 0,
                "device": "cpu",
            },
            classes=np.arange(self.data.num_classes),
            random_state=round_seed(self.seed, rnd, TRAIN),
        )
        torch.manual_seed(round_seed(self.seed, rnd, TRAIN))
        with clock.phase("train"):
            self.clf.fit(self.X, self.y)
        if self.clf.neural_net_.module_ is not module:
            raise RuntimeError("skorch trained a copy of the module; the evaluator would score the wrong one")
        self.net = net

    def eval_model(self) -> nn.Module:
        assert self.net is not None
        return self.net

    def query(self, rnd: int, n: int, clock: Clock) -> np.ndarray:
        from skactiveml.pool import Badge, CoreSet, RandomSampling

        query_seed = round_seed(self.seed, rnd, QUERY)
        self.clf.clock_ = clock
        with clock.phase("query"):
            if self.strategy == "badge":
                qs = Badge(clf_embedding_flag_name={"extra_outputs": "emb"}, random_state=query_seed)
                picked = qs.query(self.X, self.y, clf=self.clf, fit_clf=False, batch_size=n)
            elif self.strategy == "coreset":
                embeddings = self.clf.predict_proba(self.X, extra_outputs="emb")[1]
                picked = CoreSet(random_state=query_seed).query(embeddings, self.y, batch_size=n)
            elif self.strategy == "random":
                picked = RandomSampling(random_state=query_seed).query(self.X, self.y, batch_size=n)
            else:
                raise ValueError(f"scikit-activeml does not run {self.strategy!r} in this benchmark")
            picked = np.asarray(picked, dtype=np.int64)
            self.y[picked] = self.y_true[picked]
        self.clf.clock_ = None
        return picked


RUNNERS: dict[str, type[Runner]] = {OURS: OursRunner, BAAL: BaalRunner, SKAL: SkactivemlRunner}


# ------------------------------------------------------------------------------------------------- runs


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries under test (``missing`` when not installed)."""
    out = {}
    for dist in PEER_DISTRIBUTIONS:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


def run_one(job: Mapping[str, Any], protocol: Protocol) -> dict[str, Any]:
    """One (dataset, seed, library, strategy) run: ``protocol.rounds + 1`` rounds of train, evaluate, query.

    Returns:
        The run record: the job's keys, ``fingerprint``, ``protocol``, ``versions``, ``initial``,
        ``wall_seconds`` and ``rounds`` (per round: ``round``, ``n_labeled``, ``seconds`` and ``cpu_seconds``
        {train, score, select}, ``metrics`` {eval set: {accuracy, nll, ece}}, ``query`` indices).
    """
    start = time.perf_counter()
    data = load_data(job["dataset"], protocol)
    seed = int(job["seed"])
    initial = initial_labeled(data.targets.numpy(), protocol.initial_size, seed)
    runner = RUNNERS[job["library"]](data, protocol, job["strategy"], seed, initial)
    labeled = initial.copy()
    rounds = []
    for rnd in range(protocol.rounds + 1):
        clock = Clock()
        runner.train(rnd, clock)
        model = runner.eval_model()
        metrics = {name: evaluate(model, split) for name, split in data.eval_sets.items()}
        picked = np.zeros(0, dtype=np.int64)
        if rnd < protocol.rounds:
            picked = runner.query(rnd, protocol.query_size, clock)
            fresh = np.setdiff1d(picked, labeled)
            if picked.size != protocol.query_size or fresh.size != picked.size:
                raise RuntimeError(
                    f"{run_key(job)} round {rnd}: expected {protocol.query_size} new unlabeled indices, "
                    f"got {picked.size} ({fresh.size} new)"
                )
        rounds.append(
            {
                "round": rnd,
                "n_labeled": int(labeled.size),
                "seconds": clock.phases("wall"),
                "cpu_seconds": clock.phases("cpu"),
                "metrics": metrics,
                "query": picked.tolist(),
            }
        )
        labeled = np.concatenate([labeled, picked])
    return {
        **dict(job),
        "fingerprint": protocol.fingerprint(),
        "protocol": protocol.to_dict(),
        "versions": library_versions(),
        "initial": initial.tolist(),
        "wall_seconds": time.perf_counter() - start,
        "rounds": rounds,
    }


def phase_costs(
    dataset: str, protocol: Protocol, seed: int = 0, reps: int = 5, mc_reps: int = 2
) -> dict[str, Any]:
    """Each library's cost of the same phase on identical work, repeated: what the per-run tables measure
    with the noise of a shared machine averaged out, and where BALD's scoring time goes.

    One seeded labeled set of ``protocol.budget`` images (the size of the last round); the rest of the pool
    is scored. ``train``: each library's fit of round 0's model (``reps`` times, interleaved). ``score``: one
    deterministic pass over the pool with each library's prediction call. ``MC``: K MC-dropout passes over
    the pool with our trained model: ours as the benchmark runs it (features once, dropout and head K
    times), ours forced to K full passes (the model wrapped so ``predict`` cannot see its head), and baal's
    ``predict_on_dataset`` with ``replicate_in_memory`` False (as in the benchmark) and True (its default),
    ``mc_reps`` times each.

    Returns:
        ``{"dataset", "agreement", "labels", "pool", "mc_samples", "batch", "rows": [{"phase", "library",
        "method", "seconds": [per repetition]}]}``; the first row of each phase is ours; ``agreement`` is
        :func:`same_model_agreement` of our trained model.
    """
    import copy

    from baal.bayesian.dropout import MCDropoutModule
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    quiet_baal()
    data = load_data(dataset, protocol)
    n = int(data.targets.shape[0])
    rng = np.random.default_rng(np.random.SeedSequence([seed, INITIAL]))
    labeled = np.sort(rng.choice(n, size=protocol.budget, replace=False)).astype(np.int64)
    unlabeled = np.ones(n, dtype=bool)
    unlabeled[labeled] = False
    pool = np.flatnonzero(unlabeled)
    pool_t = torch.from_numpy(pool)
    ours = OursRunner(data, protocol, "entropy", seed, labeled)
    baal = BaalRunner(data, protocol, "entropy", seed, labeled)
    skal = SkactivemlRunner(data, protocol, "random", seed, labeled)
    k, batch = protocol.mc_samples, protocol.infer_batch
    rows: dict[tuple[str, str, str], list[float]] = {}

    def timed(phase: str, library: str, method: str, fn: Any) -> None:
        t0 = time.perf_counter()
        fn()
        rows.setdefault((phase, library, method), []).append(time.perf_counter() - t0)

    for _ in range(reps):
        for library, runner, method in (
            (OURS, ours, "fit"),
            (BAAL, baal, "ModelWrapper.train_on_dataset"),
            (SKAL, skal, "SkorchClassifier.fit"),
        ):
            clock = Clock()
            runner.train(0, clock)
            rows.setdefault(("train", library, method), []).append(clock.wall["train"])
    pool_images = data.images[pool_t]
    baal_pool = baal.al_dataset.pool
    skal_pool = skal.X[pool]
    baal.wrapper.args.batch_size = batch
    for _ in range(reps):
        timed(
            "score", OURS, "predict", lambda: predict(ours.model, pool_images, probs=True, batch_size=batch)
        )
        timed(
            "score",
            BAAL,
            "predict_on_dataset, 1 pass",
            lambda: baal.wrapper.predict_on_dataset(baal_pool, iterations=1, verbose=False),
        )
        timed("score", SKAL, "SkorchClassifier.predict_proba", lambda: skal.clf.predict_proba(skal_pool))

    model = ours.eval_model()
    pool_dataset = torch.utils.data.TensorDataset(data.images_float[pool_t], data.targets[pool_t])
    wrappers = {
        replicate: ModelWrapper(
            MCDropoutModule(copy.deepcopy(model)),
            TrainingArgs(batch_size=batch, workers=0, use_cuda=False, replicate_in_memory=replicate),
        )
        for replicate in (False, True)
    }
    for _ in range(mc_reps):
        timed(
            "MC",
            OURS,
            "predict: features once, dropout + head K times",
            lambda: predict(model, pool_images, probs=False, mc_samples=k, batch_size=batch),
        )
        # Wrapped, the model shows predict no head to re-run, so it makes K full passes.
        timed(
            "MC",
            OURS,
            "predict forced to K full passes",
            lambda: predict(nn.Sequential(model), pool_images, probs=False, mc_samples=k, batch_size=batch),
        )
        for replicate, wrapper in wrappers.items():
            timed(
                "MC",
                BAAL,
                f"predict_on_dataset, replicate_in_memory={replicate}",
                lambda w=wrapper: w.predict_on_dataset(pool_dataset, iterations=k, verbose=False),
            )
    return {
        "dataset": dataset,
        "agreement": same_model_agreement(model, data, labeled, protocol),
        "labels": int(labeled.size),
        "pool": int(pool.size),
        "mc_samples": k,
        "batch": batch,
        "rows": [
            {"phase": phase, "library": library, "method": method, "seconds": seconds}
            for (phase, library, method), seconds in rows.items()
        ],
    }


def same_model_agreement(
    model: nn.Module, data: BenchData, labeled: np.ndarray, protocol: Protocol
) -> dict[str, float]:
    """With one trained model, how many of the peer's picks ours makes too (fraction of a query).

    Entropy and margin: baal's heuristics ranking baal's predictions of ``model``; core-set: scikit-activeml's
    ``CoreSet`` on ``model``'s embeddings. All three are deterministic given the model, so any difference in
    the benchmark's accuracies comes from the training (batch order, dropout masks), not from the strategies.
    """
    import copy

    from baal.active.heuristics import Entropy, Margin
    from baal.modelwrapper import ModelWrapper, TrainingArgs
    from skactiveml.pool import CoreSet

    q = protocol.query_size
    n = int(data.targets.shape[0])
    unlabeled = np.ones(n, dtype=bool)
    unlabeled[labeled] = False
    pool = np.flatnonzero(unlabeled)
    pool_t = torch.from_numpy(pool)
    out = predict(model, data.images, probs=True, embeddings=True, batch_size=protocol.infer_batch)
    assert out.probs_N_C is not None and out.embeddings_N_D is not None

    def ours(name: str) -> set[int]:
        inputs = StrategyInputs(
            n_pool=int(pool.size),
            probs_N_C=out.probs_N_C[pool_t],
            embeddings_N_D=out.embeddings_N_D[pool_t],
            labeled_embeddings_L_D=out.embeddings_N_D[torch.from_numpy(labeled)],
        )
        return set(pool[np.asarray(get_strategy(name).select(inputs, q, seed=0).indices)].tolist())

    wrapper = ModelWrapper(
        copy.deepcopy(model), TrainingArgs(batch_size=protocol.infer_batch, workers=0, use_cuda=False)
    )
    pool_dataset = torch.utils.data.TensorDataset(data.images_float[pool_t], data.targets[pool_t])
    logits = wrapper.predict_on_dataset(pool_dataset, iterations=1, verbose=False)
    agreement = {}
    for name, heuristic in (("entropy", Entropy()), ("margin", Margin())):
        theirs = set(pool[np.asarray(heuristic(logits))[:q]].tolist())
        agreement[name] = len(ours(name) & theirs) / q
    y = np.full(n, np.nan)
    y[labeled] = data.targets.numpy()[labeled]
    theirs = CoreSet(random_state=0).query(out.embeddings_N_D.numpy(), y, batch_size=q)
    agreement["coreset"] = len(ours("coreset") & {int(i) for i in theirs}) / q
    return agreement


_LIMITS: Any = None


def _init_worker() -> None:
    """One torch thread and one BLAS thread per run, denormals flushed to zero (fairness rule 8)."""
    global _LIMITS
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    # Subnormal floats (tiny activations and gradients of the small-data rounds) take a slow path on x86:
    # flushing them makes every library's training about 2.5x faster on this machine, and changes no result
    # beyond rounding.
    torch.set_flush_denormal(True)
    _LIMITS = threadpool_limits(limits=1)
    logging.getLogger("forgetting").setLevel(logging.WARNING)


def _job_cost(job: Mapping[str, Any]) -> float:
    """A rough cost, to start the long runs first when runs go to several workers."""
    if job["library"] == BAAL and job["strategy"] == "bald":
        return 5.0  # K passes of the whole network over the pool per round
    return 1.5 if job["library"] == SKAL else 1.0


def execute(todo: Sequence[dict[str, Any]], protocol: Protocol, results: Path, n_jobs: int) -> None:
    """Run ``todo``, appending each finished run to ``results`` as it comes in.

    One worker (the default) runs the plan in order, so the libraries' runs of one (dataset, seed, strategy)
    follow each other and see the same load on the machine; several workers start the long runs first.
    """
    t0 = time.perf_counter()
    if n_jobs <= 1:
        _init_worker()
        for i, job in enumerate(todo, 1):
            run = run_one(job, protocol)
            append_run(results, run)
            _report(i, len(todo), run, t0)
        return
    order = sorted(todo, key=lambda j: -_job_cost(j))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx, initializer=_init_worker) as pool:
        futures = [pool.submit(run_one, job, protocol) for job in order]
        for i, future in enumerate(as_completed(futures), 1):
            run = future.result()
            append_run(results, run)
            _report(i, len(order), run, t0)


def _report(i: int, n: int, run: Mapping[str, Any], t0: float) -> None:
    last = run["rounds"][-1]["metrics"]["test"]["accuracy"]
    phases = {p: sum(r["seconds"][p] for r in run["rounds"]) for p in PHASES}
    print(
        f"[{i}/{n} {time.perf_counter() - t0:6.0f}s] {run_key(run):40s} final test {last:.3f}  "
        + "  ".join(f"{p} {s:6.1f}s" for p, s in phases.items()),
        flush=True,
    )


# -------------------------------------------------------------------------------------------------- CLI


def parse_plan(items: Sequence[str], default_seeds: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """``["mnist-5k:0,1,2", "fashion-mnist"]`` -> dataset -> seeds (``default_seeds`` without a suffix)."""
    plan: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, _, seeds = item.partition(":")
        plan[name] = tuple(int(s) for s in seeds.split(",")) if seeds else tuple(default_seeds)
    return plan


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Side-by-side active-learning benchmark: forgetting vs baal vs scikit-activeml.",
        epilog="Fairness rules: see the module docstring and RESULTS.md.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (1 seed, 2 rounds, small pool)")
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        help="datasets, each optionally with its seeds, e.g. mnist-5k:0,1,2 (default: "
        + " ".join(DEFAULT_DATASETS)
        + "; --quick: mnist-5k:0)",
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of datasets given without"
    )
    parser.add_argument("--strategies", nargs="+", choices=list(MATRIX), default=None)
    parser.add_argument("--libraries", nargs="+", choices=list(LIBRARIES), default=None)
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes, one thread each (default 1: runs do not slow each other down)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="override the protocol's number of queries")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs per round")
    parser.add_argument("--results-dir", type=Path, default=None, help="where the per-run JSON lines go")
    parser.add_argument("--out", type=Path, default=None, help="the Markdown report (default RESULTS.md)")
    parser.add_argument(
        "--notes", type=Path, default=HERE / "notes.md", help="Markdown appended to the report"
    )
    return parser


def check_peers(libraries: set[str]) -> None:
    """Fail early, with the command that installs them, when a peer library is missing."""
    missing = [
        m for lib, m in PEER_MODULES.items() if lib in libraries and importlib.util.find_spec(m) is None
    ]
    if missing:
        raise SystemExit(
            f"missing peer libraries: {', '.join(missing)}. They live in their own venv: run "
            "`make bench-peers`, or `.venv-peers/bin/python benchmarks/peers/run.py` once it is built."
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    protocol = QUICK if args.quick else Protocol()
    if args.rounds is not None:
        protocol = replace(protocol, rounds=args.rounds)
    if args.epochs is not None:
        protocol = replace(protocol, epochs=args.epochs)
    plan = parse_plan(args.datasets or (["mnist-5k:0"] if args.quick else list(DEFAULT_DATASETS)), args.seeds)
    results_dir = args.results_dir or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    out = args.out or (results_dir / "RESULTS.md" if args.quick else HERE / "RESULTS.md")
    fingerprint = protocol.fingerprint()
    results = results_dir / f"runs-{fingerprint}.jsonl"
    micro_path = results_dir / f"phase-costs-{fingerprint}.json"

    wanted = jobs(plan, args.strategies)
    if args.libraries is not None:
        wanted = [j for j in wanted if j["library"] in args.libraries]
    done = load_runs(results, fingerprint)
    todo = [j for j in wanted if run_key(j) not in done]
    # The phase-cost measurement needs every library and the whole matrix (the default plan).
    want_micro = args.libraries is None and args.strategies is None
    libraries = {j["library"] for j in todo} | (
        {BAAL, SKAL} if want_micro and not micro_path.exists() else set()
    )
    check_peers(libraries)
    print(
        f"{len(wanted)} runs planned, {len(wanted) - len(todo)} already in {results}; running {len(todo)} "
        f"with {args.jobs} worker(s)",
        flush=True,
    )
    t0 = time.perf_counter()
    if want_micro and not micro_path.exists():
        _init_worker()
        print("measuring the phase costs on identical work...", flush=True)
        micro = phase_costs(next(iter(plan)), protocol)
        micro_path.parent.mkdir(parents=True, exist_ok=True)
        micro_path.write_text(json.dumps(micro, indent=1) + "\n")
    if todo:
        execute(todo, protocol, results, args.jobs)
    wall = time.perf_counter() - t0
    done = load_runs(results, fingerprint)
    runs = [done[run_key(j)] for j in wanted if run_key(j) in done]
    versions = library_versions()
    meta = {name: versions[name] for name in PEER_DISTRIBUTIONS}
    meta["python"] = platform.python_version()
    meta["CPU"] = f"{os.cpu_count()} cores ({platform.machine()}); {args.jobs} worker process(es), 1 thread"
    total = sum(r["wall_seconds"] for r in runs)
    meta["run time"] = f"{total / 60:.1f} min over {len(runs)} runs (evaluation included)"
    use_notes = args.notes is not None and args.notes.exists() and not args.quick
    notes = args.notes.read_text() if use_notes else ""
    text = results_markdown(
        runs,
        protocol,
        meta=meta,
        eval_sets={d: OOD_SETS.get(d, ()) for d in plan},
        micro=json.loads(micro_path.read_text()) if want_micro and micro_path.exists() else None,
        notes=notes,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out} ({len(runs)} runs; this invocation {wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
