"""Throughput of the library's hot paths against the best plain PyTorch loop, side by side (issue 20).

For each model, on the same trained weights and the same data:

1. **pool pass**: one observation pass as the active-learning loop runs it (an ``ObservationCallback`` with
   the task's default inference batch size, the model in the layout the loop gives it, every prediction fed
   to an ``EventTracker``), against the best plain loop: ``torch.inference_mode``, eval mode,
   ``argmax`` into a preallocated tensor, over the same ``uint8`` images scaled per batch, with the best
   batch size and memory format (contiguous or ``channels_last``; on CUDA also fp32 or bf16 autocast) of a
   sweep;
2. **training**: optimizer steps/s of a round's training as the loop runs it (``forgetting.loop.train_round``:
   ``fit`` with its stopping rule, observer hooks and defaults), against a bare loop (Adam, the same batch
   size, epochs, initial weights, class weights and ignore index: index, scale, forward, cross entropy,
   backward, step) in the best of the two layouts and Adam's default or fused implementation;
3. the same two through the ``Dataset`` path of "Use your own model, training loop and data": a
   ``DatasetSource`` over a map-style ``torch`` Dataset of ``(uint8 [C, H, W], target)`` items, against a
   plain ``DataLoader`` loop over the same Dataset.

Models: ``small-cnn`` width 8 and 32 on MNIST-5k digits (1x28x28); ``resnet18`` width 16 on CIFAR-shaped
3x32x32 images (the digits padded to 32x32 and repeated over 3 channels, so no download); ``unet`` (base 8,
depth 3, as in ``examples/seismic-al.toml``) on 64x64 synthetic seismic sections. Each model is first trained
for a few epochs (the pool pass then sees trained weights, with their small activations).

Timing: the plain settings are swept once (two runs each, the fastest kept), then ours and the best plain
setting run back to back ``--repeats`` times (default 7, alternating which goes first). A ratio is the median
of the per-pair ratios (pairing keeps it meaningful on a machine whose speed drifts), by wall time and by CPU
time of this process, and, since noise on a shared machine only ever slows a run down, the ratio of the
fastest run of each. The plain loops flush subnormal floats (``torch.set_flush_denormal``), the setting a
careful PyTorch user would pick, and restore the previous setting after each run. Context printed first:
the machine's sgemm GFLOP/s (a square float32 matmul) and copy bandwidth (a 256 MiB ``copy_``, read plus
write bytes), the load average and the busiest other processes; achieved GFLOP/s of each pass comes from
``torch.utils.flop_counter``.

Run: ``python benchmarks/throughput.py`` (about 10 minutes on one thread of a 2-core CPU; ``--threads``,
``--repeats``, ``--models``, ``--device cuda``, ``--quick`` for a smoke run of a few seconds per model,
``--json FILE`` to keep the numbers); ``make bench`` runs it in full, with the other benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from forgetting.data import DatasetSource, Split, load_dataset
from forgetting.loop import LoopConfig, build_round_model, train_round
from forgetting.observe import ObservationCallback
from forgetting.tasks import get_task
from forgetting.training import TrainConfig, make_optimizer


@dataclass(frozen=True)
class Case:
    """One model of the table and its workload (sizes for a CPU; ``--device cuda`` scales them up)."""

    key: str
    model: str
    options: dict[str, Any]
    data: str  # "mnist", "cifar-shaped" or "seismic"
    pool: int  # images in the pool pass
    labels: int  # labelled images trained on
    batch: int  # training batch size
    epochs: int  # epochs of each training run
    lr: float = 3e-3


CASES = (
    Case("small-cnn-8", "small-cnn", {"width": 8, "embed_dim": 64}, "mnist", 4000, 160, 8, 4),
    Case("small-cnn-32", "small-cnn", {"width": 32, "embed_dim": 64}, "mnist", 1000, 160, 8, 2),
    Case("resnet18-16", "resnet18", {"width": 16}, "cifar-shaped", 500, 128, 32, 2),
    Case("unet-64", "unet", {"base": 8, "depth": 3}, "seismic", 64, 8, 4, 4),
)
CPU_BATCHES = (16, 32, 64, 128, 256, 512, 1024)
CUDA_BATCHES = (256, 1024, 4096, 16384)


# ------------------------------------------------------------------------------------------ measurement
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    wall: float
    cpu: float


def timed(fn: Callable[[], object], device: torch.device) -> Timing:
    """Wall and process CPU seconds of ``fn()`` (CUDA synchronised before and after)."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return Timing(time.perf_counter() - w0, time.process_time() - c0)


@contextlib.contextmanager
def flushed() -> Iterator[None]:
    """Subnormals flushed inside the block, the previous setting restored (the plain loops' setting)."""
    probe = torch.tensor(1e-40, dtype=torch.float32)
    before = bool((probe * 1.0) == 0)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Row:
    """One line of the table: ours against the best plain setting."""

    model: str
    path: str
    unit: str
    ours: float  # items (images or steps) per second, median over the repeats
    plain: float
    plain_setting: str
    ratio_wall: float  # median of per-pair (ours / plain) throughput ratios
    ratio_cpu: float
    ratio_fastest: float = math.nan  # fastest ours run against the fastest plain run (wall)
    ours_setting: str = ""
    gflops: float | None = None
    pairs: list[tuple[float, float]] = field(default_factory=list)  # (ours wall s, plain wall s)


def head_to_head(
    ours: Callable[[], object],
    plain: Callable[[], object],
    items: int,
    repeats: int,
    device: torch.device,
    *,
    model: str,
    path: str,
    unit: str,
    plain_setting: str,
    ours_setting: str,
    gflop_per_item: float | None = None,
) -> Row:
    """``repeats`` interleaved runs of ``ours`` and ``plain``, as one table row: median items/s of each,
    median per-pair ratios (wall, CPU), the ratio of the fastest runs (wall), and the raw pairs."""
    pairs: list[tuple[Timing, Timing]] = []
    for r in range(repeats):
        if r % 2 == 0:
            a = timed(ours, device)
            b = timed(plain, device)
        else:  # alternate the order so that neither always runs on a warmer cache
            b = timed(plain, device)
            a = timed(ours, device)
        pairs.append((a, b))
    ours_rate = statistics.median(items / a.wall for a, _ in pairs)
    plain_rate = statistics.median(items / b.wall for _, b in pairs)
    ratio_wall = statistics.median(b.wall / a.wall for a, b in pairs)
    ratio_cpu = statistics.median(b.cpu / max(a.cpu, 1e-9) for a, b in pairs)
    fastest = min(b.wall for _, b in pairs) / min(a.wall for a, _ in pairs)
    return Row(
        model,
        path,
        unit,
        ours_rate,
        plain_rate,
        plain_setting,
        ratio_wall,
        ratio_cpu,
        fastest,
        ours_setting,
        None if gflop_per_item is None else ours_rate * gflop_per_item,
        [(a.wall, b.wall) for a, b in pairs],
    )


def sweep(runs: dict[str, Callable[[], object]], device: torch.device) -> str:
    """The fastest of ``runs`` (two runs each, the faster kept; CPU time on a CPU, wall time on CUDA)."""
    best: dict[str, float] = {}
    for name, fn in runs.items():
        times = [timed(fn, device) for _ in range(2)]
        best[name] = min(t.cpu if device.type == "cpu" else t.wall for t in times)
    return min(best, key=best.__getitem__)


# ------------------------------------------------------------------------------------------ machine
def sgemm_gflops(device: torch.device, n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    t = timed(lambda: [a @ b for _ in range(reps)], device)
    return 2 * n**3 * reps / t.wall / 1e9


def copy_bandwidth(device: torch.device, mib: int = 256, reps: int = 5) -> float:
    """GB/s of ``dst.copy_(src)``, counting the bytes read and written."""
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    t = timed(lambda: [dst.copy_(src) for _ in range(reps)], device)
    return 2 * src.nbytes * reps / t.wall / 1e9


def what_else_runs(limit: int = 6) -> list[str]:
    """The busiest other processes right now (one ``top`` sample), as lines ``%CPU command``."""
    try:
        out = subprocess.run(
            ["top", "-b", "-n", "1", "-c", "-w", "200", "-o", "%CPU"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    lines = []
    table_started = False
    for line in out.splitlines():
        fields = line.split(None, 11)
        if not table_started:
            table_started = bool(fields) and fields[0] == "PID"
            continue
        if len(fields) < 12 or int(fields[0]) == os.getpid() or fields[11].startswith("top "):
            continue
        lines.append(f"{fields[8]:>5}% {fields[11][:100]}")
        if len(lines) == limit:
            break
    return lines


def forward_gflop(model: nn.Module, x: torch.Tensor) -> float:
    """GFLOP of one eval forward of ``x`` (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops() / 1e9


# ------------------------------------------------------------------------------------------ data
class ItemDataset(Dataset):
    """A plain map-style Dataset of ``(uint8 [C, H, W], target)`` items, one ``__getitem__`` per item."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.targets[i]


def load_case_data(case: Case, pool: int, labels: int) -> tuple[Split, Split, str, dict[str, Any]]:
    """(labelled split, pool split, task name, task options) of ``case``: real or generated data only."""
    if case.data == "seismic":
        d = load_dataset("seismic-synthetic", seed=0, inlines=64, crosslines=64, depth=64)
        images = torch.cat([d.train.images, d.test.images])
        masks = torch.cat([d.train.targets, d.test.targets])
        reps = math.ceil((labels + pool) / images.shape[0])
        images, masks = images.repeat(reps, 1, 1, 1), masks.repeat(reps, 1, 1)
        task = ("segmentation", {"ignore_index": int(d.meta["ignore_index"]), "class_weights": "median"})
    else:
        d = load_dataset("mnist-5k", seed=0)
        images, masks = (
            torch.cat([d.train.images, d.test.images]),
            torch.cat([d.train.targets, d.test.targets]),
        )
        if case.data == "cifar-shaped":
            images = F.pad(images, (2, 2, 2, 2)).repeat(1, 3, 1, 1)
        reps = math.ceil((labels + pool) / images.shape[0])
        images, masks = images.repeat(reps, 1, 1, 1), masks.repeat(reps)
        task = ("classification", {})
    labelled = Split(images[:labels].contiguous(), masks[:labels].contiguous())
    pool_split = Split(
        images[labels : labels + pool].contiguous(), masks[labels : labels + pool].contiguous()
    )
    return labelled, pool_split, task[0], task[1]


# ------------------------------------------------------------------------------------------ one model
def run_case(case: Case, args: argparse.Namespace, device: torch.device) -> list[Row]:
    scale = 10 if device.type == "cuda" else 1
    quick = args.quick
    pool_n = 64 if quick else case.pool * scale
    labels_n = min(case.labels, 16) if quick else case.labels
    epochs = 1 if quick else case.epochs
    repeats = 1 if quick else args.repeats
    labelled, pool, task_name, task_options = load_case_data(case, pool_n, labels_n)
    num_classes = 6 if task_name == "segmentation" else 10
    task = get_task(task_name, num_classes, **task_options)
    ignore = task_options.get("ignore_index", -100)
    config = LoopConfig(
        model=case.model,
        model_options=dict(case.options),
        seed=0,
        train=TrainConfig(epochs=epochs, batch_size=case.batch, lr=case.lr),
    )
    labelled_dev = labelled.to(device)
    pool_dev = pool.to(device)
    in_channels = int(labelled.images.shape[1])
    input_shape = tuple(int(s) for s in pool.images.shape[1:])
    loop_bs = task.batch_size(device, input_shape, None)  # None: each pass picks its default
    rows: list[Row] = []

    # A trained model, as the loop trains it (its layout is the loop's); plain copies in both layouts.
    model, record, _ = train_round(config, 0, task, labelled_dev, device=device)
    model.eval()
    layout = "channels_last" if _is_channels_last(model) else "contiguous"
    fused = bool(make_optimizer(model, config.train).defaults.get("fused"))
    train_setting = f"{layout}, Adam {'fused' if fused else 'default'}"
    plain_models = {
        "contiguous": copy.deepcopy(model).to(memory_format=torch.contiguous_format).eval(),
        "channels_last": copy.deepcopy(model).to(memory_format=torch.channels_last).eval(),
    }
    x1 = pool_dev.images[:1].float().div(255)
    gflop_per_image = forward_gflop(plain_models["contiguous"], x1)
    cuda = device.type == "cuda"
    batches = CUDA_BATCHES if cuda else CPU_BATCHES
    if quick:
        batches = batches[2:4]

    # ---- 1. pool pass over in-memory tensors
    callback = ObservationCallback(pool_dev, None, seed=0, batch_size=loop_bs, name="pool")
    epoch = iter(range(1, 10**9))

    def ours_pass() -> None:
        callback.observe(model, epoch=next(epoch))

    images = pool_dev.images
    preds = torch.empty(
        images.shape[0],
        *((input_shape[1:]) if task_name == "segmentation" else ()),
        dtype=torch.int64,
        device=device,
    )

    def plain_pass(bs: int, fmt: str, bf16: bool) -> Callable[[], None]:
        net = plain_models[fmt]
        memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format

        def run() -> None:
            with flushed(), torch.inference_mode(), autocast(device, bf16):
                for s in range(0, images.shape[0], bs):
                    x = images[s : s + bs].float().div_(255.0).contiguous(memory_format=memory_format)
                    preds[s : s + bs] = net(x).argmax(1)

        return run

    grid = {
        f"batch {bs}, {fmt}" + (", bf16" if bf16 else ""): plain_pass(bs, fmt, bf16)
        for bs in batches
        for fmt in ("contiguous", "channels_last")
        for bf16 in ((False, True) if cuda else (False,))
    }
    sizes: list[int] = []
    probe = model.register_forward_pre_hook(lambda m, args: sizes.append(int(args[0].shape[0])))
    ours_pass()  # warm-up (the tracker's first pass allocates its state), and the batch size it used
    probe.remove()
    used_bs = max(sizes)
    best = sweep(grid, device)
    rows.append(
        head_to_head(
            ours_pass,
            grid[best],
            pool_n,
            repeats,
            device,
            model=case.key,
            path="pool pass, tensors",
            unit="images/s",
            plain_setting=best,
            ours_setting=f"batch {used_bs}, {layout}",
            gflop_per_item=gflop_per_image,
        )
    )

    # ---- 2. pool pass through a DatasetSource (a user's torch Dataset read lazily)
    items = ItemDataset(pool.images, pool.targets)
    lazy_callback = ObservationCallback(DatasetSource(items), None, seed=0, batch_size=loop_bs, name="pool")

    def ours_lazy_pass() -> None:
        lazy_callback.observe(model, epoch=next(epoch))

    def plain_lazy_pass(bs: int, fmt: str, bf16: bool) -> Callable[[], None]:
        net = plain_models[fmt]
        memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format

        def run() -> None:
            s = 0
            with flushed(), torch.inference_mode(), autocast(device, bf16):
                for x, _ in DataLoader(items, batch_size=bs, pin_memory=cuda):
                    x = (
                        x.to(device, non_blocking=True)
                        .float()
                        .div_(255.0)
                        .contiguous(memory_format=memory_format)
                    )
                    preds[s : s + x.shape[0]] = net(x).argmax(1)
                    s += x.shape[0]

        return run

    fmt_best = "channels_last" if "channels_last" in best else "contiguous"
    bf16_best = "bf16" in best
    lazy_grid = {
        f"batch {bs}, {fmt_best}" + (", bf16" if bf16_best else ""): plain_lazy_pass(bs, fmt_best, bf16_best)
        for bs in batches
    }
    ours_lazy_pass()
    lazy_best = sweep(lazy_grid, device)
    rows.append(
        head_to_head(
            ours_lazy_pass,
            lazy_grid[lazy_best],
            pool_n,
            repeats,
            device,
            model=case.key,
            path="pool pass, Dataset",
            unit="images/s",
            plain_setting=lazy_best,
            ours_setting=f"batch {used_bs}, {layout}",
            gflop_per_item=gflop_per_image,
        )
    )

    # ---- 3. training over in-memory tensors: the loop's round training against a bare loop
    weights = task.labeled_set(labelled_dev, seed=0, device=device).class_weights
    steps = record.steps

    def ours_train() -> None:
        train_round(config, 0, task, labelled_dev, device=device)

    def bare_train(fmt: str, bf16: bool, fused: bool, lazy: bool) -> Callable[[], None]:
        memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        x_all, y_all = labelled_dev.images, labelled_dev.targets
        n = int(x_all.shape[0])
        w = None if weights is None else weights.to(device)
        lazy_items = ItemDataset(labelled.images, labelled.targets)

        def run() -> None:
            net = build_round_model(config, 0, in_channels, num_classes).to(device)
            net = net.to(memory_format=memory_format).train()
            opt = torch.optim.Adam(net.parameters(), lr=case.lr, fused=fused or None)
            g = torch.Generator().manual_seed(0)

            def step(x: torch.Tensor, y: torch.Tensor) -> None:
                x = x.float().div_(255.0).contiguous(memory_format=memory_format)
                with autocast(device, bf16):
                    logits = net(x)
                loss = F.cross_entropy(logits.float(), y, weight=w, ignore_index=ignore)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            with flushed():
                for _ in range(epochs):
                    order = torch.randperm(n, generator=g)
                    if lazy:
                        loader = DataLoader(
                            lazy_items, batch_size=case.batch, sampler=order.tolist(), pin_memory=cuda
                        )
                        for x, y in loader:
                            step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                    else:
                        order = order.to(device)
                        for s in range(0, n, case.batch):
                            idx = order[s : s + case.batch]
                            step(x_all[idx], y_all[idx])

        return run

    train_grid = {
        f"{fmt}, Adam {'fused' if fused else 'default'}" + (", bf16" if bf16 else ""): bare_train(
            fmt, bf16, fused, False
        )
        for fmt in ("contiguous", "channels_last")
        for fused in (False, True)
        for bf16 in ((False, True) if cuda else (False,))
    }
    train_best = sweep(train_grid, device)
    rows.append(
        head_to_head(
            ours_train,
            train_grid[train_best],
            steps,
            repeats,
            device,
            model=case.key,
            path="training, tensors",
            unit="steps/s",
            plain_setting=train_best,
            ours_setting=train_setting,
        )
    )

    # ---- 4. training through a DatasetSource
    lazy_labelled = DatasetSource(ItemDataset(labelled.images, labelled.targets), targets=labelled.targets)

    def ours_lazy_train() -> None:
        train_round(config, 0, task, lazy_labelled, device=device)

    fmt_t = "channels_last" if "channels_last" in train_best else "contiguous"
    lazy_train = bare_train(fmt_t, "bf16" in train_best, "fused" in train_best, True)
    ours_lazy_train()
    rows.append(
        head_to_head(
            ours_lazy_train,
            lazy_train,
            steps,
            repeats,
            device,
            model=case.key,
            path="training, Dataset",
            unit="steps/s",
            plain_setting=train_best,
            ours_setting=train_setting,
        )
    )
    return rows


def _is_channels_last(model: nn.Module) -> bool:
    for p in model.parameters():
        if p.ndim == 4 and p.shape[1] > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


# ------------------------------------------------------------------------------------------ main
def table(rows: list[Row]) -> str:
    lines = [
        "| model | path | ours | best plain (setting) | ours / plain: wall, CPU, fastest "
        "| ours: setting, GFLOP/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        gf = "" if r.gflops is None else f", {r.gflops:.1f}"
        lines.append(
            f"| {r.model} | {r.path} | {r.ours:,.0f} {r.unit} | {r.plain:,.0f} ({r.plain_setting}) | "
            f"{r.ratio_wall:.2f}, {r.ratio_cpu:.2f}, {r.ratio_fastest:.2f} | {r.ours_setting}{gf} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--repeats", type=int, default=7, help="interleaved runs of ours and plain (default 7)"
    )
    parser.add_argument(
        "--models", nargs="+", default=[c.key for c in CASES], choices=[c.key for c in CASES], metavar="MODEL"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run")
    parser.add_argument("--json", default=None, help="also write the rows and the context to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    import forgetting

    load = os.getloadavg()
    context = {
        "torch": torch.__version__,
        "forgetting": getattr(forgetting, "__version__", "?"),
        "forgetting_path": os.path.dirname(forgetting.__file__),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "sgemm_gflops": sgemm_gflops(device, n=512 if args.quick else 2048),
        "copy_gbps": copy_bandwidth(device, mib=16 if args.quick else 256),
        "load_before": load,
        "others_before": what_else_runs(),
    }
    print(
        f"forgetting from {context['forgetting_path']}, torch {context['torch']}, {context['device']}, "
        f"{context['threads']} thread(s) of {context['cores']} cores"
    )
    print(f"machine: sgemm {context['sgemm_gflops']:.0f} GFLOP/s, copy {context['copy_gbps']:.1f} GB/s")
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; busiest other processes:")
    for line in context["others_before"]:
        print("   ", line)
    rows: list[Row] = []
    t0 = time.perf_counter()
    for case in CASES:
        if case.key not in args.models:
            continue
        tc = time.perf_counter()
        case_rows = run_case(case, args, device)
        rows.extend(case_rows)
        for r in case_rows:
            print(
                f"  {r.model:13s} {r.path:20s} ours {r.ours:10,.1f} {r.unit}  plain {r.plain:10,.1f} "
                f"({r.plain_setting})  ratio {r.ratio_wall:.2f} wall, {r.ratio_cpu:.2f} CPU, "
                f"{r.ratio_fastest:.2f} fastest",
                flush=True,
            )
        print(f"  ({case.key}: {time.perf_counter() - tc:.0f} s)", flush=True)
    context["seconds"] = time.perf_counter() - t0
    context["load_after"] = os.getloadavg()
    context["others_after"] = what_else_runs()
    print()
    print(table(rows))
    la = context["load_after"]
    print(f"\n{context['seconds']:.0f} s; load average after {la[0]:.1f} {la[1]:.1f} {la[2]:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"context": context, "rows": [asdict(r) for r in rows]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
