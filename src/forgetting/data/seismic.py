"""Synthetic seismic facies volumes shaped like the F3 Netherlands benchmark, and sections cut from volumes.

A volume is ``[inlines, crosslines, depth]`` (the F3 ``.npy`` layout) with six facies ordered from the top:
upper, middle and lower North Sea group, Rijnland/chalk, scruff, zechstein (:data:`F3_CLASSES`, ids 0..5).
As in F3, chalk and scruff are thin and under-represented.

How a volume is built (all vectorised numpy, every random choice from one seeded generator):

1. **Horizons.** Five surfaces ``h_k(il, xl)`` separate the facies. Each facies has a mean thickness (a
   fraction of the depth) that varies smoothly in space; the thicknesses are clipped at a minimum, so every
   unfaulted column holds all six facies in order.
2. **Structure.** A regional dip (a plane), folds (sums of sinusoids) and a salt dome (a Gaussian bump that
   lifts the deep horizons most) move all horizons; deeper horizons are deformed more.
3. **Faults.** Each fault is a dipping plane; points on its hanging-wall side are moved down by the throw:
   the label of ``(il, xl, z)`` is the facies that the horizons give at depth ``z - throw * side``.
4. **Impedance.** Each facies has a base acoustic impedance plus an internal layering log indexed by the
   relative position inside the facies (so internal reflectors follow the structure and are cut by faults),
   with a smooth lateral amplitude variation.
5. **Seismic.** Reflectivity ``(I[z+1] - I[z]) / (I[z+1] + I[z])`` convolved along depth with a Ricker
   wavelet, plus band-limited noise (white noise convolved with the same wavelet) at ``noise`` times the
   signal RMS.

:func:`synthetic_seismic` makes a train volume and a test volume from two :class:`Geology` presets that
differ (dip direction, fold amplitude, salt dome, number and throw of faults, facies thicknesses, wavelet
frequency, noise), so the test set is a real domain shift, and cuts both into inline and crossline sections
(transposed so that depth is the image height, as F3 section loaders do).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from forgetting.data.dataset import Dataset, Split
from forgetting.data.registry import register_dataset
from forgetting.exceptions import ConfigError, DatasetFormatError

__all__ = [
    "F3_CLASSES",
    "ORIENTATIONS",
    "PAD_LABEL",
    "TEST_GEOLOGY",
    "TRAIN_GEOLOGY",
    "Geology",
    "SeismicVolume",
    "amplitude_clip",
    "amplitude_to_uint8",
    "make_seismic_volume",
    "ricker_wavelet",
    "sections_from_volume",
    "synthetic_seismic",
]

logger = logging.getLogger(__name__)

#: The six F3 facies, top to bottom (class ids 0..5).
F3_CLASSES: tuple[str, ...] = (
    "upper_north_sea",
    "middle_north_sea",
    "lower_north_sea",
    "rijnland_chalk",
    "scruff",
    "zechstein",
)
#: Section orientations: inline sections are ``volume[i, :, :]``, crossline sections ``volume[:, j, :]``.
ORIENTATIONS: tuple[str, ...] = ("inline", "crossline", "both")
#: Mask value of the padding added when sections of different widths are stacked (use it as ignore_index).
PAD_LABEL = 255

Orientation = Literal["inline", "crossline", "both"]

# Base impedance, internal layering strength and layering "roughness" (fraction of the log's samples that
# are independent) per facies, top to bottom. Chalk and zechstein are hard; zechstein salt is transparent.
_IMPEDANCE = np.array([4.0, 4.6, 5.3, 8.0, 6.2, 9.5])
_LAYERING = np.array([0.35, 0.22, 0.40, 0.25, 0.15, 0.04])
_ROUGHNESS = np.array([0.35, 0.15, 0.25, 0.10, 0.08, 0.05])
_LOG_SAMPLES = 256


@dataclass(frozen=True)
class Geology:
    """The parameters of one synthetic survey; lengths and throws are fractions of the volume depth.

    Attributes:
        thickness: mean thickness of facies 0..4 (the last facies, zechstein, reaches the bottom).
        thickness_variation: relative amplitude of the smooth lateral thickness changes.
        min_thickness: minimum facies thickness in samples (keeps every facies in every unfaulted column).
        dip: depth change across the whole inline and crossline extent ``(d_il, d_xl)``.
        fold_amplitude: amplitude of the folds.
        fold_wavelength: fold wavelength range, in units of the lateral extent.
        n_folds: number of superposed sinusoidal folds.
        dome_height: uplift of the deepest horizon by the salt dome (shallower horizons: less).
        dome_width: the dome's Gaussian width, in units of the lateral extent.
        n_faults: number of faults.
        fault_throw: vertical throw range of the faults.
        fault_dip: tangent range of the fault planes' dip from the vertical.
        frequency: Ricker peak frequency, in cycles per depth sample.
        noise: noise RMS as a fraction of the signal RMS.
    """

    thickness: tuple[float, float, float, float, float] = (0.24, 0.13, 0.33, 0.08, 0.045)
    thickness_variation: float = 0.2
    min_thickness: float = 2.0
    dip: tuple[float, float] = (0.05, -0.03)
    fold_amplitude: float = 0.025
    fold_wavelength: tuple[float, float] = (0.8, 1.6)
    n_folds: int = 2
    dome_height: float = 0.05
    dome_width: float = 0.25
    n_faults: int = 1
    fault_throw: tuple[float, float] = (0.03, 0.05)
    fault_dip: tuple[float, float] = (0.2, 0.5)
    frequency: float = 0.09
    noise: float = 0.15

    def __post_init__(self) -> None:
        if len(self.thickness) != 5 or any(t <= 0 for t in self.thickness):
            raise ConfigError(f"Geology.thickness must be 5 positive fractions, got {self.thickness}")
        if sum(self.thickness) >= 1.0:
            raise ConfigError(
                f"Geology.thickness must sum to < 1 (zechstein fills the rest), got {sum(self.thickness):.3f}"
            )
        if not 0.0 < self.frequency < 0.5:
            raise ConfigError(
                f"Geology.frequency must be in (0, 0.5) cycles per sample, got {self.frequency}"
            )
        if self.noise < 0 or self.n_faults < 0 or self.n_folds < 0 or self.min_thickness < 0:
            raise ConfigError("Geology.noise, n_faults, n_folds and min_thickness must be >= 0")


#: The training survey: gentle dip, mild folds, a small dome, one fault, little noise.
TRAIN_GEOLOGY = Geology()
#: The test survey: opposite dip, stronger folds, a larger dome, three larger faults, thicker chalk, thinner
#: scruff, a lower-frequency wavelet and twice the noise: a real shift from :data:`TRAIN_GEOLOGY`.
TEST_GEOLOGY = Geology(
    thickness=(0.20, 0.15, 0.34, 0.10, 0.035),
    dip=(-0.06, 0.04),
    fold_amplitude=0.045,
    fold_wavelength=(0.6, 1.2),
    n_folds=3,
    dome_height=0.09,
    dome_width=0.2,
    n_faults=3,
    fault_throw=(0.04, 0.07),
    fault_dip=(0.1, 0.4),
    frequency=0.075,
    noise=0.3,
)


@dataclass(frozen=True)
class SeismicVolume:
    """One synthetic survey.

    Attributes:
        amplitude: float32 ``[inlines, crosslines, depth]`` seismic amplitudes.
        labels: uint8 ``[inlines, crosslines, depth]`` facies ids 0..5.
        impedance: float32 ``[inlines, crosslines, depth]`` acoustic impedance.
        horizons: float32 ``[5, inlines, crosslines]`` depth (in samples) of the top of facies 1..5 before
            faulting.
        faults: one dict per fault: ``normal`` (unit horizontal normal), ``point`` (inline, crossline),
            ``slope`` (dip tangent), ``throw`` (samples).
        geology: the parameters used.
        seed: the seed used.
    """

    amplitude: np.ndarray
    labels: np.ndarray
    impedance: np.ndarray
    horizons: np.ndarray
    faults: tuple[dict[str, object], ...]
    geology: Geology
    seed: int


def ricker_wavelet(frequency: float, half_length: int | None = None) -> np.ndarray:
    """Ricker wavelet ``(1 - 2 pi^2 f^2 t^2) exp(-pi^2 f^2 t^2)``, float64 ``[2 * half_length + 1]``.

    Args:
        frequency: peak frequency in cycles per sample.
        half_length: samples on each side of the peak; default ``ceil(1.5 / frequency)``.
    """
    if half_length is None:
        half_length = math.ceil(1.5 / frequency)
    t = np.arange(-half_length, half_length + 1, dtype=np.float64)
    a = (math.pi * frequency * t) ** 2
    return (1.0 - 2.0 * a) * np.exp(-a)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], correlation: float) -> np.ndarray:
    """A smooth random field ``[*shape]`` with zero mean and unit standard deviation; ``correlation`` in
    samples."""
    from scipy import ndimage  # imported on use: `import forgetting` stays free of scipy

    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(correlation, 0.5), mode="wrap")
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def make_seismic_volume(
    inlines: int = 48,
    crosslines: int = 48,
    depth: int = 96,
    *,
    seed: int = 0,
    geology: Geology = TRAIN_GEOLOGY,
) -> SeismicVolume:
    """Generate one synthetic seismic facies volume (see the module docstring for the recipe).

    Args:
        inlines, crosslines, depth: volume size in samples (each >= 4; depth >= 32 keeps the thin facies
            visible).
        seed: everything random derives from ``numpy.random.default_rng(seed)``; the same seed and geology
            give the same volume bit for bit.
        geology: the survey parameters (:data:`TRAIN_GEOLOGY`, :data:`TEST_GEOLOGY` or your own).

    Returns:
        A :class:`SeismicVolume`: float32 ``amplitude``, uint8 ``labels``, ``[inlines, crosslines, depth]``.
    """
    from scipy import ndimage

    for key, value in (("inlines", inlines), ("crosslines", crosslines), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 4:
            raise ConfigError(f"make_seismic_volume: {key} must be an integer >= 4, got {value!r}")
    n_il, n_xl, n_z = int(inlines), int(crosslines), int(depth)
    g = geology
    rng = np.random.default_rng(seed)
    u = np.linspace(0.0, 1.0, n_il)[:, None]  # [IL, 1] normalised inline coordinate
    v = np.linspace(0.0, 1.0, n_xl)[None, :]  # [1, XL]
    lateral = max(n_il, n_xl)

    # 1. horizons: cumulative thicknesses with smooth lateral variation, in samples. [5, IL, XL]
    mean_thickness = np.asarray(g.thickness, dtype=np.float64)[:, None, None] * n_z
    variation = np.stack([_smooth_field(rng, (n_il, n_xl), 0.2 * lateral) for _ in range(5)])
    thickness = np.maximum(mean_thickness * (1.0 + g.thickness_variation * variation), g.min_thickness)
    horizons = np.cumsum(thickness, axis=0)

    # 2. structure, in samples: dip + folds move every horizon; the dome lifts deep horizons most.
    structure = (g.dip[0] * (u - 0.5) + g.dip[1] * (v - 0.5)) * n_z
    for _ in range(g.n_folds):
        angle = rng.uniform(0.0, math.pi)
        wavelength = rng.uniform(*g.fold_wavelength)
        phase = rng.uniform(0.0, 2.0 * math.pi)
        along = math.cos(angle) * u + math.sin(angle) * v
        structure = structure + g.fold_amplitude * n_z * np.sin(2.0 * math.pi * along / wavelength + phase)
    cu, cv = rng.uniform(0.25, 0.75, size=2)
    dome = np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2.0 * g.dome_width**2))  # [IL, XL]
    depth_weight = np.linspace(0.5, 1.0, 5)[:, None, None]  # deeper horizons deform more
    relief = depth_weight * structure[None] - (depth_weight**2) * g.dome_height * n_z * dome[None]
    horizons = horizons + relief
    # re-impose the minimum thickness after deformation (the dome thins the layers above it)
    steps = g.min_thickness * np.arange(1, 6)[:, None, None]  # h_k - k * min is made non-decreasing
    horizons = np.maximum.accumulate(np.maximum(horizons - steps, 0.0), axis=0) + steps
    # keep at least min_thickness of every facies above the bottom (caps grow by min_thickness per horizon)
    horizons = np.minimum(horizons, n_z - g.min_thickness * np.arange(5, 0, -1)[:, None, None])
    horizons = horizons.astype(np.float32)

    # 3. faults: z_eff = z - throw on the hanging-wall side of each dipping plane. [IL, XL, Z]
    il = np.arange(n_il, dtype=np.float32)[:, None, None]
    xl = np.arange(n_xl, dtype=np.float32)[None, :, None]
    z = np.arange(n_z, dtype=np.float32)[None, None, :]
    z_eff = np.broadcast_to(z, (n_il, n_xl, n_z)).astype(np.float32)
    faults: list[dict[str, object]] = []
    for _ in range(g.n_faults):
        strike = rng.uniform(0.0, math.pi)
        normal = (math.cos(strike), math.sin(strike))
        point = (rng.uniform(0.3, 0.7) * (n_il - 1), rng.uniform(0.3, 0.7) * (n_xl - 1))
        slope = float(rng.uniform(*g.fault_dip)) * float(rng.choice([-1.0, 1.0]))
        throw = float(rng.uniform(*g.fault_throw)) * n_z
        side = normal[0] * (il - point[0]) + normal[1] * (xl - point[1]) + slope * (z - 0.5 * n_z) > 0
        z_eff = z_eff - np.float32(throw) * side
        faults.append({"normal": normal, "point": point, "slope": slope, "throw": throw})

    # labels: number of horizons above the (fault-shifted) depth
    labels = (z_eff[None] >= horizons[:, :, :, None]).sum(axis=0).astype(np.uint8)  # [IL, XL, Z]

    # 4. impedance: base per facies + a layering log indexed by the relative position inside the facies
    top = np.concatenate([horizons[:1] - thickness[:1].astype(np.float32), horizons], axis=0)  # [6, IL, XL]
    bottom = np.concatenate([horizons, np.full((1, n_il, n_xl), float(n_z), np.float32)], axis=0)
    lab = labels.astype(np.intp)
    ii = np.arange(n_il)[:, None, None]
    jj = np.arange(n_xl)[None, :, None]
    t = top[lab, ii, jj]
    b = bottom[lab, ii, jj]
    rel = np.clip((z_eff - t) / np.maximum(b - t, 1.0), 0.0, 1.0)
    logs = np.empty((6, _LOG_SAMPLES))
    for k in range(6):
        sigma = max(1.0, (1.0 - _ROUGHNESS[k]) * 8.0)
        logs[k] = _LAYERING[k] * _smooth_field(rng, (_LOG_SAMPLES,), sigma)
    lateral_gain = 1.0 + 0.25 * np.stack([_smooth_field(rng, (n_il, n_xl), 0.15 * lateral) for _ in range(6)])
    index = np.rint(rel * (_LOG_SAMPLES - 1)).astype(np.intp)
    impedance = (_IMPEDANCE[lab] + logs[lab, index] * lateral_gain[lab, ii, jj]).astype(np.float32)

    # 5. reflectivity * Ricker + band-limited noise
    refl = np.zeros_like(impedance)
    refl[..., :-1] = (impedance[..., 1:] - impedance[..., :-1]) / (impedance[..., 1:] + impedance[..., :-1])
    wavelet = ricker_wavelet(g.frequency)
    signal = ndimage.convolve1d(refl, wavelet, axis=2, mode="constant")
    rms = float(np.sqrt(np.mean(signal.astype(np.float64) ** 2))) or 1.0
    if g.noise > 0:
        noise = ndimage.convolve1d(rng.standard_normal(signal.shape).astype(np.float32), wavelet, axis=2)
        noise *= g.noise * rms / max(float(noise.std()), 1e-12)
        signal = signal + noise
    amplitude = (signal / rms).astype(np.float32)
    return SeismicVolume(amplitude, labels, impedance, horizons, tuple(faults), g, int(seed))


# ---------------------------------------------------------------------------------------------- sections


def amplitude_clip(volume: np.ndarray, percentile: float = 99.5, max_samples: int = 2_000_000) -> float:
    """The ``percentile`` of ``|volume|`` (on an evenly strided subsample of at most ``max_samples``)."""
    flat = np.asarray(volume).reshape(-1)
    step = max(1, flat.size // max_samples)
    clip = float(np.percentile(np.abs(flat[::step]), percentile)) if flat.size else 1.0
    return clip if clip > 0 and math.isfinite(clip) else 1.0


def amplitude_to_uint8(amplitude: np.ndarray, clip: float) -> np.ndarray:
    """Map amplitudes to uint8: ``0 -> 128``, ``+-clip -> 255 / 0`` (clipped beyond), same shape."""
    scaled = np.clip(np.asarray(amplitude, dtype=np.float32) / np.float32(clip), -1.0, 1.0)
    return np.rint(127.5 + 127.5 * scaled).astype(np.uint8)


def sections_from_volume(
    image_volume: np.ndarray,
    label_volume: np.ndarray,
    *,
    orientation: Orientation = "both",
    stride: int = 1,
    pad_label: int = PAD_LABEL,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Cut a volume ``[inlines, crosslines, depth]`` into sections with depth as the image height.

    Inline section ``i`` is ``volume[i].T`` (``[depth, crosslines]``), crossline section ``j`` is
    ``volume[:, j].T`` (``[depth, inlines]``); every ``stride``-th section of each orientation is kept. When
    inline and crossline sections differ in width, the narrower ones are padded on the right: image value
    zero amplitude (``0`` for float volumes, ``128`` for uint8 ones), mask ``pad_label`` (use it as
    ``ignore_index``).

    Args:
        image_volume: ``[IL, XL, D]`` amplitudes, float or uint8; may be a memory map (only the kept
            sections are read).
        label_volume: ``[IL, XL, D]`` facies ids, integers or integral floats; may be a memory map.

    Returns:
        ``(images [N, 1, D, W] in the dtype of image_volume, masks int64 [N, D, W], names)`` with names like
        ``"inline 3"`` (0-based indices into the volume).

    Raises:
        ConfigError: a bad ``orientation`` or ``stride``.
        DatasetFormatError: the volumes are not 3-D, differ in shape, or the labels are not integers.
    """
    if orientation not in ORIENTATIONS:
        raise ConfigError(f"orientation must be one of {list(ORIENTATIONS)}, got {orientation!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"stride must be an integer >= 1, got {stride!r}")
    if image_volume.ndim != 3 or tuple(label_volume.shape) != tuple(image_volume.shape):
        raise DatasetFormatError(
            f"seismic and label volumes must both be [inlines, crosslines, depth] of one shape, got "
            f"{tuple(image_volume.shape)} and {tuple(label_volume.shape)}"
        )
    n_il, n_xl, n_z = image_volume.shape
    parts: list[tuple[np.ndarray, np.ndarray, list[str]]] = []
    if orientation in ("inline", "both"):
        rows = np.arange(0, n_il, stride)
        img = np.asarray(image_volume[rows]).transpose(0, 2, 1)  # [n, D, XL]
        lab = np.asarray(label_volume[rows]).transpose(0, 2, 1)
        parts.append((img, lab, [f"inline {i}" for i in rows]))
    if orientation in ("crossline", "both"):
        cols = np.arange(0, n_xl, stride)
        img = np.asarray(image_volume[:, cols]).transpose(1, 2, 0)  # [n, D, IL]
        lab = np.asarray(label_volume[:, cols]).transpose(1, 2, 0)
        parts.append((img, lab, [f"crossline {j}" for j in cols]))
    for _, lab, _ in parts:
        integral = lab.dtype == np.bool_ or np.issubdtype(lab.dtype, np.integer)
        if not integral and not (np.issubdtype(lab.dtype, np.floating) and np.all(lab == np.rint(lab))):
            raise DatasetFormatError(f"facies labels must be integers, got dtype {lab.dtype} with fractions")
    width = max(p[0].shape[2] for p in parts)
    n = sum(p[0].shape[0] for p in parts)
    pad_value = 128 if image_volume.dtype == np.uint8 else 0
    images = np.full((n, 1, n_z, width), pad_value, dtype=image_volume.dtype)
    masks = np.full((n, n_z, width), pad_label, dtype=np.int64)
    names: list[str] = []
    start = 0
    for img, lab, part_names in parts:
        m, _, w = img.shape
        images[start : start + m, 0, :, :w] = img
        masks[start : start + m, :, :w] = lab
        names += part_names
        start += m
    return images, masks, names


def _check_size(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"option {key!r} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def synthetic_seismic(
    inlines: int = 48,
    crosslines: int = 48,
    depth: int = 96,
    *,
    seed: int = 0,
    orientation: Orientation = "both",
    stride: int = 1,
    test_geology: Literal["shifted", "same", "both"] = "shifted",
    train: Geology = TRAIN_GEOLOGY,
    test: Geology = TEST_GEOLOGY,
) -> Dataset:
    """A seismic facies segmentation dataset: a train volume and a test volume, cut into sections.

    Args:
        inlines, crosslines, depth: size of each volume (equal inline and crossline counts give equal
            section widths; otherwise the narrower sections are padded with :data:`PAD_LABEL`).
        seed: the train volume uses ``SeedSequence(seed)``'s first child, the test volume its second.
        orientation: ``"inline"``, ``"crossline"`` or ``"both"``.
        stride: keep every ``stride``-th section of each orientation.
        test_geology: ``"shifted"``: the test volume follows ``test`` (a domain shift); ``"same"``: it
            follows ``train`` (an independent draw of the same geology); ``"both"``: ``test`` is an
            independent volume of the training geology (in-distribution) and a third split ``shifted`` is
            the shifted volume of ``"shifted"`` (the same sections), as active-learning experiments use it.

    Returns:
        A segmentation :class:`Dataset` with classes :data:`F3_CLASSES`, splits ``train`` and ``test`` (and
        ``shifted`` with ``test_geology="both"``):
        images uint8 ``[N, 1, depth, W]``, masks int64 ``[N, depth, W]``. Amplitudes map to uint8 with one
        clip (the 99.5th percentile of ``|train amplitude|``) for both volumes. ``meta`` holds
        ``ignore_index`` (:data:`PAD_LABEL`), ``section_names`` per split and the class pixel shares.
    """
    if test_geology not in ("shifted", "same", "both"):
        raise ConfigError(f"option 'test_geology' must be 'shifted', 'same' or 'both', got {test_geology!r}")
    inlines = _check_size("inlines", inlines, 4)
    crosslines = _check_size("crosslines", crosslines, 4)
    depth = _check_size("depth", depth, 16)
    # Children 0 and 1 are the train and test volumes of "shifted"/"same"; "both" adds child 2 for its
    # in-distribution test volume, so its "shifted" split is exactly the "shifted" test volume.
    train_seed, test_seed, same_seed = (
        int(s.generate_state(1)[0]) for s in np.random.SeedSequence(int(seed)).spawn(3)
    )
    vol_train = make_seismic_volume(inlines, crosslines, depth, seed=train_seed, geology=train)
    volumes = {"train": vol_train}
    if test_geology == "both":
        volumes["test"] = make_seismic_volume(inlines, crosslines, depth, seed=same_seed, geology=train)
        volumes["shifted"] = make_seismic_volume(inlines, crosslines, depth, seed=test_seed, geology=test)
    else:
        volumes["test"] = make_seismic_volume(
            inlines, crosslines, depth, seed=test_seed, geology=test if test_geology == "shifted" else train
        )
    clip = amplitude_clip(vol_train.amplitude)
    splits: dict[str, Split] = {}
    names: dict[str, list[str]] = {}
    for split, vol in volumes.items():
        amplitude, masks, section_names = sections_from_volume(
            vol.amplitude, vol.labels, orientation=orientation, stride=stride
        )
        splits[split] = Split(torch.from_numpy(amplitude_to_uint8(amplitude, clip)), torch.from_numpy(masks))
        names[split] = section_names
    shares = np.bincount(vol_train.labels.reshape(-1), minlength=6) / vol_train.labels.size
    meta: dict[str, object] = {
        "ignore_index": PAD_LABEL,
        "section_names": names,
        "volume_shape": (inlines, crosslines, depth),
        "orientation": orientation,
        "stride": stride,
        "seed": int(seed),
        "test_geology": test_geology,
        "train_class_shares": [round(float(s), 4) for s in shares],
        "amplitude_clip": clip,
        "geology": {"train": dataclasses.asdict(train), "test": dataclasses.asdict(test)},
    }
    return Dataset("seismic-synthetic", F3_CLASSES, splits, "segmentation", "synthetic (seeded)", meta)


@register_dataset(
    "seismic-synthetic",
    description="synthetic F3-like seismic facies sections (6 facies); train and test volumes differ",
    options={
        "inlines": 48,
        "crosslines": 48,
        "depth": 96,
        "orientation": "both",
        "stride": 1,
        "test_geology": "shifted",
    },
)
def load_seismic_synthetic(
    root: Path | None,
    seed: int,
    *,
    inlines: int = 48,
    crosslines: int = 48,
    depth: int = 96,
    orientation: str = "both",
    stride: int = 1,
    test_geology: str = "shifted",
) -> Dataset:
    """Synthetic seismic facies (see :func:`synthetic_seismic`); ``root`` is ignored."""
    del root  # generated
    if orientation not in ORIENTATIONS:
        raise ConfigError(f"option 'orientation' must be one of {list(ORIENTATIONS)}, got {orientation!r}")
    return synthetic_seismic(
        inlines,
        crosslines,
        depth,
        seed=seed,
        orientation=orientation,  # type: ignore[arg-type]
        stride=_check_size("stride", stride, 1),
        test_geology=test_geology,  # type: ignore[arg-type]
    )
