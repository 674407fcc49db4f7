"""How long data takes: cold dataset loads and corrupting 10,000 28x28 images with each corruption.

Run: ``python benchmarks/data_loading.py [--device cpu|cuda] [--n 10000] [--repeats 3]``

Cold loads run each in a fresh Python process, so nothing is cached; the time is split into importing
``forgetting.data`` (mostly torch) and the load itself. Corruption times are the best of ``--repeats``
runs on real MNIST digits (grayscale) and the same digits coloured (RGB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

import forgetting.data as fd

_COLD = """
import json, time
t0 = time.perf_counter()
import forgetting.data as fd
t1 = time.perf_counter()
dataset = fd.load_dataset({name!r})
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "n": len(dataset.split("all"))}}))
"""


def cold_load(name: str) -> dict[str, float]:
    """Import + load ``name`` in a fresh interpreter; returns the seconds of each and the sample count."""
    out = subprocess.run(
        [sys.executable, "-c", _COLD.format(name=name)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def corruption_times(images: torch.Tensor, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds to corrupt ``images`` at severity 3, per applicable corruption."""
    times: dict[str, float] = {}
    channels = int(images.shape[1])
    for name in fd.CORRUPTIONS:
        if name == "saturate" and channels != 3:
            continue
        fd.corrupt(images[:64], name, 3, seed=0)  # warm-up (kernels, CUDA context)
        best = float("inf")
        for repeat in range(repeats):
            _sync(images.device)
            start = time.perf_counter()
            fd.corrupt(images, name, 3, seed=repeat)
            _sync(images.device)
            best = min(best, time.perf_counter() - start)
        times[name] = best
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=10_000, help="images to corrupt")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)

    print("cold load (fresh process)")
    print(f"  {'dataset':14s} {'import s':>9s} {'load s':>8s} {'samples':>8s}")
    for name in ("mnist-5k", "digits"):
        result = cold_load(name)
        print(f"  {name:14s} {result['import_s']:9.2f} {result['load_s']:8.2f} {int(result['n']):8d}")

    digits = fd.load_dataset("mnist-5k").split("all").images
    gray = digits.repeat((args.n + len(digits) - 1) // len(digits), 1, 1, 1)[: args.n]
    g = torch.Generator().manual_seed(0)
    ink = gray.float() / 255
    colour = torch.rand(len(gray), 3, 1, 1, generator=g)
    background = torch.rand(len(gray), 3, 1, 1, generator=g) * 0.5
    rgb = ((ink * colour + (1 - ink) * background) * 255).round().to(torch.uint8)
    gray_times = corruption_times(gray.to(device), args.repeats)
    rgb_times = corruption_times(rgb.to(device), args.repeats)

    print(f"corrupt {args.n} 28x28 images, severity 3, device {device} (best of {args.repeats})")
    print(f"  {'corruption':18s} {'gray s':>8s} {'rgb s':>8s}")
    for name in fd.CORRUPTIONS:
        gray_s = f"{gray_times[name]:8.3f}" if name in gray_times else f"{'-':>8s}"
        print(f"  {name:18s} {gray_s} {rgb_times[name]:8.3f}")


if __name__ == "__main__":
    main()
