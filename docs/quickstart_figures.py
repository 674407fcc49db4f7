"""Draw the figures of the getting-started page: the quickstart's report, from a smaller run of it.

Usage: ``python docs/quickstart_figures.py OUT_DIR`` (the docs build runs it; about a minute on 2 cores).

It runs the built-in quickstart config (``forgetting run`` with no config) cut down to three strategies,
two seeds and three queries, in a temporary directory, writes its report with
:func:`forgetting.write_report`, and copies the report's figures to ``OUT_DIR`` under fixed names:

- ``curves.png``: the learning curves (accuracy against labels, one panel per evaluation set);
- ``switches-gauss.png``: the pool's switch counts at the middle round, with GauSS's mixture;
- ``tables.md``: the tables of ``benchmarks/al_tables.py`` for this run (final accuracy, AUBC, per-round
  gains), which the page shows next to the figures.
"""

from __future__ import annotations

import sys
import tempfile
import tomllib
from importlib import resources
from pathlib import Path
from shutil import copyfile

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["random", "margin", "gauss"]


def small_quickstart() -> dict:
    """The quickstart config as a mapping, cut to a size that runs in about a minute."""
    text = resources.files("forgetting.experiments").joinpath("quickstart.toml").read_text(encoding="utf-8")
    config = tomllib.loads(text)
    config.update(name="quickstart-small", seeds=[0, 1], strategy=STRATEGIES, jobs=1)
    config["eval_sets"] = ["test", "digits", "gaussian_noise-3"]
    config["al"].update(rounds=3, pool_subsample=300)
    config["train"].update(max_epochs=25)
    config["data"].update(eval_limit=300)
    return config


def main(out_dir: Path) -> None:
    from forgetting import write_report
    from forgetting.experiments import parse_config, run_experiments

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from al_tables import tables

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quickstart-small-") as tmp:
        run_dir = Path(tmp) / "run"
        summary = run_experiments(parse_config(small_quickstart()), run_dir, backend="local", progress=False)
        if summary.failed:
            raise SystemExit(f"{summary.failed} experiments failed")
        report = write_report(run_dir).parent
        (curves,) = report.glob("curves-*.png")
        copyfile(curves, out_dir / "curves.png")
        (switches,) = report.glob("switches-*gauss*.png")
        copyfile(switches, out_dir / "switches-gauss.png")
        (out_dir / "tables.md").write_text(tables(run_dir), encoding="utf-8")
        print(
            f"{len(summary.finished)} experiments, {summary.rounds_written} rounds in {summary.seconds:.0f} s"
        )
    print(f"wrote {sorted(p.name for p in out_dir.iterdir())}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python docs/quickstart_figures.py OUT_DIR")
    main(Path(sys.argv[1]))
