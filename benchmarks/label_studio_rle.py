"""Label Studio's brush RLE: our codec (forgetting.annotate.rle) against the SDK's converter
(label_studio_sdk.converter.brush), on masks the size of an F3 inline section (255 x 701 pixels).

For each mask kind it checks the round trip both ways (ours -> SDK decoder, SDK encoder -> ours, bit-exact)
and prints the median time of 3 calls of each encoder and decoder. Kinds: `facies` (the class-1 region of a
synthetic seismic section resized to 255 x 701: a few long boundaries, the common case), `blob` (one
rectangle), and `noise` (independent random pixels: the worst case, one run per pixel).

    python benchmarks/label_studio_rle.py          # needs label-studio-sdk (installed by `make env`)

Without the SDK it checks our round trip only and says so.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from forgetting.annotate import rle

H, W = 255, 701


def _median_seconds(fn: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _masks() -> dict[str, np.ndarray]:
    import torch
    import torch.nn.functional as F

    from forgetting.data import load_dataset

    data = load_dataset("seismic-synthetic", inlines=16, crosslines=64, depth=64, seed=0)
    section = data.train.targets[0].float()[None, None]
    facies = F.interpolate(section, size=(H, W), mode="nearest")[0, 0].to(torch.int64).numpy() == 1
    blob = np.zeros((H, W), bool)
    blob[60:200, 100:600] = True
    noise = np.random.default_rng(0).random((H, W)) < 0.5
    return {"facies": facies, "blob": blob, "noise": noise}


def main() -> None:
    try:
        from label_studio_sdk.converter import brush
    except ImportError:
        brush = None
        print("label-studio-sdk is not installed: our round trip only (make env installs the SDK)")
    head = ["RLE bytes", "encode ours", "encode SDK", "decode ours", "decode SDK"]
    print(f"{'mask':8} " + " ".join(f"{h:>12}" for h in head) + "  round trip")
    for name, mask in _masks().items():
        ours = rle.encode_mask(mask)
        assert np.array_equal(rle.decode_alpha(ours, H, W), mask)
        t_enc = _median_seconds(lambda mask=mask: rle.encode_mask(mask))
        t_dec = _median_seconds(lambda ours=ours: rle.decode_alpha(ours, H, W))
        if brush is None:
            cells = [str(len(ours)), f"{t_enc * 1e3:.1f}ms", "-", f"{t_dec * 1e3:.1f}ms", "-"]
            print(f"{name:8} " + " ".join(f"{c:>12}" for c in cells) + "  ours ok")
            continue
        layer = mask.astype(np.uint8) * 255
        theirs = brush.mask2rle(layer)
        assert np.array_equal(np.reshape(brush.decode_rle(ours), [H, W, 4])[:, :, 3], layer)  # ours -> SDK
        assert np.array_equal(rle.decode_alpha(theirs, H, W), mask)  # SDK -> ours
        assert ours == theirs[: len(ours)] and not any(theirs[len(ours) :])  # same bytes (SDK may pad one)
        s_enc = _median_seconds(lambda layer=layer: brush.mask2rle(layer))
        s_dec = _median_seconds(lambda ours=ours: brush.decode_rle(ours))
        cells = [str(len(ours)), *(f"{t * 1e3:.1f}ms" for t in (t_enc, s_enc, t_dec, s_dec))]
        print(f"{name:8} " + " ".join(f"{c:>12}" for c in cells) + "  identical both ways")


if __name__ == "__main__":
    main()
