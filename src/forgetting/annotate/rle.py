"""Label Studio's brush RLE: the run-length code of ``BrushLabels`` masks, encoded and decoded with numpy.

Label Studio stores a brush region as the RGBA pixels of an image-sized layer (``[H, W, 4]`` uint8,
row-major), packed with the ``rle-pack`` code of thi.ng/umbrella (the JavaScript package its editor uses):

* a 53-bit header: the number of values (32 bits), the word size minus one (5 bits: 8-bit words), and the
  four run-length sizes minus one (4 bits each: 3, 4, 8 and 16 bits);
* then chunks, each: one flag bit (1: a run of one repeated word; 0: a literal sequence of words), two bits
  choosing one of the four sizes, the chunk's length minus one in that many bits, then the repeated word (a
  run) or every word of the sequence (a literal);
* zero bits up to a whole byte. The RLE is the list of those bytes as integers.

A pixel belongs to the region when its alpha value is not zero (Label Studio's editor paints every such
pixel). :func:`encode_mask` writes a boolean mask as Label Studio's own converter does
(``label_studio_sdk.converter.brush.mask2rle``: all four channels 255 inside, 0 outside);
:func:`decode_alpha` reads the alpha channel of any RLE, including the literal sequences the editor writes.

This module is a vectorised implementation of that format: the SDK's converter is a per-bit Python loop, and
the SDK itself cannot be a runtime dependency here (see docs/guide/label-studio.md). The
tests check it against the SDK's ``mask2rle`` and ``decode_rle`` in both directions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forgetting.exceptions import InputError, LabelImportError

__all__ = ["RLE_SIZES", "WORD_SIZE", "decode", "decode_alpha", "encode", "encode_mask"]

#: The run-length sizes (bits) the encoder declares; the decoder reads whatever the header says.
RLE_SIZES: tuple[int, int, int, int] = (3, 4, 8, 16)
#: The word size (bits) of Label Studio's RGBA layers.
WORD_SIZE = 8
_HEADER_BITS = 32 + 5 + 4 * 4
_MAX_RUN = 1 << RLE_SIZES[-1]


def encode(values: np.ndarray) -> list[int]:
    """RLE-encode a flat array of bytes (one chunk per run of equal values, as the SDK's encoder writes it).

    Args:
        values: uint8 ``[N]`` (e.g. an ``[H, W, 4]`` RGBA layer, flattened).

    Returns:
        The RLE bytes as a list of ints ``0..255`` (Label Studio's ``value.rle``).
    """
    flat = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    n = int(flat.size)
    if n >= 1 << 32:
        raise InputError(f"an RLE holds fewer than 2**32 values, got {n}")
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1]) if n else np.zeros(0, np.int64)
    lengths = np.diff(np.append(starts, n)).astype(np.int64)
    words = flat[starts].astype(np.int64)
    # Runs longer than the largest size are split into pieces of 2**16 (the last one shorter).
    pieces = (lengths + _MAX_RUN - 1) // _MAX_RUN
    words = np.repeat(words, pieces)
    last = np.cumsum(pieces) - 1
    lengths_split = np.full(int(pieces.sum()), _MAX_RUN, dtype=np.int64)
    lengths_split[last] = lengths - (pieces - 1) * _MAX_RUN
    counts = lengths_split - 1
    size_index = np.searchsorted(np.array([1 << s for s in RLE_SIZES]), counts, side="right")
    sizes = np.asarray(RLE_SIZES, dtype=np.int64)[size_index]
    # A single value is written as a literal of one word, as the SDK's encoder writes it.
    flag = (lengths_split > 1).astype(np.int64)
    nbits = 3 + sizes + WORD_SIZE
    codes = (((flag << 2 | size_index) << sizes | counts) << WORD_SIZE) | words
    header = n << 21 | (WORD_SIZE - 1) << 16
    for k, size in enumerate(RLE_SIZES):
        header |= (size - 1) << (12 - 4 * k)
    return _pack(np.append(np.int64(header), codes), np.append(np.int64(_HEADER_BITS), nbits))


def _pack(codes: np.ndarray, nbits: np.ndarray) -> list[int]:
    """Concatenate ``codes[i]`` written MSB first in ``nbits[i]`` bits; zero-pad to whole bytes."""
    total = int(nbits.sum())
    chunk = np.repeat(np.arange(codes.size), nbits)
    offset = np.arange(total) - np.repeat(np.cumsum(nbits) - nbits, nbits)
    bits = (codes[chunk] >> (nbits[chunk] - 1 - offset)) & 1
    return np.packbits(bits.astype(np.uint8)).tolist()


def encode_mask(mask_H_W: np.ndarray) -> list[int]:
    """The RLE of a boolean mask as a Label Studio brush layer: RGBA ``(255, 255, 255, 255)`` inside the
    region, ``0`` outside (what ``label_studio_sdk.converter.brush.mask2rle`` writes for a 0/255 mask).

    Args:
        mask_H_W: bool (or 0/non-zero) ``[H, W]``.
    """
    layer = np.where(np.asarray(mask_H_W) != 0, 255, 0).astype(np.uint8)
    return encode(np.repeat(layer.reshape(-1), 4))


def decode(rle: Sequence[int] | bytes | np.ndarray) -> np.ndarray:
    """Decode an RLE into its flat values.

    Args:
        rle: the RLE bytes (``value.rle`` of a Label Studio brush result).

    Returns:
        ``[N]`` values: uint8 for word sizes up to 8 bits, else uint16 / uint32.

    Raises:
        LabelImportError: the bytes are not a valid RLE (bad values, truncated, too short).
    """
    try:
        data = np.asarray(rle, dtype=np.int64).reshape(-1) if not isinstance(rle, bytes) else None
    except (TypeError, ValueError):
        raise LabelImportError("a brush RLE must be a list of byte values 0..255") from None
    if data is not None:
        if data.size and (int(data.min()) < 0 or int(data.max()) > 255):
            raise LabelImportError("a brush RLE must be a list of byte values 0..255")
        raw = data.astype(np.uint8).tobytes()
    else:
        raw = bytes(rle)
    total = len(raw) * 8
    if total < _HEADER_BITS:
        raise LabelImportError(f"a brush RLE of {len(raw)} bytes is too short for its 53-bit header")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    text = bits.tobytes().translate(_BIT_CHARS)  # b"0101...": int(text[a:b], 2) reads a field

    def read(pos: int, width: int) -> int:
        if pos + width > total:
            raise LabelImportError("the brush RLE is truncated (it ends inside a chunk)")
        return int(text[pos : pos + width], 2)

    num = read(0, 32)
    word = read(32, 5) + 1
    sizes = [read(37 + 4 * k, 4) + 1 for k in range(4)]
    dtype = np.uint8 if word <= 8 else np.uint16 if word <= 16 else np.uint32
    weights = 1 << np.arange(word - 1, -1, -1, dtype=np.int64)
    values: list[int] = []
    counts: list[int] = []
    pos, filled = _HEADER_BITS, 0
    while filled < num:
        repeat = read(pos, 1)
        size = sizes[read(pos + 1, 2)]
        length = read(pos + 3, size) + 1
        pos += 3 + size
        if repeat:
            values.append(read(pos, word))
            counts.append(length)
            pos += word
        else:
            if pos + length * word > total:
                raise LabelImportError("the brush RLE is truncated (it ends inside a literal sequence)")
            values.extend((bits[pos : pos + length * word].reshape(length, word) @ weights).tolist())
            counts.extend([1] * length)
            pos += length * word
        filled += length
    out = np.repeat(np.asarray(values, dtype=np.int64), np.asarray(counts, dtype=np.int64))
    return out[:num].astype(dtype)  # a malformed last chunk may run past N: keep the N values declared


_BIT_CHARS = bytes.maketrans(b"\x00\x01", b"01")


def decode_alpha(rle: Sequence[int] | bytes | np.ndarray, height: int, width: int) -> np.ndarray:
    """The region of a Label Studio brush RLE: bool ``[H, W]``, true where the layer's alpha is not zero.

    Raises:
        LabelImportError: the RLE is invalid or does not hold ``H * W * 4`` values.
    """
    flat = decode(rle)
    expected = int(height) * int(width) * 4
    if flat.size != expected:
        raise LabelImportError(
            f"the brush RLE holds {flat.size} values, but an RGBA layer of {height}x{width} (height x width) "
            f"has {expected}: original_height / original_width do not match the RLE"
        )
    return flat.reshape(int(height), int(width), 4)[..., 3] != 0
