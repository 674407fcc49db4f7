"""Opening image files with Pillow: a size limit with a clear error, and a documented mapping to 8 bits.

Every image file the project reads (the ``image-folder`` dataset, labelling projects' images and masks)
goes through :func:`open_image`, and images (not masks) through :func:`to_8bit`.

Size limit
    Pillow refuses images of more than about 179 million pixels (twice ``PIL.Image.MAX_IMAGE_PIXELS``) as a
    possible decompression bomb. :func:`open_image` keeps that limit and turns Pillow's error into one that
    names the file, its size and the limit. A trusted larger file is read after raising the limit with the
    environment variable ``FORGETTING_MAX_IMAGE_PIXELS`` (a pixel count, or ``none`` for no limit).

Intensities (:func:`to_8bit`), per image, by a fixed rule (never stretched by the image's own values, so
every image of a dataset maps the same way):

* 8-bit images (``L``, ``P``, ``RGB``, ``RGBA``, ``CMYK``, ...) as stored; 1-bit images become 0/255;
* 16-bit grayscale (``I;16`` and variants, and a PNG that Pillow opens as ``I``): the full range 0..65535
  maps linearly onto 0..255 (``round(v * 255 / 65535)``). Data that uses only part of the range (12-bit
  samples stored in 16 bits) looks dark; rescale it before if that matters;
* 32-bit float (``F``, e.g. a float TIFF) with every value in [0, 1]: scaled by 255 and rounded; any value
  outside [0, 1] (or NaN) is refused, naming the file, the mode, the dtype and the value range;
* 32-bit integer (``I`` other than PNG) is refused: its range is unknown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from forgetting.exceptions import ConfigError, DatasetFormatError, ForgettingError

__all__ = ["MAX_PIXELS_ENV", "max_image_pixels", "open_image", "to_8bit"]

#: Environment variable that sets the largest image (in pixels) :func:`open_image` reads; ``none``: no limit.
MAX_PIXELS_ENV = "FORGETTING_MAX_IMAGE_PIXELS"

_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "P;L", "I", "F"} | _UINT16_MODES)
_LUT_16_TO_8 = np.rint(np.arange(65536, dtype=np.float64) * (255.0 / 65535.0)).astype(np.uint8)


def max_image_pixels() -> int | None:
    """The largest image :func:`open_image` reads: ``$FORGETTING_MAX_IMAGE_PIXELS``, else Pillow's own
    limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``); ``None`` means no limit.

    Raises:
        ConfigError: the environment variable is neither a positive integer nor ``none``.
    """
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None:
        from PIL import Image

        base = Image.MAX_IMAGE_PIXELS
        return None if base is None else 2 * int(base)
    text = raw.strip().lower()
    if text in ("none", "unlimited"):
        return None
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"${MAX_PIXELS_ENV} must be a positive pixel count or 'none', got {raw!r}")
    return value


@contextlib.contextmanager
def open_image(
    path: str | os.PathLike[str],
    *,
    where: str | None = None,
    error: type[ForgettingError] = DatasetFormatError,
) -> Iterator[Any]:
    """``PIL.Image.open(path)`` as a context manager, with errors that name the file.

    Args:
        path: the image file.
        where: how to name it in messages (default: the path).
        error: the exception to raise.

    Raises:
        error: the file cannot be read as an image, or has more pixels than :func:`max_image_pixels`
            (the message gives the limit and how to raise it).
    """
    from PIL import Image

    where = where or str(path)
    limit = max_image_pixels()
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # checked below, with a message that says how to raise the limit
    try:
        img = Image.open(path)
    except OSError as exc:
        raise error(f"{where}: cannot read image ({exc})") from None
    except (ValueError, Image.DecompressionBombError) as exc:
        raise error(f"{where}: cannot read image ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    with img:
        width, height = img.size
        if limit is not None and width * height > limit:
            raise error(
                f"{where}: {width}x{height} = {width * height:,} pixels is more than the limit of {limit:,} "
                f"pixels per image (Pillow's guard against decompression bombs). If the file is trusted, "
                f"raise the limit: set the environment variable {MAX_PIXELS_ENV}={width * height} (or "
                "'none' for no limit); or downscale the image"
            )
        yield img


def to_8bit(img: Any, where: str, *, error: type[ForgettingError] = DatasetFormatError) -> Any:
    """An 8-bit ``L`` (grayscale) or ``RGB`` copy of a Pillow image, by the rule of the module docstring.

    Raises:
        error: a float image with values outside [0, 1] (or NaN), or a 32-bit integer image; the message
            names the file, its mode and dtype, and the fix.
    """
    from PIL import Image

    mode = img.mode
    if mode in _UINT16_MODES or (mode == "I" and img.format == "PNG"):
        values = np.asarray(img)
        if values.dtype.kind == "i" and values.size and (values.min() < 0 or values.max() > 65535):
            raise error(
                f"{where}: mode {mode} ({values.dtype}) holds values outside 0..65535; save it as an 8-bit "
                "or 16-bit grayscale image"
            )
        return Image.fromarray(_LUT_16_TO_8[values.astype(np.uint16, copy=False)], "L")
    if mode == "I" or mode.startswith("I;"):
        dtype = np.asarray(img).dtype
        raise error(
            f"{where}: a 32-bit integer image (mode {mode}, {dtype}): the range of its values is unknown, "
            "so it cannot be mapped to 8 bits. Save it as an 8-bit or 16-bit grayscale image, or as a float "
            "image with values in [0, 1]"
        )
    if mode == "F":
        values = np.asarray(img)
        finite = bool(np.isfinite(values).all())
        lo = float(np.nanmin(values)) if values.size else 0.0
        hi = float(np.nanmax(values)) if values.size else 0.0
        if not finite or lo < 0.0 or hi > 1.0:
            found = f"values in [{lo:g}, {hi:g}]" + ("" if finite else " and NaN or inf")
            raise error(
                f"{where}: a float image (mode F, {values.dtype}) with {found}: float images are read as "
                "intensities in [0, 1] (scaled by 255). Scale it to [0, 1], or save it as an 8-bit or "
                "16-bit image"
            )
        return Image.fromarray(np.rint(values * 255.0).astype(np.uint8), "L")
    return img.convert("L" if mode in _GRAY_MODES else "RGB")
