"""Wall time of one tiny grid under each backend: local, process (2 jobs) and ray.

For a grid this small the compute is about a second; what the times show is each backend's fixed cost.

The grid is ``examples/tiny.toml`` with the CLI test's second eval set: mnist-5k, small CNN of width 4, 150
pool / 60 eval samples, 2 queries of 5 (3 trained models), strategies random and gauss, seeds 0 and 1: 4
experiments, 12 rounds. Each backend runs it into a fresh directory; every run is checked to produce the same
queries as the local one.

- ``local (cold)``: one experiment after the other in this process (torch uses every core), the first run
  in the process, so it pays for loading the data, lazy imports (scipy, scikit-learn) and torch's warm-up;
- ``local (warm)``: the same again in the same process: the experiments' own compute;
- ``process``: a pool of 2 spawned processes, one torch thread each; every run starts fresh processes, which
  import torch and load the data;
- ``ray (cold)``: the ray backend as ``forgetting run --backend ray`` runs it: it starts a local Ray instance
  (``[ray] local_num_cpus`` = 2, 1 CPU per task), runs the grid and stops Ray;
- ``ray (warm)``: the same grid again on a Ray instance that is already running with warm workers (as on a
  cluster), which shows the per-task cost without Ray's start-up.

Run: ``python benchmarks/backends.py [--cpus 2]``. Timings on a shared machine vary; the ratios are what to
read.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import tomllib
from pathlib import Path

from forgetting.experiments import ResultStore, parse_config, run_experiments
from forgetting.experiments.config import ExperimentConfig, RaySettings

#: The grid: examples/tiny.toml with a second eval set.
TINY_FILE = Path(__file__).resolve().parents[1] / "examples" / "tiny.toml"


def tiny_grid() -> ExperimentConfig:
    """examples/tiny.toml, named for this benchmark, with the CLI test's second eval set."""
    raw = tomllib.loads(TINY_FILE.read_text(encoding="utf-8"))
    raw.update(name="bench-backends", eval_sets=["test", "gaussian_noise-2"])
    return parse_config(raw, source=str(TINY_FILE))


def queries(run_dir: Path) -> dict[str, list[list[int]]]:
    """Per experiment: the queried indices of each round."""
    with ResultStore(run_dir) as store:
        return store.queries()


def timed_run(cfg: ExperimentConfig, out: Path, **kwargs: object) -> float:
    """Seconds of one ``run_experiments`` call; fails if an experiment failed."""
    t0 = time.perf_counter()
    summary = run_experiments(cfg, out, progress=False, fail_fast=True, **kwargs)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    assert summary.ok and summary.rounds_written == 12, summary
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=int, default=2, help="process jobs and Ray CPUs (default 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import ray

    cfg = tiny_grid()
    settings = RaySettings(num_cpus=1, local_num_cpus=args.cpus)
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        times["local (cold)"] = timed_run(cfg, root / "local", backend="local")
        times["local (warm)"] = timed_run(cfg, root / "local-warm", backend="local")
        times[f"process ({args.cpus} jobs)"] = timed_run(
            cfg, root / "process", backend="process", jobs=args.cpus, threads=1
        )
        times["ray (cold)"] = timed_run(cfg, root / "ray-cold", backend="ray", ray_settings=settings)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            timed_run(cfg, root / "ray-warmup", backend="ray", ray_settings=settings)  # start the workers
            times["ray (warm)"] = timed_run(cfg, root / "ray-warm", backend="ray", ray_settings=settings)
        finally:
            ray.shutdown()
        reference = queries(root / "local")
        for name in ("local-warm", "process", "ray-cold", "ray-warm"):
            same = queries(root / name) == reference
            print(f"{name}: same queries as local: {same}")
    print(f"one tiny grid (4 experiments x 3 rounds), {args.cpus} CPUs, wall seconds:")
    print("  ".join(f"{k:>14}" for k in times))
    print("  ".join(f"{v:>14.1f}" for v in times.values()))


if __name__ == "__main__":
    main()
