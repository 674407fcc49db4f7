"""Where a labelling project's images come from, and how a label file's references map to its items.

Two kinds of source:

* ``folder``: every image file under a directory (recursively; hidden files and folders skipped). An item's
  id is its path relative to the folder, with ``/`` separators: ``cats/0001.png``.
* ``arrays``: one ``.npz`` (key ``images``, or its only array) or ``.npy`` file of images ``[N, H, W]``,
  ``[N, H, W, C]`` or ``[N, C, H, W]``. An item's id is its row index as a string: ``"17"``.

Images are read with the same readers as the ``image-folder`` and ``arrays`` datasets
(:func:`forgetting.data.user_formats.read_image_files`, :func:`forgetting.data.formats.to_uint8_images`).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch

from forgetting._csv import unquoted
from forgetting._io import NUMPY_READ_ERRORS, describe_numpy_error
from forgetting.data.formats import to_uint8_images
from forgetting.data.image_files import open_image
from forgetting.data.user_formats import read_image_files
from forgetting.exceptions import DatasetFormatError, DatasetNotFoundError, ProjectError

__all__ = ["IMAGE_SUFFIXES", "ImageSource", "ItemIndex", "MaskIndex"]

logger = logging.getLogger(__name__)

#: File suffixes (lower case) that a ``folder`` source reads as images.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ARRAY_SUFFIXES: tuple[str, ...] = (".npz", ".npy")

SourceKind = Literal["folder", "arrays"]

#: How a labelling project's user resizes folder images of mixed sizes (ends the error message).
RESIZE_HINT = (
    "resize them all to one size: `forgetting init-project ... --size HEIGHT,WIDTH` (Python: "
    "init_project(..., size=(height, width))), or in an existing project set `size = [height, width]` under "
    "[images] in forgetting.toml"
)

# Label Studio prefixes uploaded files with 8 hex digits and a dash: "1a2b3c4d-cat_001.png".
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


@dataclass(frozen=True)
class ImageSource:
    """The images of a labelling project.

    Attributes:
        kind: ``"folder"`` or ``"arrays"``.
        path: the folder, or the ``.npz``/``.npy`` file (absolute).
        key: the array name inside an ``.npz`` (default: ``images``, else its only array).
        size: ``(height, width)`` to resize folder images to (needed when their sizes differ).
        layout: ``auto``, ``NCHW`` or ``NHWC`` for arrays (see
            :func:`forgetting.data.formats.to_uint8_images`).
    """

    kind: SourceKind
    path: Path
    key: str | None = None
    size: tuple[int, int] | None = None
    layout: str = "auto"

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        key: str | None = None,
        size: tuple[int, int] | None = None,
        layout: str = "auto",
    ) -> ImageSource:
        """A source for ``path``: a folder of images, or an ``.npz``/``.npy`` file.

        Raises:
            DatasetNotFoundError: ``path`` does not exist.
            ProjectError: ``path`` is a file of another kind.
        """
        p = Path(path).expanduser().resolve()
        if not p.exists():
            raise DatasetNotFoundError(
                f"images {p} do not exist; pass a folder of image files or an .npz/.npy file of images"
            )
        if p.is_dir():
            return cls("folder", p, None, size, layout)
        if p.suffix.lower() not in ARRAY_SUFFIXES:
            raise ProjectError(
                f"images {p}: expected a folder of image files ({', '.join(IMAGE_SUFFIXES)}) or an "
                f".npz/.npy file of images, got a {p.suffix or 'suffix-less'} file"
            )
        return cls("arrays", p, key, size, layout)

    # ------------------------------------------------------------------------------------------ listing

    def item_ids(self) -> list[str]:
        """Every item id, in the source's order (sorted paths, or row order)."""
        if self.kind == "folder":
            return self._folder_files()
        return [str(i) for i in range(self._array_length())]

    def _folder_files(self) -> list[str]:
        if not self.path.is_dir():
            raise DatasetNotFoundError(
                f"image folder {self.path} does not exist (moved? edit forgetting.toml)"
            )
        ids = []
        for file in self.path.rglob("*"):
            rel = file.relative_to(self.path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                ids.append(rel.as_posix())
        if not ids:
            raise DatasetFormatError(
                f"image folder {self.path} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        return sorted(ids)

    def _raw_array(self) -> tuple[np.ndarray, str]:
        if not self.path.is_file():
            raise DatasetNotFoundError(f"image file {self.path} does not exist (moved? edit forgetting.toml)")
        try:
            if self.path.suffix.lower() == ".npy":
                return np.load(self.path, allow_pickle=False), str(self.path)
            with np.load(self.path, allow_pickle=False) as archive:
                names = list(archive.files)
                key = self.key or ("images" if "images" in names else (names[0] if len(names) == 1 else None))
                if key is None or key not in names:
                    wanted = repr(self.key) if self.key else "'images' (or a single array)"
                    raise DatasetFormatError(
                        f"{self.path}: no array {wanted}; arrays found: {', '.join(names) or 'none'}; "
                        "pass the array name as `key`"
                    )
                return archive[key], f"{self.path}[{key!r}]"
        except DatasetFormatError:
            raise
        except NUMPY_READ_ERRORS as exc:
            raise DatasetFormatError(
                f"{self.path}: not a readable numpy file ({describe_numpy_error(exc)})"
            ) from None

    def _array_length(self) -> int:
        array, where = self._raw_array()
        if array.ndim not in (3, 4):
            raise DatasetFormatError(f"{where}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W]")
        return int(array.shape[0])

    # ------------------------------------------------------------------------------------------ reading

    def load(self) -> tuple[list[str], torch.Tensor]:
        """Every item id and image.

        Returns:
            ``(ids, images)``: ``ids[i]`` names row i of ``images``, uint8 ``[N, C, H, W]`` on the CPU.
        """
        if self.kind == "folder":
            ids = self._folder_files()
            images = read_image_files([self.path / i for i in ids], self.size, resize_hint=RESIZE_HINT)
            return ids, images
        array, where = self._raw_array()
        uint8_images, note = to_uint8_images(array, source=where, layout=self.layout)
        logger.debug("%s: %s", where, note)
        return [str(i) for i in range(uint8_images.shape[0])], torch.from_numpy(uint8_images)

    def image_sizes(self, items: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``(height, width)`` of each item as stored (folder images before ``size`` resizes them).

        Raises:
            DatasetFormatError: an image file cannot be read.
        """
        if self.kind == "arrays":
            _, images = self.load()
            h, w = (int(v) for v in images.shape[-2:])
            return {item: (h, w) for item in items}
        sizes = {}
        for item in items:
            with open_image(self.path / item) as img:
                width, height = img.size
            sizes[item] = (int(height), int(width))
        return sizes

    def media_file(self, item: str) -> Path | None:
        """The image file of ``item`` when the source has one (folders), else ``None`` (arrays)."""
        return self.path / item if self.kind == "folder" else None

    def media_name(self, item: str, n_items: int) -> str:
        """The relative path under which ``item`` is shown to annotators.

        A folder item is its own relative path; an array row is written as ``<row, zero-padded>.png``.
        """
        if self.kind == "folder":
            return item
        return f"{int(item):0{max(len(str(n_items - 1)), 1)}d}.png"


class ItemIndex:
    """Maps the references a label file uses for an image to the project's item ids.

    A reference may be the item id itself, a path that ends with it (an absolute path, a Label Studio
    ``/data/local-files/?d=...`` URL, a path relative to another root), the name shown to annotators (the
    written PNG of an array row), or, if unique, a file name with Label Studio's upload prefix
    (``1a2b3c4d-``). A reference with the ``'`` that the project's CSVs put in front of a name a spreadsheet
    would run as a formula (``'=a.png``, see :mod:`forgetting._csv`) resolves as the name without it.
    """

    def __init__(self, ids: Sequence[str], media_names: Iterable[str] | None = None) -> None:
        self.ids = list(ids)
        self._exact: dict[str, str] = {i: i for i in self.ids}
        if media_names is not None:
            for item, name in zip(self.ids, media_names, strict=True):
                self._exact.setdefault(name, item)
        by_base: dict[str, list[str]] = {}
        for key, item in self._exact.items():
            by_base.setdefault(PurePosixPath(key).name, []).append(item)
        self._by_base = {b: sorted(set(items)) for b, items in by_base.items()}

    def __contains__(self, item: object) -> bool:
        return item in self._exact

    def __len__(self) -> int:
        return len(self.ids)

    def resolve(self, ref: str) -> str | None:
        """The item id ``ref`` refers to, or ``None``."""
        ref = ref.strip()
        if ref in self._exact:
            return self._exact[ref]
        plain = unquoted(ref)
        if plain is not None:
            found = self.resolve(plain)
            if found is not None:
                return found
        if ref.isdigit() and str(int(ref)) in self._exact:  # a zero-padded row number
            return self._exact[str(int(ref))]
        text = ref
        if "?" in text:  # a URL with the path in a query parameter (Label Studio local files: ?d=...)
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(text).query)
            if query.get("d"):
                text = query["d"][0]
        text = urllib.parse.unquote(text).replace("\\", "/")
        if "://" in text:
            text = urllib.parse.urlsplit(text).path
        parts = [p for p in text.split("/") if p not in ("", ".")]
        for start in range(len(parts)):
            candidate = "/".join(parts[start:])
            if candidate in self._exact:
                return self._exact[candidate]
        if parts:
            base = _UPLOAD_PREFIX.sub("", parts[-1])
            matches = self._by_base.get(base, [])
            if len(matches) == 1:
                return matches[0]
        return None


def _strip_suffix(name: str) -> str:
    return PurePosixPath(name).with_suffix("").as_posix() if PurePosixPath(name).suffix else name


class MaskIndex:
    """Maps mask names to item ids, and names the file each item's mask is returned and stored under.

    A mask is named after its image without the extension: ``inline/003`` (from ``inline/003.png`` or
    ``inline/003.npy``) is the mask of the item ``inline/003.png`` (or ``.jpg``...). Array rows are also
    named by their zero-padded PNG names (``017``). Lookups go through an :class:`ItemIndex` of these
    stems, so a path with extra leading folders or a unique base name works too. Two images that differ only
    in their extension (``a.png`` and ``a.jpg``) have no common stem: their masks are named after the full
    image name (``a.png.png``).
    """

    def __init__(self, ids: Sequence[str], media_names: Sequence[str]) -> None:
        by_stem: dict[str, list[str]] = {}
        for item in ids:
            by_stem.setdefault(_strip_suffix(item), []).append(item)
        #: stems shared by several items: stem -> those items.
        self.ambiguous = {s: sorted(items) for s, items in by_stem.items() if len(items) > 1}
        self._stem: dict[str, str] = {}  # item -> the stem its mask is named by
        for item, media in zip(ids, media_names, strict=True):
            stem = _strip_suffix(media)
            self._stem[item] = item if _strip_suffix(item) in self.ambiguous else stem
        unique = [i for i in ids if _strip_suffix(i) not in self.ambiguous]
        self._item_of = {_strip_suffix(i): i for i in unique}
        self._index = ItemIndex(list(self._item_of), [self._stem[i] for i in unique])

    def resolve(self, ref: str) -> str | None:
        """The item whose mask ``ref`` (a mask name without its extension) is, or ``None``."""
        found = self._index.resolve(ref)
        return None if found is None else self._item_of[found]

    def stem(self, item: str) -> str:
        """The name (without extension) of ``item``'s mask file: ``inline/003`` for ``inline/003.png``."""
        return self._stem[item]
