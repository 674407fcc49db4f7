"""A real segmentation set from a package registry: the DSB 2018 nuclei image in the ``stardist`` wheel.

``stardist`` (BSD-3-Clause; PyPI) bundles ``stardist/data/images/img2d.tif`` and ``mask2d.tif``: one
512 x 512 fluorescence microscopy image (uint16, values 0..235) and its instance mask (125 nuclei), "from the
2018 kaggle DSB challenge" (Caicedo et al., Nature Methods 16, 2019; the DSB 2018 / BBBC038 images are
released under CC0). This module turns it into an ``arrays`` dataset (one ``.npz`` with ``train_images``,
``train_masks``, ``test_images``, ``test_masks``, ``classes``) with three semantic classes, the usual
three-class formulation of nucleus segmentation:

* ``background`` (about 80 % of the pixels);
* ``nucleus`` (the inside of a nucleus, about 15 %);
* ``boundary`` (nucleus pixels next to the background or to another nucleus, 8-neighbourhood; about 5 %):
  thin, rare and decided by local texture, the kind of class that forgetting-guided augmentation claims to
  help.

The image is cut into ``tile x tile`` tiles (64 by default: 64 tiles); the left half of the image is the
training set, the right half the test set (32 tiles each), so train and test never share a nucleus. The
intensity is scaled to uint8 with one clip (the 99.5th percentile of the training half).

Where the files come from, first found: ``--wheel PATH`` (a downloaded ``stardist-*.whl``), an installed
``stardist`` (located without importing it, so its TensorFlow requirements are not needed), or
``pip download --no-deps stardist==0.9.2`` into a temporary folder (needs the package registry). Tests
never download: they call :func:`nuclei_arrays` on a mask they make.

Run: ``python benchmarks/nuclei_data.py --out runs/data/dsb2018-nuclei.npz [--wheel stardist-0.9.2-....whl]``
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

CLASSES: tuple[str, ...] = ("background", "nucleus", "boundary")
STARDIST_VERSION = "0.9.2"
_MEMBERS = ("stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif")


def semantic_from_instances(instances_H_W: np.ndarray) -> np.ndarray:
    """Three classes from an instance mask (0 = background): 0 background, 1 nucleus, 2 boundary.

    A nucleus pixel is ``boundary`` when one of its 8 neighbours (inside the image) has another label
    (the background or another nucleus). Returns uint8 ``[H, W]``.
    """
    labels = np.asarray(instances_H_W)
    if labels.ndim != 2:
        raise ValueError(f"an instance mask must be [H, W], got shape {labels.shape}")
    footprint = np.ones((3, 3), bool)
    high = ndimage.maximum_filter(labels, footprint=footprint, mode="nearest")
    low = ndimage.minimum_filter(labels, footprint=footprint, mode="nearest")
    out = (labels > 0).astype(np.uint8)
    out[(labels > 0) & (high != low)] = 2
    return out


def tiles(array_H_W: np.ndarray, tile: int) -> np.ndarray:
    """Non-overlapping ``tile x tile`` tiles, row-major, ``[T, tile, tile]`` (a ragged edge is cut)."""
    h, w = array_H_W.shape[:2]
    rows, cols = h // tile, w // tile
    cut = array_H_W[: rows * tile, : cols * tile]
    return cut.reshape(rows, tile, cols, tile).swapaxes(1, 2).reshape(rows * cols, tile, tile)


def nuclei_arrays(
    image_H_W: np.ndarray, instances_H_W: np.ndarray, *, tile: int = 64
) -> dict[str, np.ndarray]:
    """The ``arrays`` dataset: left half -> train tiles, right half -> test tiles.

    Args:
        image_H_W: the intensity image (any numeric dtype).
        instances_H_W: integer instance labels, 0 = background.
        tile: the tile side; the image width must hold at least two tiles.

    Returns:
        ``train_images``/``test_images`` uint8 ``[T, tile, tile]``, ``train_masks``/``test_masks`` uint8
        ``[T, tile, tile]`` (:data:`CLASSES` ids) and ``classes`` (str ``[3]``).
    """
    image = np.asarray(image_H_W, dtype=np.float64)
    if image.shape != np.shape(instances_H_W) or image.ndim != 2:
        raise ValueError(f"image {image.shape} and mask {np.shape(instances_H_W)} must be one [H, W] shape")
    h, w = image.shape
    half = (w // 2) // tile * tile
    if half < tile or h < tile:
        raise ValueError(f"a {h} x {w} image holds no {tile} x {tile} tile in each half")
    semantic = semantic_from_instances(instances_H_W)
    left = slice(0, half)
    right = slice(w - half, w)
    lo = float(image[:, left].min())
    hi = float(np.percentile(image[:, left], 99.5))
    scaled = np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    as_uint8 = np.round(scaled * 255.0).astype(np.uint8)
    return {
        "train_images": tiles(as_uint8[:, left], tile),
        "train_masks": tiles(semantic[:, left], tile),
        "test_images": tiles(as_uint8[:, right], tile),
        "test_masks": tiles(semantic[:, right], tile),
        "classes": np.array(CLASSES),
    }


def _read_tif(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.array(im)


def _installed_dir() -> Path | None:
    spec = importlib.util.find_spec("stardist")  # does not run stardist/__init__.py
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).parent
    return root if all((root / m).is_file() for m in _MEMBERS) else None


def read_stardist_nuclei(wheel: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The image and instance mask of ``stardist.data.test_image_nuclei_2d`` (see the module docstring)."""
    if wheel is None and (installed := _installed_dir()) is not None:
        return tuple(_read_tif((installed / m).read_bytes()) for m in _MEMBERS)  # type: ignore[return-value]
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp]
            subprocess.run([*cmd, f"stardist=={STARDIST_VERSION}"], check=True)
            wheel = next(Path(tmp).glob("stardist-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            image, mask = (_read_tif(archive.read(m)) for m in _MEMBERS)
    return image, mask


def write_nuclei_npz(out: Path, *, wheel: Path | None = None, tile: int = 64) -> Path:
    """Write the ``arrays`` ``.npz`` (see :func:`nuclei_arrays`) to ``out`` and return it."""
    image, mask = read_stardist_nuclei(wheel)
    arrays = nuclei_arrays(image, mask, tile=tile)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/data/dsb2018-nuclei.npz"))
    parser.add_argument("--wheel", type=Path, default=None, help="a downloaded stardist wheel")
    parser.add_argument("--tile", type=int, default=64)
    args = parser.parse_args(argv)
    path = write_nuclei_npz(args.out, wheel=args.wheel, tile=args.tile)
    with np.load(path) as z:
        shares = np.bincount(z["train_masks"].ravel(), minlength=3) / z["train_masks"].size
        print(
            f"{path}: train {z['train_images'].shape}, test {z['test_images'].shape}, train class shares "
            + ", ".join(f"{c} {s:.3f}" for c, s in zip(CLASSES, shares, strict=True))
        )


if __name__ == "__main__":
    main()
