"""The library-independent half of the peer benchmark (``benchmarks/peers/run.py``, issue 11).

Everything here is shared by every library under test, so that they get the same work, and it imports
neither baal nor scikit-activeml (``tests/test_peers_benchmark.py`` checks it without the peers installed):

* the protocol (:class:`Protocol`) and which library runs which strategy (:data:`MATRIX`);
* the seeds: one initial labeled set per seed (:func:`initial_labeled`) and one seed per round and purpose
  (:func:`round_seed`), the same for every library;
* the run records (one JSON line per finished run; :func:`load_runs`, :func:`append_run`);
* the aggregation (:func:`aubc`, :func:`summarize_run`, :func:`aggregate`, :func:`time_ratio`) and the
  Markdown tables of ``RESULTS.md`` (:func:`results_markdown`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forgetting.experiments.analysis import aubc as _report_aubc

OURS = "forgetting"
BAAL = "baal"
SKAL = "scikit-activeml"
LIBRARIES = (OURS, BAAL, SKAL)
PHASES = ("train", "score", "select")
MEAN_OOD = "mean OOD"

#: strategy -> the libraries that run it (issue 11: entropy, margin and BALD against baal; BADGE and core-set
#: against scikit-activeml; random everywhere).
MATRIX: dict[str, tuple[str, ...]] = {
    "random": (OURS, BAAL, SKAL),
    "entropy": (OURS, BAAL),
    "margin": (OURS, BAAL),
    "bald": (OURS, BAAL),
    "badge": (OURS, SKAL),
    "coreset": (OURS, SKAL),
}

# Purposes of the derived seeds (forgetting.loop.derive_seed(seed, round, purpose)); distinct from the loop's
# own 0..6 so the benchmark's streams are its own.
INITIAL, MODEL, TRAIN, MC, QUERY = 20, 21, 22, 23, 24

FAIRNESS_RULES = """\
1. **Same data.** Every library gets the same training pool, test set and OOD sets (seeded subsets, data
   seed 0), as the same images: uint8 for ours, the same pixels as float32 in [0, 1] for the peers (converted
   once, before any timing).
2. **Same initial labeled set.** Per seed, one stratified initial set (`forgetting.loop.initial_labeled_set`,
   seeded by `derive_seed(seed, 0, INITIAL)`), handed to every library.
3. **Same model, same initialisation.** Every round builds a fresh `small-cnn` (dropout 0.25 before the
   head) with the same per-round seed for every library (`derive_seed(seed, round, MODEL)`); baal wraps it in
   `MCDropoutModule` for BALD (its recommended call), scikit-activeml in a `SkorchClassifier` through a thin
   module that returns `(logits, embeddings)` (its documented deep-learning path).
4. **Same training.** Adam, the same learning rate, batch size and fixed number of epochs per round, no
   augmentation, plain cross-entropy; each library trains with its own loop (ours: `forgetting.training.fit`;
   baal: `ModelWrapper.train_on_dataset`; scikit-activeml: `SkorchClassifier.fit`). Batch order and dropout
   masks are each library's own, seeded per round with the same seed.
5. **Same query.** Query size, number of rounds, and the whole unlabeled pool as candidates every round (no
   subsampling). BALD: the same number of MC-dropout passes in baal and ours; baal runs them with
   `replicate_in_memory=False`, the faster of its two documented modes on a CPU (its default stacks the K
   copies of a batch into one forward pass; see "Phase costs on identical work"). Entropy and margin score
   the deterministic (eval-mode) softmax in both. The same inference batch size for every library (baal's
   `ModelWrapper` has one batch size for training and prediction: it is set to the inference size for the
   query step; skorch gets `iterator_valid__batch_size`).
6. **Each library through its own API.** baal: `ActiveLearningDataset` + `ActiveLearningLoop.step()` with
   its heuristics (`Random`, `Entropy`, `Margin`, `BALD`) over `ModelWrapper.predict_on_dataset`;
   scikit-activeml: `Badge.query(X, y, clf)`, `CoreSet.query(embeddings, y)` and `RandomSampling.query`
   with missing labels as NaN; ours: `fit`, `forgetting.inference.predict` and `get_strategy(name).select`.
7. **Same evaluator.** Every trained model (one per round, including the last) is scored by
   `forgetting.evaluation.evaluate` in eval mode (dropout off; baal's always-on MC dropout is unpatched on a
   copy first) on the in-distribution test set and on every OOD set. Evaluation is not timed.
8. **Same machine, same threads.** CPU only, one torch thread and one BLAS thread per run, subnormal
   floats flushed to zero (`torch.set_flush_denormal`) for everyone. Runs go one after the other (the
   default `--jobs 1`: parallel runs slow each other down unevenly), the libraries' runs of one (dataset,
   seed, strategy) next to each other so that they see the same load. Wall time is what the tables report;
   the CPU-time ratio and the phase costs on identical work (repeated, interleaved) check it against load
   from outside the benchmark.
9. **Phases.** `train`: the round's fit. `score`: the model's forward passes over the pool (and, where a
   strategy needs them, the labeled set). `select`: the rest of the query step (the ranking or diversity
   selection and the library's own bookkeeping). Peers that score inside their query call (baal's
   `ActiveLearningLoop.step`, scikit-activeml's `Badge.query`) are timed around their prediction call, and
   `select` is the query call's time minus that.
"""


@dataclass(frozen=True)
class Protocol:
    """The active-learning work every library does (fairness rules 1-5).

    Attributes:
        initial_size: labels before the first query.
        query_size: labels per query.
        rounds: queries; ``rounds + 1`` models are trained and evaluated, the last on
            ``initial_size + rounds * query_size`` labels.
        epochs, batch_size, lr: the fixed training of every round (Adam).
        model_options: ``small-cnn`` options (width, embed_dim, dropout).
        mc_samples: MC-dropout passes for BALD.
        infer_batch: inference batch size (scoring) for every library.
        baal_replicate_in_memory: baal's ``TrainingArgs.replicate_in_memory``. Its default (True) stacks the
            K copies of a batch into one forward pass, for GPUs; False runs K passes of the batch, which is
            faster on this CPU (see the MC-inference table), so the benchmark gives baal False.
        train_limit: seeded training-pool subset size (the whole split when it is smaller).
        test_limit, ood_limit: seeded subset sizes of the test set and of each OOD set.
    """

    initial_size: int = 20
    query_size: int = 20
    rounds: int = 8
    epochs: int = 10
    batch_size: int = 8
    lr: float = 3e-3
    model_options: Mapping[str, Any] = field(
        default_factory=lambda: {"width": 8, "embed_dim": 64, "dropout": 0.25}
    )
    mc_samples: int = 20
    infer_batch: int = 64
    baal_replicate_in_memory: bool = False
    train_limit: int = 4000
    test_limit: int = 1000
    ood_limit: int = 500

    @property
    def budget(self) -> int:
        """Labels of the last model."""
        return self.initial_size + self.rounds * self.query_size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_options"] = dict(self.model_options)
        return d

    def fingerprint(self) -> str:
        """A short hash of the protocol: stored runs are reused only under the same protocol."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def round_seed(seed: int, rnd: int, purpose: int) -> int:
    """The seed of one random choice (``purpose``: MODEL, TRAIN, MC or QUERY) of round ``rnd``."""
    from forgetting.loop import derive_seed

    return derive_seed(seed, rnd, purpose)


def initial_labeled(targets: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The initial labeled set of ``seed``, handed to every library: int64 ``[size]`` sorted indices into
    ``targets`` (int ``[N]`` class ids), stratified as in ``forgetting.loop``."""
    import torch

    from forgetting.loop import initial_labeled_set

    return initial_labeled_set(
        torch.as_tensor(np.asarray(targets, dtype=np.int64)),
        size,
        selection="stratified",
        seed=round_seed(seed, 0, INITIAL),
    )


def jobs(
    datasets: Mapping[str, Sequence[int]], strategies: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Every (dataset, seed, library, strategy) of the plan, as dicts with those keys, in plan order: the
    libraries of one (dataset, seed, strategy) next to each other.

    Args:
        datasets: dataset -> its seeds.
        strategies: a subset of :data:`MATRIX` (default: all of it).
    """
    wanted = list(MATRIX) if strategies is None else [s for s in MATRIX if s in set(strategies)]
    return [
        {"dataset": d, "seed": int(seed), "library": lib, "strategy": s}
        for d, seeds in datasets.items()
        for seed in seeds
        for s in wanted
        for lib in MATRIX[s]
    ]


def run_key(job: Mapping[str, Any]) -> str:
    """The identity of a run: ``dataset|seed|library|strategy``."""
    return f"{job['dataset']}|{job['seed']}|{job['library']}|{job['strategy']}"


# ------------------------------------------------------------------------------------------- persistence


def load_runs(path: Path, fingerprint: str | None = None) -> dict[str, dict[str, Any]]:
    """The finished runs stored in ``path`` (JSON lines), by :func:`run_key`; the last one of a key wins.

    Args:
        fingerprint: keep only runs of this protocol fingerprint (all when ``None``).
    """
    runs: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            run = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by an interrupted write: the run reruns
            continue
        if fingerprint is not None and run.get("fingerprint") != fingerprint:
            continue
        runs[run_key(run)] = run
    return runs


def append_run(path: Path, run: Mapping[str, Any]) -> None:
    """Append one finished run to ``path`` as one JSON line (flushed, so a killed benchmark resumes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(run) + "\n")
        f.flush()


# ------------------------------------------------------------------------------------------- aggregation


# The one AUBC definition of the project (normalised trapezoid area; the single value for one round, NaN for
# none or a NaN accuracy), so the peers' table and `forgetting report` cannot disagree.
aubc = _report_aubc


@dataclass
class RunSummary:
    """One run reduced to what the tables show.

    Attributes:
        n_labeled: int ``[R]`` labels per round.
        curves: eval set (and :data:`MEAN_OOD`) -> accuracy ``[R]``.
        seconds: phase -> wall seconds summed over the rounds.
        cpu_seconds: phase -> CPU (process) seconds summed over the rounds.
    """

    dataset: str
    seed: int
    library: str
    strategy: str
    n_labeled: np.ndarray
    curves: dict[str, np.ndarray]
    seconds: dict[str, float]
    cpu_seconds: dict[str, float]

    @property
    def ood_sets(self) -> list[str]:
        return [k for k in self.curves if k not in ("test", MEAN_OOD)]

    def aubc(self, eval_set: str) -> float:
        return aubc(self.n_labeled, self.curves[eval_set]) if eval_set in self.curves else math.nan

    def final(self, eval_set: str) -> float:
        return float(self.curves[eval_set][-1]) if eval_set in self.curves else math.nan


def summarize_run(run: Mapping[str, Any]) -> RunSummary:
    """Curves and phase totals of one stored run (``rounds``: ``n_labeled``, ``seconds``, ``metrics``)."""
    rounds = sorted(run["rounds"], key=lambda r: r["round"])
    n_labeled = np.array([r["n_labeled"] for r in rounds], dtype=np.int64)
    names = list(rounds[0]["metrics"]) if rounds else []
    curves = {
        name: np.array([r["metrics"][name]["accuracy"] for r in rounds], dtype=np.float64) for name in names
    }
    ood = [n for n in names if n != "test"]
    if ood:
        curves[MEAN_OOD] = np.mean([curves[n] for n in ood], axis=0)
    seconds = {p: float(sum(r["seconds"].get(p, 0.0) for r in rounds)) for p in PHASES}
    cpu = {p: float(sum(r.get("cpu_seconds", r["seconds"]).get(p, 0.0) for r in rounds)) for p in PHASES}
    return RunSummary(
        run["dataset"], int(run["seed"]), run["library"], run["strategy"], n_labeled, curves, seconds, cpu
    )


@dataclass
class GroupStats:
    """The runs of one (dataset, library, strategy) over seeds."""

    dataset: str
    library: str
    strategy: str
    runs: list[RunSummary]

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)

    def values(self, what: str, eval_set: str) -> list[float]:
        """``what`` = ``aubc`` or ``final`` of ``eval_set``, one per seed."""
        return [getattr(r, what)(eval_set) for r in self.runs]

    def mean_seconds(self, phase: str, source: str = "wall") -> float:
        """Seconds of ``phase`` (or ``total``) per run, mean over seeds; ``source``: ``wall`` or ``cpu``."""
        per_run = [r.seconds if source == "wall" else r.cpu_seconds for r in self.runs]
        if phase == "total":
            return float(np.mean([sum(d.values()) for d in per_run]))
        return float(np.mean([d[phase] for d in per_run]))

    def mean_curve(self, eval_set: str) -> np.ndarray:
        """Mean over seeds of the accuracy curve of ``eval_set`` (runs of one protocol share the x axis)."""
        return np.mean([r.curves[eval_set] for r in self.runs], axis=0)


def aggregate(runs: Iterable[Mapping[str, Any]]) -> list[GroupStats]:
    """Group stored runs by (dataset, library, strategy), ordered as :data:`MATRIX` and :data:`LIBRARIES`."""
    groups: dict[tuple[str, str, str], list[RunSummary]] = defaultdict(list)
    for run in runs:
        s = summarize_run(run)
        groups[(s.dataset, s.library, s.strategy)].append(s)
    strategy_order = {s: i for i, s in enumerate(MATRIX)}
    library_order = {lib: i for i, lib in enumerate(LIBRARIES)}
    keys = sorted(
        groups,
        key=lambda k: (k[0], strategy_order.get(k[2], len(MATRIX)), library_order.get(k[1], 9), k[2]),
    )
    return [GroupStats(d, lib, s, sorted(groups[(d, lib, s)], key=lambda r: r.seed)) for d, lib, s in keys]


def time_ratio(ours: float, peer: float) -> float:
    """Our wall time over the peer's (below 1: we are faster); NaN when the peer spent (almost) nothing."""
    if not math.isfinite(ours) or not math.isfinite(peer) or peer < 1e-3:
        return math.nan
    return ours / peer


# ------------------------------------------------------------------------------------------- Markdown


def mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """``"m ± s"`` of the finite values times ``scale`` (sample std; ``± 0`` for one value; ``–`` for
    none)."""
    v = np.array([x for x in values if math.isfinite(x)], dtype=np.float64) * scale
    if v.size == 0:
        return "–"
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {std:.{digits}f}"


def fmt_ratio(x: float) -> str:
    """A time ratio as ``0.12×``; ``–`` when undefined."""
    return "–" if not math.isfinite(x) else f"{x:.2f}×"


def fmt_seconds(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:.1f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub Markdown table. ``align``: one character per column, ``l`` or ``r`` (default: first column
    left, the others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_table(groups: Sequence[GroupStats]) -> str:
    """AUBC per eval set and final accuracy (test, mean OOD): %, mean ± std over seeds."""
    ood = groups[0].runs[0].ood_sets if groups else []
    headers = ["strategy", "library", "seeds", "AUBC test", *(f"AUBC {n}" for n in ood)]
    headers += ["AUBC mean OOD", "final test", "final mean OOD"]
    rows = []
    for g in groups:
        row = [g.strategy, g.library, str(len(g.runs)), mean_std(g.values("aubc", "test"))]
        row += [mean_std(g.values("aubc", n)) for n in ood]
        row += [mean_std(g.values("aubc", MEAN_OOD)), mean_std(g.values("final", "test"))]
        row += [mean_std(g.values("final", MEAN_OOD))]
        rows.append(row)
    return markdown_table(headers, rows, "ll" + "r" * (len(headers) - 2))


def per_round_table(groups: Sequence[GroupStats]) -> str:
    """Accuracy per round, ``test / mean OOD`` in %, mean over seeds; one column per label count."""
    if not groups:
        return ""
    n_labeled = groups[0].runs[0].n_labeled
    headers = ["strategy", "library", *(str(int(n)) for n in n_labeled)]
    rows = []
    for g in groups:
        test = g.mean_curve("test") * 100
        has_ood = MEAN_OOD in g.runs[0].curves
        ood = g.mean_curve(MEAN_OOD) * 100 if has_ood else np.full_like(test, np.nan)
        rows.append([g.strategy, g.library, *(f"{t:.1f} / {o:.1f}" for t, o in zip(test, ood, strict=True))])
    return markdown_table(headers, rows, "ll" + "r" * len(n_labeled))


def timing_table(groups: Sequence[GroupStats]) -> str:
    """Wall seconds per phase (summed over the rounds, mean over seeds) and our wall time over the peer's
    for the same strategy and dataset, per phase and in total; last, the same total ratio in CPU time (a
    check against load from outside the benchmark, which stretches wall time but not CPU time)."""
    ours = {(g.dataset, g.strategy): g for g in groups if g.library == OURS}
    columns = (*PHASES, "total")
    headers = ["strategy", "library", *(f"{p} s" for p in columns)]
    headers += [*(f"ours/peer {p}" for p in columns), "ours/peer total CPU"]
    rows = []
    for g in groups:
        cells = [fmt_seconds(g.mean_seconds(p)) for p in columns]
        mine = ours.get((g.dataset, g.strategy))
        if g.library == OURS or mine is None:
            ratios = ["–"] * (len(columns) + 1)
        else:
            ratios = [fmt_ratio(time_ratio(mine.mean_seconds(p), g.mean_seconds(p))) for p in columns]
            ratios.append(
                fmt_ratio(time_ratio(mine.mean_seconds("total", "cpu"), g.mean_seconds("total", "cpu")))
            )
        rows.append([g.strategy, g.library, *cells, *ratios])
    return markdown_table(headers, rows, "ll" + "r" * (len(headers) - 2))


def phase_costs_table(micro: Mapping[str, Any]) -> str:
    """The phase costs on identical work (``run.phase_costs``): median and minimum seconds per method over
    its repetitions, and its median over the median of forgetting's first method of the same phase."""
    rows = []
    base: dict[str, float] = {}
    for row in micro["rows"]:
        seconds = np.asarray(row["seconds"], dtype=np.float64)
        median = float(np.median(seconds))
        base.setdefault(row["phase"], median)
        ref = base[row["phase"]]
        ratio = fmt_ratio(median / ref if ref > 0 else math.nan)
        cells = [row["phase"], row["library"], f"`{row['method']}`", str(seconds.size)]
        rows.append([*cells, f"{median:.2f}", f"{seconds.min():.2f}", ratio])
    headers = ["phase", "library", "call", "repeats", "median s", "min s", "vs forgetting"]
    return markdown_table(headers, rows, "lll" + "r" * 4)


def results_markdown(
    runs: Iterable[Mapping[str, Any]],
    protocol: Protocol,
    *,
    meta: Mapping[str, str],
    eval_sets: Mapping[str, Sequence[str]],
    micro: Mapping[str, Any] | None = None,
    notes: str = "",
) -> str:
    """The whole ``RESULTS.md``: fairness rules, protocol, versions, then three tables per dataset.

    Args:
        runs: stored runs (any order).
        protocol: the protocol they ran.
        meta: label -> value lines for the versions and machine section (library versions, CPU count...).
        eval_sets: dataset -> its OOD sets, for the setup section.
        micro: the phase costs on identical work (``run.phase_costs``), if measured: a table after the
            datasets'.
        notes: Markdown appended at the end (observations).
    """
    groups = aggregate(runs)
    by_dataset: dict[str, list[GroupStats]] = {d: [] for d in eval_sets}  # the plan's order
    for g in groups:
        by_dataset.setdefault(g.dataset, []).append(g)
    p = protocol
    opts = ", ".join(f"{k}={v}" for k, v in p.model_options.items())
    out = [
        "# forgetting vs baal vs scikit-activeml",
        "",
        "Generated by `make bench-peers` (`benchmarks/peers/run.py`); do not edit by hand, rerun instead.",
        "",
        "## Fairness rules",
        "",
        FAIRNESS_RULES,
        "## Setup",
        "",
        f"- Active learning: {p.initial_size} initial labels, {p.rounds} queries of {p.query_size} "
        f"(budget {p.budget}); {p.rounds + 1} models per run, each trained from scratch.",
        f"- Model: `small-cnn` ({opts}); Adam lr {p.lr:g}, batch {p.batch_size}, {p.epochs} epochs per "
        "round.",
        f"- BALD: {p.mc_samples} MC-dropout passes (baal and ours); baal with "
        f"`replicate_in_memory={p.baal_replicate_in_memory}`. Inference batch {p.infer_batch} for every "
        "library.",
        f"- Pool: a seeded subset of at most {p.train_limit} training images; test set: at most "
        f"{p.test_limit} images; each OOD set: at most {p.ood_limit} images.",
    ]
    for d, sets in eval_sets.items():
        out.append(f"- `{d}` OOD sets: {', '.join(f'`{s}`' for s in sets) or 'none'}.")
    out += ["", "## Versions and machine", ""]
    out += [f"- {k}: {v}" for k, v in meta.items()]
    out += [""]
    for d, gs in by_dataset.items():
        if not gs:
            continue
        seeds = sorted({s for g in gs for s in g.seeds})
        out += [
            f"## {d}",
            "",
            f"Seeds: {', '.join(map(str, seeds))}."
            + (
                " One seed only (to fit the time): differences between libraries are anecdotal."
                if len(seeds) == 1
                else ""
            ),
            "",
            "### Accuracy (%, mean ± std over seeds)",
            "",
            "AUBC: normalised area under the accuracy-vs-labels curve over the whole budget. Mean OOD: the "
            "mean over the OOD sets, per round.",
            "",
            accuracy_table(gs),
            "",
            "### Accuracy per round (test / mean OOD, %, mean over seeds), by number of labels",
            "",
            per_round_table(gs),
            "",
            "### Wall time per phase (seconds per run: summed over the rounds, mean over seeds)",
            "",
            "`ours/peer`: forgetting's time over the peer's for the same strategy; below 1× we are faster.",
            "",
            timing_table(gs),
            "",
        ]
    if micro:
        out += [
            "## Phase costs on identical work",
            "",
            f"The same calls on the same work, repeated and interleaved, so that the load of a shared "
            f"machine averages out (`{micro['dataset']}`, {micro['labels']} seeded labels, the other "
            f"{micro['pool']} images scored, inference batch {micro['batch']}, one thread). `train`: round "
            f"0's model fitted on the {micro['labels']} labels. `score`: one deterministic pass over the "
            f"pool. `MC`: K = {micro['mc_samples']} MC-dropout passes over the pool with the same trained "
            "model. `vs forgetting`: the median over forgetting's (first row of the phase).",
            "",
            phase_costs_table(micro),
            "",
        ]
        if micro.get("agreement"):
            agree = ", ".join(f"{k} {v * 100:.0f} %" for k, v in micro["agreement"].items())
            out += [
                "**Same model, same picks.** With that trained model, the share of the peer's query that "
                f"ours picks too (entropy and margin: baal; core-set: scikit-activeml): {agree}.",
                "",
            ]
    if notes:
        out += [notes.rstrip(), ""]
    return "\n".join(out)
