"""Lazy pools: memory and speed of an observation pass over a user's ``torch`` Dataset (issue 16).

(a) Memory: one observation pass (``ObservationCallback`` over a ``DatasetSource``) over a memory-mapped pool
    of ``--pool`` images of 3x32x32 stored on disk as one ``.npy`` (written once, seeded, into ``--dir``),
    in a fresh process. Prints the peak RSS above the process's baseline (taken after the imports, the model
    and the source are built, right before the pass) and, sampled during the pass, the peak of the
    anonymous RSS (heap) above its baseline: the memory the library allocates; the rest is the page cache
    of the memory map, which the kernel can drop. Target: peak RSS < 1 GB above the baseline.
(b) Throughput: the same pass over the first ``--images`` images through the Dataset path and through the
    in-memory uint8 path, interleaved, ``--repeats`` times each; median images/s and their ratio (target
    >= 0.8), for DataLoader workers 0 and 1.

Model: ``small-cnn`` (width 8, 3 input channels, 10 classes), eval mode, CPU, the default inference batch
(256 for this model and input since issue 20; 1024 before).
Run: ``python benchmarks/lazy_pool.py [--pool 200000 --images 20000 --repeats 3 --dir /tmp/forgetting-lazy]``
(about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from forgetting.data import DatasetSource
from forgetting.inference import default_batch_size
from forgetting.models import build_model
from forgetting.observe import ObservationCallback

SHAPE = (3, 32, 32)


class MemmapImages(Dataset):
    """A user's Dataset over a ``.npy`` opened with ``mmap_mode="r"``: items ``(uint8 [3, 32, 32], 0)``.

    ``__getitems__`` (the batched fetch protocol of ``torch.utils.data``) reads a batch with one fancy-index
    slice of the map instead of one Python call per item.
    """

    def __init__(self, path: Path, limit: int | None = None) -> None:
        self.path = path
        self.array = np.load(path, mmap_mode="r")
        self.n = int(self.array.shape[0]) if limit is None else min(limit, int(self.array.shape[0]))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.array(self.array[i])), 0

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        block = torch.from_numpy(np.ascontiguousarray(self.array[np.asarray(indices)]))
        return [(block[k], 0) for k in range(block.shape[0])]


def write_pool(path: Path, n: int) -> None:
    """Seeded uint8 images ``[n, 3, 32, 32]`` written in chunks through ``open_memmap``."""
    if path.exists() and np.load(path, mmap_mode="r").shape == (n, *SHAPE):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *SHAPE))
    rng = np.random.default_rng(0)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        out[start:stop] = rng.integers(0, 256, (stop - start, *SHAPE), dtype=np.uint8)
    out.flush()
    del out


def _status() -> dict[str, int]:
    """VmRSS, VmHWM and RssAnon of this process in bytes (from /proc/self/status)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            out[key] = int(value.split()[0]) * 1024
    return out


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small-cnn", 3, 10, seed=0, width=8).eval()


def memory_child(path: Path) -> None:
    """Runs in a fresh process: one pass over the whole pool, prints a JSON line of byte counts."""
    torch.set_num_threads(1)
    net = model()
    source = DatasetSource(MemmapImages(path), has_targets=False)
    observer = ObservationCallback(source, None, name="pool")
    base = _status()
    peak_anon = base["RssAnon"]
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_anon
        while not done.is_set():
            peak_anon = max(peak_anon, _status()["RssAnon"])
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    observer.observe(net, epoch=1)
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    end = _status()
    print(
        json.dumps(
            {
                "n": len(source),
                "seconds": seconds,
                "baseline_rss": base["VmRSS"],
                "peak_rss": end["VmHWM"],
                "baseline_anon": base["RssAnon"],
                "peak_anon": max(peak_anon, end["RssAnon"]),
                "tracker_bytes": observer.tracker.nbytes,
            }
        )
    )


def throughput(path: Path, n: int, repeats: int) -> None:
    torch.set_num_threads(1)
    net = model()
    dataset = MemmapImages(path, limit=n)
    images = torch.from_numpy(np.array(dataset.array[:n]))
    runs: dict[str, list[float]] = {"in-memory": [], "dataset, 0 workers": [], "dataset, 1 worker": []}

    def callback(kind: str) -> ObservationCallback:
        if kind == "in-memory":
            return ObservationCallback(images, None)
        workers = 0 if "0" in kind else 1
        return ObservationCallback(DatasetSource(dataset, has_targets=False, num_workers=workers), None)

    for kind in runs:  # warm-up: kernels, worker start, page cache
        callback(kind).observe(net, epoch=1)
    for _ in range(repeats):
        for kind in runs:
            cb = callback(kind)
            t0 = time.perf_counter()
            cb.observe(net, epoch=1)
            runs[kind].append(n / (time.perf_counter() - t0))
    base = statistics.median(runs["in-memory"])
    print(
        f"\n(b) throughput of one observation pass over {n} images "
        f"(1 torch thread, batch {default_batch_size(torch.device('cpu'), SHAPE, net)}, median of {repeats})"
    )
    print(f"{'path':<22}{'images/s':>12}{'ratio':>8}")
    for kind, values in runs.items():
        rate = statistics.median(values)
        print(f"{kind:<22}{rate:>12.0f}{rate / base:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/forgetting-lazy"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        memory_child(args.child)
        return
    path = args.dir / f"pool-{args.pool}.npy"
    t0 = time.perf_counter()
    write_pool(path, args.pool)
    print(
        f"pool: {path} ({path.stat().st_size / 2**20:.0f} MiB on disk, "
        f"ready in {time.perf_counter() - t0:.0f}s)"
    )
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=True
    ).stdout
    stats = json.loads(out.strip().splitlines()[-1])
    mib = 2**20
    above = (stats["peak_rss"] - stats["baseline_rss"]) / mib
    anon = (stats["peak_anon"] - stats["baseline_anon"]) / mib
    print(
        f"\n(a) memory of one observation pass over {stats['n']} memory-mapped images "
        f"({stats['seconds']:.0f}s)"
    )
    print(f"baseline RSS {stats['baseline_rss'] / mib:.0f} MiB; peak RSS {stats['peak_rss'] / mib:.0f} MiB")
    print(
        f"peak RSS above baseline: {above:.0f} MiB (target < 1024 MiB: {'ok' if above < 1024 else 'MISSED'})"
    )
    print(
        f"peak anonymous (heap) RSS above baseline: {anon:.0f} MiB; "
        f"tracker state {stats['tracker_bytes'] / mib:.1f} MiB"
    )
    throughput(path, args.images, args.repeats)


if __name__ == "__main__":
    main()
