"""Speed defaults, chosen by measurement (``benchmarks/throughput.py``; README "Speed").

- **Subnormal floats flushed to zero** while the library trains and predicts (:func:`flush_denormals`, used
  by :func:`~forgetting.training.fit`, the loop's training function, the observation passes, prediction and
  evaluation). Small-data training drives activations and gradients into the subnormal range, where some
  x86 CPUs take a slow path. The setting is restored afterwards, so the caller's process is left as it was.
  Opt out with the environment variable ``FORGETTING_KEEP_DENORMALS=1``.
- **Inference batch sizes** (:func:`inference_batch_size`): on a CPU, as many inputs as keep the model's
  largest layer output within :data:`CPU_ACTIVATIONS_PER_BATCH` values (found once per architecture and
  input shape by one forward of a zero input): 256 images for small-cnn width 8 on 28x28, 32 sections for
  unet on 64x64, where the zoo models predict fastest (the former default, 1024 images, ran up to 2-3x
  slower); large batches on accelerators. This is a calibration without a clock: timings vary from run to
  run, and a batch size can change a model's outputs in their last bits (other convolution kernels),
  which must not make two runs of the same seed differ.
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
from typing import Any

import torch
from torch import nn

__all__ = [
    "ACCELERATOR_BATCH_SIZE",
    "CPU_ACTIVATIONS_PER_BATCH",
    "CPU_MAX_BATCH_SIZE",
    "CPU_VALUES_PER_BATCH",
    "KEEP_DENORMALS_ENV",
    "available_cores",
    "denormals_flushed",
    "flush_denormals",
    "fused_optimizer_ok",
    "inference_batch_size",
    "largest_activation",
    "place_model",
    "prefers_channels_last",
    "threads_per_job",
]

logger = logging.getLogger(__name__)

#: Set to ``1`` (or ``true``/``yes``) to keep subnormal floats: the library then never flushes them.
KEEP_DENORMALS_ENV = "FORGETTING_KEEP_DENORMALS"

#: Values of the model's largest layer output per CPU inference batch (8 MiB of float32). Sweeps with
#: ``benchmarks/throughput.py`` found the fastest batch of small-cnn width 8 (largest output 6,272 values
#: per image) at 256 to 512 images, of small-cnn width 32 (25,088) flat from 64 to 256, of resnet18 width
#: 16 (16,384) at 64 to 128 and of unet base 8 on 64x64 sections (65,536) at 16 to 32: about 2**21 values.
CPU_ACTIVATIONS_PER_BATCH = 1 << 21
#: Input values (``C * H * W``) per CPU inference batch when the model is not known.
CPU_VALUES_PER_BATCH = 1 << 18
#: The largest CPU inference batch (tiny inputs), and the batch when the input shape is unknown.
CPU_MAX_BATCH_SIZE = 1024
CPU_DEFAULT_BATCH_SIZE = 256
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
def _power_of_two_fit(budget: int, per_item: int) -> int:
    """The largest power of two ``b <= CPU_MAX_BATCH_SIZE`` with ``b * per_item <= budget`` (at least 1)."""
    fits = budget // max(1, per_item)
    return 1 if fits < 1 else min(CPU_MAX_BATCH_SIZE, 1 << (fits.bit_length() - 1))


_LARGEST: dict[tuple[Any, ...], int | None] = {}


def largest_activation(model: nn.Module, input_shape: Sequence[int]) -> int | None:
    """Values of the largest output of any leaf module of ``model`` for one input of ``input_shape``
    (``(C, H, W)``), or ``None`` when the forward fails.

    Measured once per architecture (class and parameter shapes) and input shape, cached in-process: one
    eval-mode forward of a zero input on the model's device, under ``torch.inference_mode``, each module's
    train flag and the global RNG restored. No timing is involved, so the result is the same in every run.
    """
    key = (
        type(model),
        tuple((name, tuple(p.shape)) for name, p in model.named_parameters()),
        tuple(int(s) for s in input_shape),
    )
    if key in _LARGEST:
        return _LARGEST[key]
    largest = 0

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal largest
        outputs = output if isinstance(output, tuple | list) else (output,)
        for out in outputs:
            if isinstance(out, torch.Tensor):
                largest = max(largest, out[0].numel() if out.ndim else 1)

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    flags = [(m, m.training) for m in model.modules()]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    result: int | None
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            model.eval()
            model(torch.zeros(1, *input_shape, device=device))
        result = largest or None
    except Exception as exc:  # a model that cannot take a zero input: fall back to the input-size rule
        logger.debug("largest_activation: the probe forward of %s failed (%s)", type(model).__name__, exc)
        result = None
    finally:
        for h in handles:
            h.remove()
        for m, training in flags:
            m.training = training
    _LARGEST[key] = result
    return result


def inference_batch_size(
    device: torch.device, input_shape: Sequence[int] | None = None, model: nn.Module | None = None
) -> int:
    """The default batch size of an eval pass of ``model`` on ``device`` over inputs of ``input_shape``
    (``(C, H, W)``).

    CPU, with the model: the largest power of two whose batch keeps the model's largest layer output
    (:func:`largest_activation`) within :data:`CPU_ACTIVATIONS_PER_BATCH` values, between 1 and
    :data:`CPU_MAX_BATCH_SIZE`: 256 for small-cnn width 8 on 1x28x28 images, 128 for resnet18 width 16 on
    3x32x32, 64 for small-cnn width 32, 32 for unet (base 8) on 64x64 sections. CPU without the model: at
    most :data:`CPU_VALUES_PER_BATCH` input values (``C * H * W``) per batch (256 for 1x28x28, 64 for
    3x32x32; :data:`CPU_DEFAULT_BATCH_SIZE` without a shape either). CUDA and MPS:
    :data:`ACCELERATOR_BATCH_SIZE`.
    """
    if device.type != "cpu":
        return ACCELERATOR_BATCH_SIZE
    if input_shape is None or len(input_shape) < 1:
        return CPU_DEFAULT_BATCH_SIZE
    if model is not None:
        largest = largest_activation(model, input_shape)
        if largest is not None:
            return _power_of_two_fit(CPU_ACTIVATIONS_PER_BATCH, largest)
    return _power_of_two_fit(CPU_VALUES_PER_BATCH, math.prod(int(s) for s in input_shape))


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
