"""EventTracker cost: pass overhead, bytes per pixel, update throughput.

(a) time of a pool pass with tracking / the same pass without (small CNN, 28x28 images), interleaved
    repeats, medians; target <= 1.03.
(b) bytes per pixel of a tracker over F3-sized sections (default 1,000 x 255 x 701, 6 classes), with and
    without epoch fields, from ``nbytes``; a few updates are run on the full-size tracker.
(c) update throughput in elements/s, for sample and pixel trackers, on the CPU and on CUDA when available.

Run: ``python benchmarks/tracker.py [--images 10000 --repeats 3 --sections 1000 --device auto]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from forgetting.events import EventTracker
from forgetting.inference import autocast_context, default_batch_size, eval_mode, iter_batches, to_input
from forgetting.models import build_model
from forgetting.observe import ObservationCallback


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_pass(model: nn.Module, images: torch.Tensor, device: torch.device) -> None:
    """The observation pass without tracking: same batches, eval mode, inference mode, autocast, argmax."""
    bs = default_batch_size(device)
    with eval_mode(model), torch.inference_mode(), autocast_context(device):
        for sl in iter_batches(images.shape[0], bs):
            model(to_input(images[sl])).argmax(1)
    sync(device)


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_pass_overhead(n_images: int, repeats: int, device: torch.device) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 1, 28, 28), generator=g, dtype=torch.uint8).to(device)
    labels = torch.randint(0, 10, (n_images,), generator=g).to(device)
    model = build_model("small-cnn", 1, 10, seed=0).to(device)
    cb = ObservationCallback(images, labels)
    plain_pass(model, images, device)  # warm-up (allocator, kernels)
    cb.observe(model, epoch=0)
    plain, tracked = [], []
    for r in range(repeats):  # interleaved, so drifts in machine load hit both equally
        plain.append(timed(lambda: plain_pass(model, images, device)))
        tracked.append(timed(lambda r=r: cb.observe(model, epoch=r + 1)))
    p, t = statistics.median(plain), statistics.median(tracked)
    return {"plain_s": p, "tracked_s": t, "ratio": t / p}


def bench_memory(sections: int, height: int, width: int, updates: int) -> list[tuple[str, int, float, float]]:
    rows = []
    for track_epochs in (False, True):
        tr = EventTracker((sections, height, width), device="cpu", track_epochs=track_epochs, num_classes=6)
        g = torch.Generator().manual_seed(0)
        batch = min(sections, 16)
        masks = torch.randint(0, 6, (batch, height, width), generator=g)
        start = time.perf_counter()
        for e in range(updates):
            idx = torch.randint(0, sections, (batch,), generator=g).unique()
            preds = torch.randint(0, 6, (idx.shape[0], height, width), generator=g)
            tr.update(idx, preds, masks[: idx.shape[0]], epoch=e)
        seconds = time.perf_counter() - start
        assert int(tr.observations.sum()) > 0
        rows.append((f"epochs={'yes' if track_epochs else 'no'}", tr.nbytes, tr.bytes_per_element, seconds))
        del tr
    return rows


def bench_throughput(device: torch.device, repeats: int) -> list[tuple[str, float]]:
    out = []
    cases = {
        "samples N=100k, B=4096": ((100_000,), 4096),
        "pixels 64x255x701, B=16": ((64, 255, 701), 16),
    }
    for name, (shape, b) in cases.items():
        tr = EventTracker(shape, device=device)
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(shape[0], generator=g)[:b].to(device)
        preds = torch.randint(0, 6, (b, *shape[1:]), generator=g).to(device)
        targets = torch.randint(0, 6, (b, *shape[1:]), generator=g).to(device)
        tr.update(idx, preds, targets, epoch=0)
        sync(device)
        times = []
        for r in range(repeats):
            start = time.perf_counter()
            for k in range(10):
                tr.update(idx, (preds + k) % 6, targets, epoch=r + 1)
            sync(device)
            times.append((time.perf_counter() - start) / 10)
        elements = b * int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else b
        out.append((f"{name} ({device.type})", elements / statistics.median(times)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=10_000, help="pool size for (a)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats for (a) and (c)")
    parser.add_argument("--sections", type=int, default=1_000, help="sections of 255x701 for (b)")
    parser.add_argument("--updates", type=int, default=3, help="updates run on the (b) trackers")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda for (a)")
    args = parser.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    print(f"\n(a) pool pass with / without tracking: {args.images} images 28x28, small-cnn, {device}")
    a = bench_pass_overhead(args.images, args.repeats, device)
    print(f"    {'without (s)':>12} {'with (s)':>10} {'ratio':>7}  target")
    print(f"    {a['plain_s']:12.3f} {a['tracked_s']:10.3f} {a['ratio']:7.3f}  <= 1.03")

    print(f"\n(b) tracker memory over {args.sections} sections of 255x701, 6 classes")
    print(f"    {'layout':<12} {'total MiB':>10} {'bytes/pixel':>12} {'updates (s)':>12}  target")
    for name, nbytes, bpp, seconds in bench_memory(args.sections, 255, 701, args.updates):
        print(f"    {name:<12} {nbytes / 2**20:10.1f} {bpp:12.3f} {seconds:12.3f}  <= 4 (reference code: 32)")

    print("\n(c) update throughput")
    print(f"    {'case':<36} {'elements/s':>14}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        for name, rate in bench_throughput(dev, args.repeats):
            print(f"    {name:<36} {rate:14.3e}")


if __name__ == "__main__":
    main()
