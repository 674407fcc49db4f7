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
from rich.markup import escape
from rich.table import Table

from forgetting._version import __version__
from forgetting.exceptions import ForgettingError

if TYPE_CHECKING:
    from forgetting.annotate import ProjectStatus
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


#: The ``--verbose`` option of every command.
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
#: The ``--device`` option of the commands that run a config.
DeviceOverride = Annotated[
    str | None, typer.Option("--device", help="Override the config's device (cpu, cuda, cuda:1, mps).")
]


def _set_verbose(verbose: bool) -> None:
    _LOG_FILTER.verbose = verbose
    if _handler is not None:
        logging.getLogger("forgetting").setLevel(logging.DEBUG if verbose else logging.INFO)


def _fail(message: str, code: int = 2) -> typer.Exit:
    # escape: messages quote config keys and extras such as [ray] that rich would take for markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
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
            help="A TOML experiment config. Without it: the built-in quickstart (about 5 min on 2 CPU cores)."
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
            help="Experiments run in parallel processes, with the process backend (default: the config's, "
            "else 1; with --backend process, one per CPU core), each with cores / jobs torch threads.",
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Where experiments run: local (this process), process (a pool of --jobs processes) or ray "
            "(one Ray task per experiment; needs `pip install 'forgetting\\[ray]'`). Default: the config's, "
            "else process when --jobs > 1, else local.",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="With --backend ray: the Ray cluster to join (e.g. auto, ray://head:10001). Default: the "
            "address in the config's ray table, else a local Ray instance started for this run.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the expanded grid and an estimate of the work; run nothing."),
    ] = False,
    device: DeviceOverride = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write the HTML report at the end.")
    ] = True,
    rerun: Annotated[
        list[str] | None,
        typer.Option(
            "--rerun",
            help="Delete the stored rounds of this experiment id (repeatable, or comma-separated) and run it "
            "again from round 0, e.g. after a damaged arrays/<id>/round-*.npz.",
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run an experiment grid (resumable: rerun the same command to continue), then write the report.

    One run per directory: a second `forgetting run` on the same --out exits 2 at once, naming the PID of
    the one running (a lock left by a killed run is taken over). Nothing is written when the config cannot
    run (a missing device or dataset, an initial set larger than the pool): it exits 2.
    """
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
        rerun_ids = [i.strip() for text in rerun or [] for i in text.split(",") if i.strip()]
        summary = run_experiments(
            cfg,
            out_dir,
            jobs=jobs,
            backend=backend,
            address=address,
            progress=True,
            console=err_console,
            rerun=rerun_ids,
        )
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; rerun the same command to resume the run", code=130) from None
    console.print(
        f"{len(summary.experiment_ids)} experiments: {len(summary.finished)} finished now, "
        f"{len(summary.skipped)} already done, {len(summary.failed)} failed; "
        f"{summary.rounds_written} rounds written in {summary.seconds:.0f} s",
        highlight=False,
    )
    for exp_id, error in summary.failed.items():
        err_console.print(f"[red]failed[/] {exp_id}: {escape(error)}", highlight=False)
    for exp_id, why in summary.ended_early.items():
        err_console.print(f"[yellow]ended early[/] {exp_id}: {escape(why)}", highlight=False)
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


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


@app.command("maps")
def maps_cmd(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="A TOML maps config. Without it: the built-in default (synthetic seismic sections, "
            "a small U-Net, a few minutes on CPU)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/maps).")
    ] = None,
    device: DeviceOverride = None,
    verbose: Verbose = False,
) -> None:
    """Forgetting maps for segmentation: train with per-pixel tracking, analyse the maps, write the report."""
    from forgetting.segmentation import default_maps_config, load_maps_config, run_forgetting_maps

    _set_verbose(verbose)
    try:
        cfg = default_maps_config() if config is None else load_maps_config(config)
        if device is not None:
            cfg = cfg.model_copy(update={"device": device})
        out_dir = out if out is not None else Path("runs") / "maps"
        err_console.print(f"forgetting maps [bold]{cfg.name}[/] into {out_dir}", highlight=False)
        result = run_forgetting_maps(cfg, out_dir)
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    test = result.metrics["test"]
    console.print(
        f"test sections: pixel accuracy {test.pixel_accuracy:.3f}, mean class accuracy "
        f"{test.mean_class_accuracy:.3f}, mIoU {test.mean_iou:.3f}, FWIoU {test.fw_iou:.3f}",
        highlight=False,
    )
    names = result.analyses["train"].class_names
    table = Table(title="per-class accuracy (test) and forgetting (train)")
    for col in ("class", "test accuracy", "test IoU", "train forgotten >= tau", "regions"):
        table.add_column(col, justify="left" if col == "class" else "right")
    pc = result.analyses["train"].per_class
    for i, name in enumerate(names):
        table.add_row(
            name,
            f"{test.class_accuracy[i]:.3f}",
            f"{test.iou[i]:.3f}",
            f"{pc['fraction_frequent'][i]:.3f}",
            str(int(pc["regions"][i])),
        )
    console.print(table)
    for split, analysis in result.analyses.items():
        reg = analysis.regions
        maps = result.summary["maps"][split]
        margin = maps["correlation_forgetting_margin"] or {}
        distance = maps["correlation_forgetting_distance"] or {}
        console.print(
            f"{split}: {reg.count} frequently forgotten regions (forgetting >= {analysis.tau}, at least "
            f"{result.summary['min_region_area']} px), {reg.total_area} pixels; Spearman rho of forgetting "
            f"vs final margin {_signed(margin.get('rho'))} (within class "
            f"{_signed(margin.get('within_class_rho'))}), vs distance to the label boundary "
            f"{_signed(distance.get('rho'))} (within class {_signed(distance.get('within_class_rho'))})",
            highlight=False,
        )
    for png in result.map_pngs[:3]:
        console.print(f"map: {png}", highlight=False)
    console.print(f"report: {result.report}  ({result.seconds['total']:.0f} s)", highlight=False)


def _parse_fractions(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not 0.0 < v < 1.0 for v in values):
        raise _fail(
            f"--prune must be fractions in (0, 1), comma-separated (e.g. 0.2 or 0.1,0.3), got {text!r}"
        )
    return values


@app.command("profile")
def profile_cmd(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="A TOML profile config. Without it: mnist-5k with small-cnn, 10 epochs, and the two AUM "
            "threshold runs (a few minutes on 2 CPU cores)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory (default: runs/<config name>).")
    ] = None,
    prune: Annotated[
        str | None,
        typer.Option(
            "--prune",
            help="Toneva's experiment: retrain without the fraction F of never-forgotten samples, and "
            "without a random F; report test accuracy for both (F, or several: 0.1,0.2,0.3).",
        ),
    ] = None,
    device: DeviceOverride = None,
    verbose: Verbose = False,
) -> None:
    """Explain a classifier: per-sample forgetting, data map, AUM and likely label errors; pruning."""
    from forgetting.profile.config import ProfileConfig, load_profile_config, run_profile_config

    _set_verbose(verbose)
    fractions = _parse_fractions(prune)
    try:
        cfg = ProfileConfig() if config is None else load_profile_config(config)
        if device is not None:
            cfg = cfg.model_copy(update={"device": device})
        out_dir = out if out is not None else Path("runs") / cfg.name
        err_console.print(f"profile [bold]{cfg.name}[/] into {out_dir}", highlight=False)
        result = run_profile_config(
            cfg, out_dir, prune=fractions, progress=lambda msg: err_console.print(msg, highlight=False)
        )
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    d = result.dynamics
    test = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.3f}"
    console.print(
        f"{result.n:,} samples, {result.train.epochs} epochs ({result.observe} observation): test accuracy "
        f"{test}; {int(d.unforgettable.sum()):,} unforgettable, {int((d.forgetting > 0).sum()):,} forgotten "
        f"at least once, {int(d.never_learned.sum()):,} never learned",
        highlight=False,
    )
    if result.mislabel is not None:
        thresholds = ", ".join(f"{t:.3f}" for t in result.mislabel.thresholds)
        console.print(
            f"likely mislabelled: {int(result.mislabel.flagged.sum()):,} (AUM below the threshold-sample "
            f"thresholds {thresholds})",
            highlight=False,
        )
    if result.pruning:
        table = Table(title="pruning: test accuracy after removing a fraction of the training set")
        for col in ("removed", "by forgetting", "at random", "all data"):
            table.add_column(col, justify="right")
        for p in result.pruning:
            full = "" if p.full_accuracy is None else f"{p.full_accuracy:.3f}"
            table.add_row(
                f"{p.fraction:.0%} ({p.removed:,})",
                f"{p.forgetting_accuracy:.3f}",
                f"{p.random_accuracy:.3f}",
                full,
            )
        console.print(table)
    for name in ("table", "parquet", "summary"):
        if name in result.files:
            console.print(f"{name}: {result.files[name]}", highlight=False)
    console.print(
        f"report: {result.files['report']}  ({result.seconds.get('total', 0.0):.0f} s)", highlight=False
    )


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `forgetting run`.")],
    round_: Annotated[
        int | None,
        typer.Option("--round", help="Round of the switch-count histograms (default: the middle one)."),
    ] = None,
    query_round: Annotated[
        int | None,
        typer.Option(
            "--query-round",
            help="Segmentation runs: round of the queried-sections figures (default: the middle one "
            "with stored query images).",
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Write the HTML report of a run directory (report/index.html) and print its path."""
    from forgetting.experiments import write_report

    _set_verbose(verbose)
    try:
        index = write_report(run_dir, histogram_round=round_, query_round=query_round)
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    console.print(f"report: {index}", highlight=False)


@app.command()
def datasets(verbose: Verbose = False) -> None:
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
    """The active-learning strategies (names for `strategy = ...`), what each needs, and how each task
    (classification, segmentation) runs it."""
    from forgetting.strategies import get_strategy, list_strategies
    from forgetting.tasks import get_task, list_tasks

    tasks = [get_task(name, 2) for name in list_tasks()]
    table = Table(title="strategies")
    table.add_column("name")
    table.add_column("needs")
    table.add_column("selection")
    for task in tasks:
        table.add_column(task.name)
    for name in list_strategies():
        strategy = get_strategy(name)
        needs = ", ".join(sorted(str(x) for x in strategy.requires)) or "nothing"
        forms = [task.support(strategy) or "-" for task in tasks]
        table.add_row(name, needs, str(strategy.selection), *forms)
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


# ---------------------------------------------------------------------------------------------------------
# Human in the loop: labelling projects (forgetting.annotate)


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or min(sides) < 1:
        raise _fail(f"--size must be one side or HEIGHT,WIDTH in pixels (e.g. 64 or 48,64), got {text!r}")
    return sides[0], sides[1]


@app.command("init-project")
def init_project_cmd(
    project: Annotated[Path, typer.Argument(help="The project directory to create.")],
    images: Annotated[
        Path, typer.Option("--images", help="A folder of image files, or an .npz/.npy file of images.")
    ],
    classes: Annotated[
        str | None,
        typer.Option(
            help="Class names, comma-separated; fixes the classes. Omit to take them from the labels. "
            "Segmentation: required, in the order of the mask values (class id 0 first)."
        ),
    ] = None,
    task: Annotated[
        str,
        typer.Option(help="classification (a class per image) or segmentation (a mask per image)."),
    ] = "classification",
    ignore_index: Annotated[
        str | None,
        typer.Option(
            "--ignore-index",
            help="Segmentation: the mask value of unlabelled pixels (default 255), or 'none'.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A model of the task (see `forgetting models`; default small-cnn, or unet), or the import "
            "path of your own factory, 'package.module:function' (its keyword arguments go in "
            "[model_options] of forgetting.toml)."
        ),
    ] = None,
    strategy: Annotated[str, typer.Option(help="The default strategy of `forgetting query`.")] = "gauss",
    query_size: Annotated[
        int, typer.Option("-n", "--query-size", min=1, help="Default images per query.")
    ] = 20,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Labels known so far: a CSV (item,label) or a Label Studio export; segmentation: a folder "
            "of masks or an .npz (masks, ids).",
        ),
    ] = None,
    key: Annotated[str | None, typer.Option(help="The array inside an .npz (default: images).")] = None,
    size: Annotated[
        str | None, typer.Option(help="Resize folder images to this size: SIDE or HEIGHT,WIDTH.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: the best).")] = None,
    verbose: Verbose = False,
) -> None:
    """Create a labelling project for your own images (settings in DIR/forgetting.toml)."""
    from forgetting.annotate import init_project

    _set_verbose(verbose)
    ignore: int | None = 255
    if ignore_index is not None and ignore_index.strip().lower() != "none":
        try:
            ignore = int(ignore_index)
        except ValueError:
            raise _fail(
                f"--ignore-index must be a mask value (e.g. 255) or 'none', got {ignore_index!r}"
            ) from None
    elif ignore_index is not None:
        ignore = None
    if ignore_index is not None and task != "segmentation":
        raise _fail("--ignore-index applies to --task segmentation only")
    try:
        proj = init_project(
            project,
            images,
            classes=classes,
            task=task,
            ignore_index=ignore,
            model=model,
            strategy=strategy,
            query_size=query_size,
            image_key=key,
            size=_parse_size(size),
            device=device,
            labels=labels,
        )
        st = proj.status()
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    what = "masks" if st.task == "segmentation" else "labelled"
    console.print(
        f"project {st.root} ({st.task}): {st.n_items} images ({st.kind} {st.images}), {st.n_labeled} {what}",
        highlight=False,
    )
    first = "gauss" if st.n_labeled else "kcenter-pixels"
    console.print(f"next: forgetting query {st.root} --strategy {first}", highlight=False)


@app.command()
def query(
    project: Annotated[Path, typer.Argument(help="A project directory (see `forgetting init-project`).")],
    n: Annotated[
        int | None, typer.Option("-n", min=1, help="Images to pick (default: the project's).")
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="A strategy (default: the project's, gauss); random or kcenter-pixels need no labels."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, help="Query seed: the same labels and seed give the same list.")
    ] = 0,
    force: Annotated[bool, typer.Option("--force", help="Recompute even if this query is on disk.")] = False,
    verbose: Verbose = False,
) -> None:
    """Train on the labelled images, rank the unlabelled ones, and write the next ones to label."""
    from forgetting.annotate import LabelingProject

    _set_verbose(verbose)
    try:
        result = LabelingProject.open(project).query(n, strategy, seed=seed, force=force)
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"round {result.round}: {len(result.items)} images to label ({result.strategy})")
    segmentation = result.task == "segmentation"  # no per-image prediction: the page shows the maps
    for col in ("rank", "item", "score") if segmentation else ("rank", "item", "score", "model says"):
        table.add_column(col, overflow="fold")
    for r in result.items:
        score = "" if r.score != r.score else f"{r.score:.4g}"
        said = "" if r.predicted is None else f"{r.predicted} ({r.confidence:.2f})"
        table.add_row(str(r.rank), r.item, score, *(() if segmentation else (said,)))
    console.print(table)
    note = " (unchanged, already on disk)" if result.reused else ""
    console.print(f"ranked CSV: {result.csv_path}{note}", highlight=False)
    if result.label_studio_path.is_file():
        console.print(f"Label Studio tasks: {result.label_studio_path}", highlight=False)
    console.print(f"page: {result.html_path}", highlight=False)
    if segmentation:
        console.print(
            "draw one mask per image (pixel value = class id), named as the CSV's mask_file column, in one "
            "folder",
            highlight=False,
        )
        console.print(
            f"next: forgetting label {project} FOLDER (or a Label Studio JSON export)", highlight=False
        )
    else:
        console.print(f"next: forgetting label {project} --import FILE", highlight=False)


@app.command()
def label(
    project: Annotated[Path, typer.Argument(help="A project directory.")],
    path: Annotated[
        Path | None,
        typer.Argument(
            help="What to import (or use --import): a CSV or Label Studio export; segmentation: a folder of "
            "masks or an .npz (masks, ids).",
            show_default=False,
        ),
    ] = None,
    import_file: Annotated[
        Path | None,
        typer.Option(
            "--import",
            help="A CSV (item,label; e.g. a round's query.csv filled in) or a Label Studio export; "
            "segmentation: a folder of masks (PNG class ids or .npy, named after the images) or an .npz.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace labels that contradict the project's.")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Add returned labels (or masks) to a project (safe to repeat: labels already there are skipped)."""
    from forgetting.annotate import LabelingProject

    _set_verbose(verbose)
    if (path is None) == (import_file is None):
        raise _fail("give what to import once: `forgetting label PROJECT PATH` or `--import PATH`")
    source = path if path is not None else import_file
    assert source is not None
    try:
        proj = LabelingProject.open(project)
        summary = proj.import_labels(source, overwrite=overwrite)
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    unit = "mask(s)" if proj.settings.task == "segmentation" else "label(s)"
    empty = "without labelled pixels" if proj.settings.task == "segmentation" else "without a label"
    console.print(
        f"{summary.source}: {summary.added} added, {summary.unchanged} already there, "
        f"{summary.overwritten} overwritten, {summary.skipped} {empty} ({unit})",
        highlight=False,
    )
    if summary.new_classes:
        console.print(f"new classes: {', '.join(summary.new_classes)}", highlight=False)
    if summary.skipped and not (summary.added or summary.unchanged or summary.overwritten):
        if proj.settings.task == "segmentation":
            ignore = proj.settings.ignore_index
            err_console.print(
                f"no labelled pixels: every pixel of the {summary.skipped} mask(s) holds the ignore index "
                f"{ignore} (unlabelled); draw class ids 0..{len(proj.settings.classes) - 1} into the masks "
                "first",
                highlight=False,
            )
        else:
            err_console.print("no labels in the file: fill in the label column (or annotate the tasks) first")
    console.print(f"next: forgetting query {project}", highlight=False)


@app.command()
def status(project: Annotated[Path, typer.Argument(help="A project directory.")]) -> None:
    """Images, labels per class, rounds, and what the latest query still waits for."""
    from forgetting.annotate import LabelingProject

    try:
        st = LabelingProject.open(project).status()
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    console.print(f"project {st.root}", highlight=False)
    console.print(f"images: {st.n_items} ({st.kind} {st.images})", highlight=False)
    console.print(f"labelled: {st.n_labeled}; rounds queried: {st.rounds}", highlight=False)
    if st.task == "segmentation":
        total = sum(st.pixel_counts.values())
        table = Table(title="labelled pixels per class")
        table.add_column("class")
        table.add_column("images", justify="right")
        table.add_column("pixels", justify="right")
        table.add_column("share", justify="right")
        for name, pixels in st.pixel_counts.items():
            share = f"{pixels / total:.1%}" if total else ""
            table.add_row(name, str(st.class_counts.get(name, 0)), str(pixels), share)
        console.print(table)
        console.print(f"unlabelled (ignore-index) pixels: {st.ignored_pixels}", highlight=False)
    else:
        table = Table(title="labels per class")
        table.add_column("class")
        table.add_column("labelled", justify="right")
        for name, count in st.class_counts.items():
            table.add_row(name, str(count))
        console.print(table)
    if st.pending:
        unit = "mask(s)" if st.task == "segmentation" else "label(s)"
        console.print(f"round {st.rounds - 1} still waits for {len(st.pending)} {unit}", highlight=False)
    if st.missing:
        console.print(f"{len(st.missing)} labelled item(s) are no longer in the images", highlight=False)
    if st.rounds and st.new_labels:
        console.print(f"{st.new_labels} label(s) since round {st.rounds - 1}", highlight=False)
    _print_label_studio_files(st)


def _print_label_studio_files(st: ProjectStatus) -> None:
    root = st.label_studio_document_root
    console.print(
        f"Label Studio: a local storage of {st.media_root}"
        + (f", with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}" if root is not None else ""),
        highlight=False,
    )


@app.command("serve")
def serve_cmd(
    project: Annotated[Path, typer.Argument(help="A project directory (see `forgetting init-project`).")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port to listen on.")] = 9090,
    host: Annotated[
        str, typer.Option(help="The address to listen on (0.0.0.0: every interface; no authentication).")
    ] = "127.0.0.1",
    every: Annotated[
        int, typer.Option("--every", "-k", min=1, help="Retrain and re-rank after this many new labels.")
    ] = 10,
    n: Annotated[
        int | None, typer.Option("-n", min=1, help="Images each round ranks (default: the project's).")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="The strategy of the rounds (default: the project's).")
    ] = None,
    cold_start: Annotated[
        str, typer.Option("--cold-start", help="The first round's strategy when nothing is labelled yet.")
    ] = "kcenter-pixels",
    seed: Annotated[int, typer.Option(help="Query seed.")] = 0,
    label_studio_url: Annotated[
        str | None,
        typer.Option(
            envvar="LABEL_STUDIO_URL",
            help="Label Studio's address, to select each new round's predictions there and retrieve them "
            "(default: the address Label Studio sends when it connects).",
        ),
    ] = None,
    label_studio_token: Annotated[
        str | None,
        typer.Option(
            envvar="LABEL_STUDIO_API_KEY",
            help="A Label Studio API token (legacy token or personal access token) for that (default: the "
            "token Label Studio sends when it connects, valid when legacy tokens are enabled).",
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Serve a project as a Label Studio ML backend: predictions ranked by the strategy, labels imported from
    Label Studio's webhooks, and a new round (retrain, re-rank) after every --every new labels.

    Needs the labelstudio extra: pip install 'forgetting\\[labelstudio]'. Connect it in Label Studio under
    Settings > Model (URL http://HOST:PORT). The project directory is the state: stop and restart freely.
    """
    from forgetting.annotate import LabelingProject
    from forgetting.annotate.live import LiveSettings
    from forgetting.annotate.serve import serve

    _set_verbose(verbose)
    try:
        settings = LiveSettings(
            every=every,
            n=n,
            strategy=strategy,
            cold_start=cold_start,
            seed=seed,
            label_studio_url=label_studio_url,
            label_studio_token=label_studio_token,
        )
        proj = LabelingProject.open(project)
        tasks = proj.export_label_studio_tasks()
        st = proj.status()
        err_console.print(
            f"serving {st.root} ({st.task}, {st.n_labeled} of {st.n_items} labelled, {st.rounds} rounds) "
            f"as a Label Studio ML backend on http://{host}:{port}; a new round after every {every} labels",
            highlight=False,
        )
        err_console.print(f"Label Studio interface: {proj.label_studio_config_path}", highlight=False)
        err_console.print(f"Label Studio tasks (every image): {tasks}", highlight=False)
        _print_label_studio_files(st)
        serve(project, host=host, port=port, settings=settings, log_level="debug" if verbose else "info")
    except ForgettingError as exc:
        raise _fail(str(exc)) from None


@app.command("augment")
def augment_cmd(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="A TOML augment config. Without it: the built-in default (synthetic seismic, 3 seeds x 4 "
            "arms, a few minutes on CPU)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/augment).")
    ] = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="Comma-separated seeds, overriding the config (e.g. 0,1,2).")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Forgetting-guided augmentation: baseline, maps, restyled forgotten regions, retrain; before/after."""
    from forgetting.segmentation.augment_protocol import (
        default_augment_config,
        load_augment_config,
        run_augment_protocol,
    )

    _set_verbose(verbose)
    try:
        seed_list = None
        if seeds is not None:
            try:
                seed_list = [int(s) for s in seeds.split(",") if s.strip()]
            except ValueError:
                raise _fail(f"--seeds must be comma-separated integers, got {seeds!r}") from None
        cfg = default_augment_config() if config is None else load_augment_config(config)
        out_dir = out if out is not None else Path("runs") / "augment"
        err_console.print(f"forgetting augment [bold]{cfg.name}[/] into {out_dir}", highlight=False)
        result = run_augment_protocol(cfg, out_dir, seeds=seed_list)
    except ForgettingError as exc:
        raise _fail(str(exc)) from None
    console.print(result.table, highlight=False, markup=False, soft_wrap=True)
    console.print(f"report: {result.report}  ({result.seconds:.0f} s)", highlight=False)


def main() -> None:
    """Entry point of the ``forgetting`` console script (and of ``python -m forgetting``)."""
    _setup_logging()
    app()


if __name__ == "__main__":
    main()
