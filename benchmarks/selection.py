"""Time and peak memory of every active-learning strategy's selection at growing pool sizes.

Each (strategy, pool size) case runs in its own subprocess, so its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own: the table reports the peak of the whole process
and the part added by the selection on top of its synthetic inputs. Inputs have the real shapes: C=10 classes,
D=512 embedding dimensions, K=20 MC-dropout passes, a labeled set of L=1000 for coreset, coarse integer
switch counts (0..14, heavy ties as in real tracking; ``--count-values V`` draws them from 0..V-1 instead,
to show how ``sampled-switch``, whose cost grows with the number of distinct counts, scales). At 1M the
embedding dimension is lowered to D=64 so that a case stays within a few GB and a few minutes on 2 cores;
the table says so. Times exclude building the inputs and one warm-up call (imports, e.g. scikit-learn for
gauss, ~1.5 s once per process).

The scaling exponent is the least-squares slope of log(time) against log(N) over the sizes that share the
same input shapes.

    python benchmarks/selection.py                 # 10k, 100k, 1M; n=1000 (n=100 for batchbald)
    python benchmarks/selection.py --quick         # 10k and 100k, n=200 (batchbald n=20)
    python benchmarks/selection.py --sizes 10000,50000 --strategies gauss,badge
    python benchmarks/selection.py --sizes 1000000 --strategies sampled-switch,switch --count-values 1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from forgetting.strategies import StrategyInputs, get_strategy, list_strategies

N_CLASSES = 10
N_PASSES = 20
DIM = 512
DIM_LARGE = 64  # embedding dimension at pool sizes >= LARGE
LARGE = 1_000_000
N_LABELED = 1000
GEN_CHUNK = 65_536
COUNT_VALUES = 15  # switch counts 0..14


@dataclass
class CaseResult:
    strategy: str
    n_pool: int
    n_query: int
    shapes: str
    seconds: float
    input_mb: float
    peak_mb: float
    extra_mb: float
    note: str = ""


def _rss_mb() -> float:
    # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _dim_for(n_pool: int) -> int:
    return DIM_LARGE if n_pool >= LARGE else DIM


def _softmax_rows(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Random softmax rows of ``shape`` (last dim = classes), filled in chunks: the peak is the output."""
    out = torch.empty(shape)
    flat = out.view(-1, shape[-1])
    for start in range(0, flat.shape[0], GEN_CHUNK):
        rows = min(GEN_CHUNK, flat.shape[0] - start)
        flat[start : start + rows] = torch.softmax(
            2.0 * torch.randn(rows, shape[-1], generator=generator), dim=1
        )
    return out


def make_inputs(
    strategy_requires: frozenset, n_pool: int, seed: int = 0, count_values: int = COUNT_VALUES
) -> StrategyInputs:
    """Synthetic inputs of the declared kinds only, with the benchmark's shapes."""
    g = torch.Generator().manual_seed(seed)
    names = {str(r) for r in strategy_requires}
    inputs = StrategyInputs(n_pool=n_pool)
    if "probs" in names:
        inputs.probs_N_C = _softmax_rows((n_pool, N_CLASSES), g)
    if "mc_probs" in names:
        inputs.mc_probs_K_N_C = _softmax_rows((N_PASSES, n_pool, N_CLASSES), g)
    if "embeddings" in names:
        dim = _dim_for(n_pool)
        inputs.embeddings_N_D = torch.randn(n_pool, dim, generator=g)
        inputs.labeled_embeddings_L_D = torch.randn(N_LABELED, dim, generator=g)
    if "dynamics" in names:
        dtype = torch.int16 if count_values <= 2**15 else torch.int32
        inputs.switches_N = torch.randint(0, count_values, (n_pool,), generator=g, dtype=dtype)
    if "pool_labels" in names:
        inputs.pool_labels_N = torch.randint(0, N_CLASSES, (n_pool,), generator=g)
        inputs.forgetting_N = torch.randint(0, 8, (n_pool,), generator=g, dtype=torch.int16)
        inputs.never_learned_N = torch.rand(n_pool, generator=g) < 0.05
    return inputs


def _shapes(names: set[str], n_pool: int, count_values: int = COUNT_VALUES) -> str:
    parts = []
    if "mc_probs" in names:
        parts.append(f"K={N_PASSES}")
    if "probs" in names or "mc_probs" in names:
        parts.append(f"C={N_CLASSES}")
    if "embeddings" in names:
        parts.append(f"D={_dim_for(n_pool)} L={N_LABELED}")
    if "dynamics" in names or "pool_labels" in names:
        parts.append("counts" if count_values == COUNT_VALUES else f"counts 0..{count_values - 1}")
    return " ".join(parts) or "-"


def run_case(name: str, n_pool: int, n_query: int, count_values: int = COUNT_VALUES) -> CaseResult:
    """One measurement, in this process (called in a fresh subprocess by :func:`main`)."""
    strategy = get_strategy(name)
    warm = make_inputs(strategy.requires, 200, seed=1, count_values=count_values)
    strategy.select(warm, min(n_query, 10), seed=0)  # imports and lazy initialisation
    inputs = make_inputs(strategy.requires, n_pool, count_values=count_values)
    before = _rss_mb()
    start = time.perf_counter()
    selection = strategy.select(inputs, n_query, seed=0)
    seconds = time.perf_counter() - start
    peak = _rss_mb()
    assert selection.indices.shape == (n_query,) and len(np.unique(selection.indices)) == n_query
    input_mb = sum(
        t.element_size() * t.nelement() / 2**20 for t in vars(inputs).values() if isinstance(t, torch.Tensor)
    )
    names = {str(r) for r in strategy.requires}
    note = f"D lowered to {DIM_LARGE} at N>={LARGE:,}" if "embeddings" in names and n_pool >= LARGE else ""
    return CaseResult(
        strategy=name,
        n_pool=n_pool,
        n_query=n_query,
        shapes=_shapes(names, n_pool, count_values),
        seconds=seconds,
        input_mb=input_mb,
        peak_mb=peak,
        extra_mb=max(0.0, peak - before),
        note=note,
    )


def _slope(points: list[tuple[int, float]]) -> float:
    if len(points) < 2:
        return math.nan
    x = np.log([p[0] for p in points])
    y = np.log([max(p[1], 1e-6) for p in points])
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated pool sizes")
    parser.add_argument("--strategies", default=",".join(list_strategies()), help="comma-separated names")
    parser.add_argument("--n", type=int, default=1000, help="query size (default 1000)")
    parser.add_argument("--n-batchbald", type=int, default=100, help="query size for batchbald (default 100)")
    parser.add_argument("--quick", action="store_true", help="sizes 10k and 100k, n=200, batchbald n=20")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case before giving up")
    parser.add_argument(
        "--count-values", type=int, default=COUNT_VALUES, help="switch counts drawn from 0..V-1 (default 15)"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: "name:n_pool:n_query:count_values"
    args = parser.parse_args(argv)

    if args.case:
        name, n_pool, n_query, values = args.case.split(":")
        print(json.dumps(asdict(run_case(name, int(n_pool), int(n_query), int(values)))))
        return 0

    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    n_default, n_bb = (200, 20) if args.quick else (args.n, args.n_batchbald)
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    print(
        f"selection benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, sizes {sizes}"
    )
    results: list[CaseResult] = []
    failures: list[str] = []
    for name in names:
        for n_pool in sizes:
            n_query = min(n_bb if name == "batchbald" else n_default, n_pool)
            cmd = [sys.executable, __file__, "--case", f"{name}:{n_pool}:{n_query}:{args.count_values}"]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
            except subprocess.TimeoutExpired:
                failures.append(f"{name} N={n_pool}: over {args.timeout:.0f} s")
                print(f"  {name:16s} N={n_pool:>9,d}  TIMEOUT", flush=True)
                continue
            if proc.returncode != 0:
                failures.append(f"{name} N={n_pool}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
                print(f"  {name:16s} N={n_pool:>9,d}  FAILED", flush=True)
                continue
            res = CaseResult(**json.loads(proc.stdout.strip().splitlines()[-1]))
            results.append(res)
            print(
                f"  {name:16s} N={n_pool:>9,d}  {res.seconds:8.3f} s  peak {res.peak_mb:7.0f} MB", flush=True
            )

    header = (
        f"{'strategy':16s} {'N':>9s} {'n':>5s} {'shapes':22s} {'time s':>9s} {'inputs MB':>10s} "
        f"{'peak MB':>8s} {'extra MB':>9s}  note"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        print(
            f"{r.strategy:16s} {r.n_pool:>9,d} {r.n_query:>5d} {r.shapes:22s} {r.seconds:>9.3f} "
            f"{r.input_mb:>10.1f} {r.peak_mb:>8.0f} {r.extra_mb:>9.0f}  {r.note}"
        )
    print("\nscaling exponent (slope of log time vs log N, over sizes with identical shapes and n):")
    for name in names:
        rows = [r for r in results if r.strategy == name]
        if not rows:
            continue
        groups: dict[tuple[str, int], list[tuple[int, float]]] = {}
        for r in rows:
            groups.setdefault((r.shapes, r.n_query), []).append((r.n_pool, r.seconds))
        shape, pts = max(groups.items(), key=lambda kv: len(kv[1]))
        sizes_text = ", ".join(f"{p[0]:,}" for p in pts)
        print(f"  {name:16s} {_slope(pts):6.2f}   (N = {sizes_text}; {shape[0]}, n={shape[1]})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([asdict(r) for r in results], fh, indent=1)
    if failures:
        print("\nfailed cases:\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
