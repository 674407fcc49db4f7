"""The ``forgetting`` command: run experiment grids, write reports, list datasets, models and strategies.

The library logs with :mod:`logging`; this module configures logging (rich handler on stderr) and prints
results with rich on stdout.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from forgetting._version import __version__
from forgetting.exceptions import ForgettingError

if TYPE_CHECKING:
    from forgetting.experiments.config import ExperimentConfig

__all__ = ["app", "main"]

app = typer.Typer(
    name="forgetting",
    help="Learning dynamics of deep networks: forgetting maps and dynamics-based active learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
logger = logging.getLogger("forgetting.cli")


class _QuietLoop(logging.Filter):
    """Drops the loop's per-round INFO lines (they would scroll the progress bars away) unless verbose."""

    verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        return (
            self.verbose or record.levelno >= logging.WARNING or not record.name.startswith("forgetting.loop")
        )


_LOG_FILTER = _QuietLoop()
_handler: RichHandler | None = None


def _setup_logging() -> None:
    """Send the library's logs to stderr through rich. Called by :func:`main` only, so that invoking the
    app in-process (tests, notebooks) leaves the caller's logging configuration alone."""
    global _handler
    if _handler is not None:
        return
    _handler = RichHandler(console=err_console, show_path=False, markup=False)
    _handler.setFormatter(logging.Formatter("%(message)s"))
    _handler.addFilter(_LOG_FILTER)
    root = logging.getLogger("forgetting")
    root.addHandler(_handler)
    root.setLevel(logging.INFO)


def _set_verbose(verbose: bool) -> None:
    _LOG_FILTER.verbose = verbose
    if _handler is not None:
        logging.getLogger("forgetting").setLevel(logging.DEBUG if verbose else logging.INFO)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"forgetting {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Learning dynamics of deep networks: forgetting maps and dynamics-based active learning."""


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="A TOML experiment config. Without it: the built-in quickstart (about 10 min on CPU)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/<config name>).")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Experiments run in parallel processes (default: the config's, else 1).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the expanded grid and an estimate of the work; run nothing."),
    ] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="Override the config's device (cpu, cuda, cuda:1, mps).")
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write the HTML report at the end.")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run an experiment grid (resumable: rerun the same command to continue), then write the report."""
    from forgetting.experiments import load_config, quickstart_config, run_experiments, write_report

    _set_verbose(verbose)
    try:
        cfg = quickstart_config() if config is None else load_config(config)
        if device is not None:
            cfg = cfg.model_copy(update={"device": device})
        if dry_run:
            _print_estimate(cfg)
            return
        out_dir = out if out is not None else Path("runs") / cfg.name
        err_console.print(f"running [bold]{cfg.name}[/] into {out_dir}", highlight=False)
        summary = run_experiments(cfg, out_dir, jobs=jobs, progress=True, console=err_console)
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"{len(summary.experiment_ids)} experiments: {len(summary.finished)} finished now, "
        f"{len(summary.skipped)} already done, {len(summary.failed)} failed; "
        f"{summary.rounds_written} rounds written in {summary.seconds:.0f} s",
        highlight=False,
    )
    for exp_id, error in summary.failed.items():
        err_console.print(f"[red]failed[/] {exp_id}: {error}", highlight=False)
    if report:
        try:
            index = write_report(out_dir)
        except ForgettingError as exc:
            raise _fail(str(exc)) from None
        console.print(f"report: {index}", highlight=False)
    if not summary.ok:
        err_console.print("some experiments failed; rerun the same command to retry them", highlight=False)
        raise typer.Exit(1)


def _print_estimate(cfg: ExperimentConfig) -> None:
    from forgetting.experiments import estimate

    est = estimate(cfg)
    with_variant = any(s.variant for s in est.specs)
    same_eval = len({s.eval_sets for s in est.specs}) == 1
    table = Table(title=f"{cfg.name}: {est.experiments} experiments")
    columns = ["id", "dataset", "model", "strategy", "seed"]
    columns += ["variant"] if with_variant else []
    columns += ["rounds", "query"] + ([] if same_eval else ["eval sets"])
    for col in columns:
        table.add_column(col, no_wrap=col in ("id", "dataset", "model", "strategy"))
    for s in est.specs:
        row = [s.id, s.dataset, s.model, s.strategy, str(s.seed)]
        row += [s.variant] if with_variant else []
        row += [str(s.al.rounds), str(s.al.query_size)] + ([] if same_eval else [", ".join(s.eval_sets)])
        table.add_row(*row)
    console.print(table)
    if same_eval and est.specs:
        console.print(f"eval sets: {', '.join(est.specs[0].eval_sets)}", highlight=False)
    console.print(f"experiments: {est.experiments}")
    console.print(f"models to train: {est.models:,} (experiments × (rounds + 1))")
    console.print(f"training sample passes: {est.train_samples:,}")
    console.print(f"pool predictions (tracking + scoring): {est.pool_predictions:,}")
    console.print(f"eval predictions: {est.eval_predictions:,}")
    if est.seconds is not None:
        t = est.seconds
        text = f"{t:.0f} s" if t < 120 else (f"{t / 60:.1f} min" if t < 7200 else f"{t / 3600:.1f} h")
        console.print(f"rough time with --jobs 1: {text}", highlight=False)
    for note in est.notes:
        console.print(f"note: {note}", style="dim", highlight=False)


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `forgetting run`.")],
    round_: Annotated[
        int | None,
        typer.Option("--round", help="Round of the switch-count histograms (default: the middle one)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Write the HTML report of a run directory (report/index.html) and print its path."""
    from forgetting.experiments import write_report

    _set_verbose(verbose)
    try:
        index = write_report(run_dir, histogram_round=round_)
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    console.print(f"report: {index}", highlight=False)


@app.command()
def datasets(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Which datasets are available here, where they come from, and what the missing ones need."""
    from forgetting.data import dataset_report

    _set_verbose(verbose)
    table = Table(title="datasets")
    for col in ("name", "available", "source", "sizes", "classes", "notes"):
        table.add_column(col, overflow="fold")
    for st in dataset_report():
        sizes = ", ".join(f"{k} {v:,}" for k, v in st.sizes.items())
        table.add_row(
            st.name,
            "[green]yes[/]" if st.available else "[red]no[/]",
            st.source,
            sizes,
            str(len(st.classes)) if st.classes else "",
            st.reason or getattr(st, "description", ""),
        )
    console.print(table)


@app.command()
def strategies() -> None:
    """The active-learning strategies (names for `strategy = ...`)."""
    from forgetting.strategies import get_strategy, list_strategies

    table = Table(title="strategies")
    table.add_column("name")
    table.add_column("needs")
    for name in list_strategies():
        needs = ", ".join(sorted(str(x) for x in get_strategy(name).requires)) or "nothing"
        table.add_row(name, needs)
    console.print(table)


@app.command()
def models() -> None:
    """The models (names for `model = ...`) with their options and defaults."""
    from forgetting.models import list_models, model_info

    table = Table(title="models")
    for col in ("name", "task", "options (defaults)", "description"):
        table.add_column(col, overflow="fold")
    for name in list_models():
        info = model_info(name)
        opts = ", ".join(f"{k}={v!r}" for k, v in info.get("options", {}).items())
        table.add_row(name, str(info.get("task", "")), opts, str(info.get("description", "")))
    console.print(table)


def main() -> None:
    """Entry point of the ``forgetting`` console script (and of ``python -m forgetting``)."""
    _setup_logging()
    app()


if __name__ == "__main__":
    main()
