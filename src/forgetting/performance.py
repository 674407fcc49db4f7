"""Speed defaults, chosen by measurement (``benchmarks/throughput.py``; README "Speed").

- **Subnormal floats flushed to zero** while the library trains and predicts (:func:`flush_denormals`, used
  by :func:`~forgetting.training.fit`, the loop's training function, the observation passes, prediction and
  evaluation). Small-data training drives activations and gradients into the subnormal range, where some
  x86 CPUs take a slow path. The setting is restored afterwards, so the caller's process is left as it was.
  Opt out with the environment variable ``FORGETTING_KEEP_DENORMALS=1``.
- **Inference batch sizes** (:func:`inference_batch_size`): on a CPU about :data:`CPU_PIXELS_PER_BATCH`
  input pixels per batch (128 images of 28x28 or 32x32, 32 sections of 64x64), where a pass over the small
  zoo models runs 1.5-2x faster than at the former 1024 images; large batches on accelerators. The batch size
  is a fixed rule of the device and the input shape, not a timing: timings vary from run to run, and a
  batch size can change a model's outputs in their last bits (other convolution kernels), which must not
  make two runs of the same seed differ.
- **Memory format** (:func:`place_model`): the zoo's convolutional networks run in ``channels_last`` on a CPU
  (oneDNN's native layout): 1.2-1.6x faster to train and to predict. Outputs differ from the contiguous
  layout only by rounding.
- **Fused optimizers** (:func:`fused_optimizer_ok`): :func:`~forgetting.training.make_optimizer` builds
  Adam and SGD in PyTorch's fused implementation on CPU and CUDA.
- **Threads per job** (:func:`threads_per_job`): the cores this process may use (its CPU affinity), split
  between parallel jobs, at least one each, so parallel experiments never ask for more threads than cores.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence

import torch
from torch import nn

__all__ = [
    "ACCELERATOR_BATCH_SIZE",
    "CPU_MAX_BATCH_SIZE",
    "CPU_PIXELS_PER_BATCH",
    "KEEP_DENORMALS_ENV",
    "available_cores",
    "denormals_flushed",
    "flush_denormals",
    "fused_optimizer_ok",
    "inference_batch_size",
    "place_model",
    "prefers_channels_last",
    "threads_per_job",
]

logger = logging.getLogger(__name__)

#: Set to ``1`` (or ``true``/``yes``) to keep subnormal floats: the library then never flushes them.
KEEP_DENORMALS_ENV = "FORGETTING_KEEP_DENORMALS"

#: Input pixels (``H * W``, whatever the channels) per CPU inference batch. ``benchmarks/throughput.py``
#: found the best batch of small-cnn and resnet18 on 28x28/32x32 images between 64 and 256 images, and of
#: unet on 64x64 sections at 32; 2**17 pixels gives 128 and 32.
CPU_PIXELS_PER_BATCH = 1 << 17
#: The largest CPU inference batch (tiny inputs), and the batch when the input shape is unknown.
CPU_MAX_BATCH_SIZE = 1024
CPU_DEFAULT_BATCH_SIZE = 128
#: Inference batch on CUDA and MPS, where the data usually stays on the device.
ACCELERATOR_BATCH_SIZE = 4096

_TRUE = ("1", "true", "yes", "on")
_SUBNORMAL = 1e-40  # a float32 subnormal (the smallest normal float32 is about 1.2e-38)
_ZOO_MODULES = ("forgetting.models.classification", "forgetting.models.segmentation")


# ---------------------------------------------------------------------------------------------- subnormals
def denormals_flushed() -> bool:
    """Whether float32 subnormals are flushed to zero on the calling thread now (a one-element probe)."""
    with torch.inference_mode():
        return bool(torch.tensor(_SUBNORMAL, dtype=torch.float32).mul(1.0).eq(0.0))


def _keep_denormals() -> bool:
    return os.environ.get(KEEP_DENORMALS_ENV, "").strip().lower() in _TRUE


@contextlib.contextmanager
def flush_denormals() -> Iterator[bool]:
    """Flush subnormal floats to zero on the CPU inside the block; restore the previous setting after it.

    Yields whether flushing is on inside the block: ``False`` when ``FORGETTING_KEEP_DENORMALS`` is set or
    the CPU cannot flush (``torch.set_flush_denormal`` supports x86 only). Nesting is cheap (an inner block
    finds the setting on and changes nothing). Works as a decorator too (``@flush_denormals()``).

    The setting is the CPU's floating-point control register of the calling thread: it covers all the work
    of a single-threaded process (each ``--jobs`` worker on a machine with no more cores than jobs) and the
    calling thread's share of a multi-threaded one (PyTorch's OpenMP worker threads keep the setting they
    started with). GPU kernels are unaffected.
    """
    if _keep_denormals():
        yield denormals_flushed()
        return
    before = denormals_flushed()
    if before:
        yield True
        return
    supported = torch.set_flush_denormal(True)
    try:
        yield bool(supported)
    finally:
        if supported:
            torch.set_flush_denormal(False)


# ---------------------------------------------------------------------------------------------- batch sizes
def inference_batch_size(device: torch.device, input_shape: Sequence[int] | None = None) -> int:
    """The default batch size of an eval pass on ``device`` over inputs of ``input_shape`` (``(C, H, W)``).

    CPU: the largest power of two with at most :data:`CPU_PIXELS_PER_BATCH` pixels (``H * W``) per batch,
    between 1 and :data:`CPU_MAX_BATCH_SIZE` (:data:`CPU_DEFAULT_BATCH_SIZE` without a shape): 128 for
    28x28 or 32x32 images, 32 for 64x64 sections, 1 for sections of 131,073 pixels or more. CUDA and MPS:
    :data:`ACCELERATOR_BATCH_SIZE`.
    """
    if device.type != "cpu":
        return ACCELERATOR_BATCH_SIZE
    if input_shape is None or len(input_shape) < 2:
        return CPU_DEFAULT_BATCH_SIZE
    pixels = max(1, math.prod(int(s) for s in input_shape[1:]))
    fits = CPU_PIXELS_PER_BATCH // pixels  # >= 1 unless one input is larger than the budget
    return 1 if fits < 1 else min(CPU_MAX_BATCH_SIZE, 1 << (fits.bit_length() - 1))


# ---------------------------------------------------------------------------------------------- layout
def prefers_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Whether :func:`place_model` puts ``model`` in ``channels_last``: a zoo model (of
    :mod:`forgetting.models`) with 2-d convolutions, on a CPU.

    A user's model keeps its layout: a ``forward`` that calls ``.view`` on a feature map would fail on a
    ``channels_last`` tensor. Convert it in its factory (``model.to(memory_format=torch.channels_last)``) to
    get the same speed-up.
    """
    if device.type != "cpu" or type(model).__module__ not in _ZOO_MODULES:
        return False
    return any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in model.modules())


def place_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` moved to ``device``, in ``channels_last`` where :func:`prefers_channels_last` says so."""
    model = model.to(device)
    if prefers_channels_last(model, device):
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


# ---------------------------------------------------------------------------------------------- optimizer
def fused_optimizer_ok(params: Sequence[torch.Tensor]) -> bool:
    """Whether ``torch.optim``'s fused Adam/SGD can take ``params``: floating-point tensors, all on CPU or
    all on one CUDA device (and at least one)."""
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(p.is_floating_point() for p in params)
    )


# ---------------------------------------------------------------------------------------------- threads
def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one, else all cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of ``jobs`` parallel jobs: ``cores // jobs`` (at least 1), ``cores`` defaulting
    to :func:`available_cores`. More jobs than cores oversubscribe the CPU whatever the threads; that is
    logged as a warning."""
    cores = available_cores() if cores is None else cores
    if jobs > cores:
        logger.warning(
            "%d parallel jobs on %d cores: each gets 1 thread, and the jobs share the cores (slower than "
            "--jobs %d)",
            jobs,
            cores,
            cores,
        )
    return max(1, cores // max(1, jobs))
