"""Finding flipped labels with training dynamics vs cleanlab, and Toneva's pruning experiment (issue 21).

**Label errors.** Data: ``mnist-5k`` (its seeded 4,000-image training split) and a seeded, stratified
10,000-image subset of the Fashion-MNIST training set (the Debian package ``dataset-fashion-mnist``).
Noise: 10 % and 20 % of the labels flipped, ``uniform`` (to a random other class) or
``class-conditional`` (every class to one fixed other class, a seeded derangement); seeds 0, 1, 2 (the
split, the noise, the model's initialisation and the batch order all follow the seed). For each of the
24 cells the same model (``small-cnn``, width 4, embedding 32, dropout 0.25; Adam, lr 3e-3, batch 64, a
fixed 8 epochs, CPU, one thread; sized to fit a shared 2-core machine) is trained once on the noisy
labels with a presentation-time :class:`forgetting.profile.DynamicsAccumulator`, which gives four scores
at no extra cost:

* ``forgetting``: the forgetting count (never-learned samples above every count, as Toneva et al.);
* ``aum``: minus the area under the margin (Pleiss et al.);
* ``confidence``: minus the cartography confidence (mean gold-label probability; Swayamdipta et al.);
* ``final loss``: the cross entropy at the last presentation;

and cleanlab's ``find_label_issues`` runs on out-of-fold probabilities: 3 stratified folds, each model the
same network and training on the other two folds (cleanlab's recommended input; 3 rather than its default
5 folds to fit this 2-core machine). cleanlab's ranking score is its label-quality score
(``get_label_quality_scores``, self-confidence, the order ``find_label_issues`` ranks by); its flags are the
``find_label_issues`` mask (confident learning, ``prune_by_noise_rate``). Metrics against the true flip
mask: precision at k (k = the number of flipped labels; ties broken uniformly at random, in expectation,
which matters for the integer forgetting counts) and AUROC (ties count one half), plus the precision and
recall of cleanlab's flags. ``--flags`` also fits our AUM threshold (two threshold-sample runs per cell,
:func:`forgetting.profile.flag_mislabeled`) and reports the precision and recall of its flags.

**Pruning.** ``mnist-5k``, clean labels, seeds 0, 1, 2: profile once, then remove 10 / 20 / 30 % of the
training set, either the least forgettable first (Toneva et al.: unforgettable samples, ties at random)
or at random, retrain the same network from the same initialisation, and measure test accuracy (1,000
test images).

Output: per-cell JSON lines in ``benchmarks/results/label_errors/`` (a rerun skips finished cells: the
benchmark is resumable) and ``benchmarks/LABEL_ERRORS.md`` (the tables, the setup, the versions, the wall
times).

Run: ``make bench-label-errors`` (builds ``.venv-label-errors`` with the project and the pinned cleanlab
from ``benchmarks/requirements-label-errors.txt`` once, then runs ``--run --jobs 2``); ``--quick`` is a
one-minute smoke run into ``benchmarks/results/label_errors/quick/``. Without ``--run`` or ``--quick``
this prints its help and exits (``make bench`` runs every benchmark that way). cleanlab is imported only
by the cells that need it, so ``--part pruning`` runs in the project's own environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
RESULTS_DIR = ROOT / "results" / "label_errors"
REPORT = ROOT / "LABEL_ERRORS.md"

METHODS = ("forgetting", "aum", "confidence", "final loss", "cleanlab")
DATASETS = ("mnist-5k", "fashion-10k")
KINDS = ("uniform", "class-conditional")
RATES = (0.1, 0.2)
SEEDS = (0, 1, 2)
PRUNE_FRACTIONS = (0.1, 0.2, 0.3)


@dataclass(frozen=True)
class Setup:
    """Everything a cell depends on (hashed into the results file name)."""

    width: int = 4
    embed_dim: int = 32
    dropout: float = 0.25
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    folds: int = 3
    fashion_size: int = 10_000
    train_limit: int | None = None  # --quick: fewer training images

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


QUICK = Setup(epochs=2, folds=2, fashion_size=1_000, train_limit=600)


# ---------------------------------------------------------------------------------------------- metrics


def precision_at_k(score_N: np.ndarray, positive_N: np.ndarray, k: int) -> float:
    """Expected precision of the top ``k`` by ``score_N`` with ties broken uniformly at random."""
    if k <= 0:
        return float("nan")
    order = np.sort(score_N)[::-1]
    cut = order[k - 1]
    above = score_N > cut
    tied = score_N == cut
    n_above = int(above.sum())
    pos_above = int((above & positive_N).sum())
    pos_tied = int((tied & positive_N).sum())
    return (pos_above + (k - n_above) * pos_tied / int(tied.sum())) / k


def auroc(score_N: np.ndarray, positive_N: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive_N.astype(int), score_N))


def flag_quality(flags_N: np.ndarray, positive_N: np.ndarray) -> dict[str, float]:
    hits = int((flags_N & positive_N).sum())
    return {
        "flagged": int(flags_N.sum()),
        "precision": hits / max(int(flags_N.sum()), 1),
        "recall": hits / max(int(positive_N.sum()), 1),
    }


# ---------------------------------------------------------------------------------------------- cells


def _data(dataset: str, seed: int, setup: Setup) -> tuple[torch.Tensor, torch.Tensor, Any, int]:
    """``(train images uint8 [N,1,28,28], clean labels int64 [N], test split, K)``."""
    from forgetting import load_dataset
    from forgetting.data import stratified_subset

    if dataset == "mnist-5k":
        data = load_dataset("mnist-5k", seed=seed)
        images, labels = data.train.images, data.train.labels
    else:
        data = load_dataset("fashion-mnist")
        rows = stratified_subset(data.train.labels, setup.fashion_size, seed=seed)
        images, labels = data.train.images[rows], data.train.labels[rows]
    if setup.train_limit is not None:
        rows = stratified_subset(labels, min(setup.train_limit, len(labels)), seed=seed)
        images, labels = images[rows], labels[rows]
    return images, labels, data.test, data.num_classes


def _train_kwargs(setup: Setup) -> dict[str, Any]:
    from forgetting import TrainConfig

    return {
        "model": "small-cnn",
        "model_options": {"width": setup.width, "embed_dim": setup.embed_dim, "dropout": setup.dropout},
        "train": TrainConfig(epochs=setup.epochs, batch_size=setup.batch_size, lr=setup.lr),
        "device": "cpu",
    }


def out_of_fold_probs(images: torch.Tensor, noisy: np.ndarray, k: int, seed: int, setup: Setup) -> np.ndarray:
    """float32 ``[N, K]`` softmax of each sample from the fold model that did not train on it."""
    from sklearn.model_selection import StratifiedKFold

    from forgetting import TensorSource, build_model, fit
    from forgetting.inference import predict
    from forgetting.profile import derived_seed

    kw = _train_kwargs(setup)
    probs = np.zeros((len(noisy), k), dtype=np.float32)
    folds = StratifiedKFold(setup.folds, shuffle=True, random_state=seed)
    labels_t = torch.from_numpy(noisy)
    for f, (fit_rows, held_rows) in enumerate(folds.split(np.zeros(len(noisy)), noisy)):
        fold_seed = derived_seed(seed, 6, f)
        net = build_model("small-cnn", 1, k, seed=fold_seed, **kw["model_options"])
        fit_idx = torch.from_numpy(fit_rows)
        fit(net, TensorSource(images[fit_idx], labels_t[fit_idx]), kw["train"], seed=fold_seed)
        out = predict(net, images[torch.from_numpy(held_rows)], probs=True)
        assert out.probs_N_C is not None
        probs[held_rows] = out.probs_N_C.cpu().numpy()
    return probs


def label_error_cell(
    dataset: str, kind: str, rate: float, seed: int, setup: Setup, with_flags: bool
) -> dict[str, Any]:
    """One cell of the label-error grid: every method's P@k and AUROC (and flag quality)."""
    torch.set_num_threads(1)
    from forgetting import TensorSource
    from forgetting.profile import MislabelSettings, flag_mislabeled, flip_labels, train_profiled

    images, clean, _, k = _data(dataset, seed, setup)
    noisy, flipped = flip_labels(clean.numpy(), rate, kind, k, seed=seed)  # type: ignore[arg-type]
    source = TensorSource(images, torch.from_numpy(noisy))
    kw = _train_kwargs(setup)
    cell: dict[str, Any] = {
        "part": "label-errors",
        "dataset": dataset,
        "kind": kind,
        "rate": rate,
        "seed": seed,
        "n": len(noisy),
        "k": int(flipped.sum()),
        "seconds": {},
    }
    t = time.perf_counter()
    trained = train_profiled(source, k, seed=seed, **kw)
    cell["seconds"]["profile"] = time.perf_counter() - t
    d = trained.dynamics
    cell["train_accuracy_noisy"] = float(trained.train.train_accuracy)
    scores = {
        "forgetting": d.forgetting_score(),
        "aum": -d.aum.astype(np.float64),
        "confidence": -d.confidence.astype(np.float64),
        "final loss": d.final_loss.astype(np.float64),
    }
    import cleanlab
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    t = time.perf_counter()
    probs = out_of_fold_probs(images, noisy, k, seed, setup)
    cell["seconds"]["cleanlab folds"] = time.perf_counter() - t
    t = time.perf_counter()
    issues = find_label_issues(noisy, probs, n_jobs=1)  # one thread per cell, like the training
    scores["cleanlab"] = -get_label_quality_scores(noisy, probs).astype(np.float64)
    cell["seconds"]["cleanlab"] = time.perf_counter() - t
    cell["cleanlab_version"] = cleanlab.__version__
    cell["flags"] = {"cleanlab": flag_quality(np.asarray(issues, dtype=bool), flipped)}
    if with_flags:
        t = time.perf_counter()
        flags = flag_mislabeled(source, noisy, k, MislabelSettings(runs=2), seed=seed, **kw)
        assert flags is not None
        cell["seconds"]["aum threshold"] = time.perf_counter() - t
        cell["flags"]["aum threshold"] = flag_quality(flags.flagged, flipped)
    cell["precision_at_k"] = {m: precision_at_k(s, flipped, cell["k"]) for m, s in scores.items()}
    cell["auroc"] = {m: auroc(s, flipped) for m, s in scores.items()}
    return cell


def pruning_cell(seed: int, setup: Setup) -> dict[str, Any]:
    """Profile mnist-5k (clean labels) once, then remove 10/20/30 % by forgetting and at random."""
    torch.set_num_threads(1)
    from forgetting import TensorSource
    from forgetting.profile import prune, train_profiled
    from forgetting.training import evaluate_accuracy

    images, labels, test, k = _data("mnist-5k", seed, setup)
    source = TensorSource(images, labels)
    kw = _train_kwargs(setup)
    t = time.perf_counter()
    trained = train_profiled(source, k, seed=seed, **kw)
    full = evaluate_accuracy(trained.model, test)
    cell: dict[str, Any] = {
        "part": "pruning",
        "dataset": "mnist-5k",
        "seed": seed,
        "n": len(labels),
        "full_accuracy": full,
        "unforgettable": int(trained.dynamics.unforgettable.sum()),
        "never_learned": int(trained.dynamics.never_learned.sum()),
        "fractions": {},
    }
    for f in PRUNE_FRACTIONS:
        r = prune(trained.dynamics, source, test, k, f, seed=seed, full_accuracy=full, **kw)
        cell["fractions"][str(f)] = {
            "removed": r.removed,
            "forgetting": r.forgetting_accuracy,
            "random": r.random_accuracy,
        }
    cell["seconds"] = {"total": time.perf_counter() - t}
    return cell


# ---------------------------------------------------------------------------------------------- driver


def _key(cell: dict[str, Any]) -> str:
    if cell["part"] == "pruning":
        return f"pruning/{cell['seed']}"
    return f"label-errors/{cell['dataset']}/{cell['kind']}/{cell['rate']}/{cell['seed']}"


def _run_one(job: tuple[str, tuple[Any, ...]]) -> dict[str, Any]:
    name, args = job
    t = time.perf_counter()
    cell = label_error_cell(*args) if name == "label-errors" else pruning_cell(*args)
    cell["wall_seconds"] = time.perf_counter() - t
    return cell


def run(
    parts: list[str], setup: Setup, out: Path, jobs: int, with_flags: bool
) -> tuple[list[dict[str, Any]], int]:
    """Run the missing cells; returns every cell (finished before or now) and how many ran now."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"runs-{setup.digest()}{'-flags' if with_flags else ''}.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                cell = json.loads(line)
                done[_key(cell)] = cell
    todo: list[tuple[str, tuple[Any, ...]]] = []
    if "pruning" in parts:
        for seed in SEEDS:
            if f"pruning/{seed}" not in done:
                todo.append(("pruning", (seed, setup)))
    if "label-errors" in parts:
        for dataset in DATASETS:
            for kind in KINDS:
                for rate in RATES:
                    for seed in SEEDS:
                        if f"label-errors/{dataset}/{kind}/{rate}/{seed}" not in done:
                            todo.append(("label-errors", (dataset, kind, rate, seed, setup, with_flags)))
    print(f"{len(done)} cells done, {len(todo)} to run -> {path}", flush=True)
    start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_run_one, job): job for job in todo}
        for fut in as_completed(futures):
            cell = fut.result()
            done[_key(cell)] = cell
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(cell) + "\n")
            print(
                f"{_key(cell)}: {cell['wall_seconds']:.0f} s ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return list(done.values()), len(todo)


def _ms(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.3f} ± {a.std(ddof=1):.3f}" if a.size > 1 else f"{a.mean():.3f}"


def tables(cells: list[dict[str, Any]]) -> str:
    """The markdown tables: P@k and AUROC per method, the flag quality, the pruning table."""
    lines: list[str] = []
    errors = [c for c in cells if c["part"] == "label-errors"]
    if errors:
        groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
        for c in errors:
            groups[(c["dataset"], c["kind"], c["rate"])].append(c)
        keys = sorted(groups, key=lambda g: (DATASETS.index(g[0]), KINDS.index(g[1]), g[2]))
        titles = (
            ("precision_at_k", "Precision at k (k = the number of flipped labels; mean ± std over seeds)"),
            ("auroc", "AUROC of finding the flipped labels (mean ± std over seeds)"),
        )
        for metric, title in titles:
            lines += [f"**{title}**", ""]
            lines.append("| data | noise | rate | seeds | " + " | ".join(METHODS) + " |")
            lines.append("|---|---|---|---|" + "---|" * len(METHODS))
            for g in keys:
                cs = groups[g]
                means = {m: np.mean([c[metric][m] for c in cs]) for m in METHODS}
                best = max(means.values())
                cells_txt = []
                for m in METHODS:
                    txt = _ms([c[metric][m] for c in cs])
                    cells_txt.append(f"**{txt}**" if means[m] == best else txt)
                lines.append(f"| {g[0]} | {g[1]} | {g[2]:.0%} | {len(cs)} | " + " | ".join(cells_txt) + " |")
            lines.append("")
        flag_methods = sorted({m for c in errors for m in c.get("flags", {})})
        lines += ["**Flags** (precision / recall of the samples each rule flags; mean over seeds)", ""]
        lines.append(
            "| data | noise | rate | "
            + " | ".join(f"{m}: flagged, precision, recall" for m in flag_methods)
            + " |"
        )
        lines.append("|---|---|---|" + "---|" * len(flag_methods))
        for g in keys:
            cs = groups[g]
            row = []
            for m in flag_methods:
                fs = [c["flags"][m] for c in cs if m in c.get("flags", {})]
                if not fs:
                    row.append("")
                    continue
                flagged = np.mean([f["flagged"] for f in fs])
                precision = np.mean([f["precision"] for f in fs])
                recall = np.mean([f["recall"] for f in fs])
                row.append(f"{flagged:.0f}, {precision:.3f}, {recall:.3f}")
            lines.append(f"| {g[0]} | {g[1]} | {g[2]:.0%} | " + " | ".join(row) + " |")
        lines.append("")
        per_cell = defaultdict(list)
        for c in errors:
            for phase, s in c["seconds"].items():
                per_cell[(c["dataset"], phase)].append(s)
        lines += ["**Wall time per cell** (mean seconds, one CPU thread per cell)", ""]
        lines += ["| data | phase | seconds |", "|---|---|---|"]
        for (ds, phase), ss in sorted(per_cell.items()):
            lines.append(f"| {ds} | {phase} | {np.mean(ss):.1f} |")
        lines.append("")
    prunes = sorted((c for c in cells if c["part"] == "pruning"), key=lambda c: c["seed"])
    if prunes:
        lines += [
            "**Pruning** (mnist-5k, test accuracy after removing a fraction of the 4,000 training images; "
            f"mean ± std over {len(prunes)} seeds; full data: {_ms([c['full_accuracy'] for c in prunes])}, "
            f"unforgettable samples: {np.mean([c['unforgettable'] for c in prunes]):.0f} on average)",
            "",
            "| removed | by forgetting (least forgettable first) | at random | difference |",
            "|---|---|---|---|",
        ]
        for f in PRUNE_FRACTIONS:
            fg = [c["fractions"][str(f)]["forgetting"] for c in prunes]
            rd = [c["fractions"][str(f)]["random"] for c in prunes]
            diff = [a - b for a, b in zip(fg, rd, strict=True)]
            lines.append(f"| {f:.0%} | {_ms(fg)} | {_ms(rd)} | {_ms(diff)} |")
        lines.append("")
    return "\n".join(lines)


def _versions() -> str:
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    for pkg in ("forgetting", "cleanlab", "numpy", "scikit-learn"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg} (not installed)")
    return ", ".join(parts)


def write_report(
    cells: list[dict[str, Any]], setup: Setup, path: Path, wall: float, command: str, ran: int
) -> Path:
    reused = len(cells) - ran
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = "\n".join(
        [
            "# Label errors and pruning (benchmarks/label_errors.py)",
            "",
            f"Command: `{command}`; this invocation ran {ran} cells in {wall / 60:.1f} min"
            f"{f' and reused {reused} finished ones' if reused else ''} (load average at the end: {load}); "
            f"the cells took {sum(c.get('wall_seconds', 0.0) for c in cells) / 60:.1f} min in all, "
            "each on one CPU thread.",
            f"Setup: `{json.dumps(asdict(setup))}`; {_versions()}; {os.cpu_count()} CPU cores.",
            "",
            tables(cells),
        ]
    )
    path.write_text(text + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring.")
    parser.add_argument("--run", action="store_true", help="run the benchmark (resumable)")
    parser.add_argument("--quick", action="store_true", help="a one-minute smoke run into results/quick/")
    parser.add_argument("--part", choices=("all", "label-errors", "pruning"), default="all")
    parser.add_argument("--jobs", type=int, default=1, help="cells in parallel (one CPU thread each)")
    parser.add_argument("--flags", action="store_true", help="also fit the AUM threshold (2 more runs/cell)")
    args = parser.parse_args(argv)
    if not (args.run or args.quick):
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING)
    setup = QUICK if args.quick else Setup()
    parts = ["label-errors", "pruning"] if args.part == "all" else [args.part]
    out = RESULTS_DIR / "quick" if args.quick else RESULTS_DIR
    start = time.perf_counter()
    cells, ran = run(parts, setup, out, args.jobs, args.flags)
    report = out / "LABEL_ERRORS.md" if args.quick else REPORT
    command = "python benchmarks/label_errors.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_report(cells, setup, report, time.perf_counter() - start, command, ran)
    print(tables(cells))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
