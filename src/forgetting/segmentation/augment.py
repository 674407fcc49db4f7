"""Forgetting-guided augmentation: pick the frequently forgotten regions, restyle exactly those pixels.

Three pieces, each usable on its own:

* :func:`select_regions` turns a forgetting-count map ``[N, H, W]`` into float32 masks ``[N, H, W]`` in
  ``[0, 1]``: a threshold ``tau`` on the count, small components dropped, optionally only the ``top_k``
  sections with the most forgotten area, optionally a rectangular patch (bounding box plus a margin) around
  each connected component, optionally Gaussian-softened edges so the restyled region blends in.
* Weight-free style transfers behind one :class:`StyleTransfer` protocol,
  ``transfer(content_N_C_H_W, style_N_C_H_W, *, generator) -> stylized_N_C_H_W`` (float32 in ``[0, 1]``):
  ``"fda"`` (Fourier amplitude swap of a low-frequency band, Yang & Soatto 2020), ``"histogram"``
  (per-image, per-channel quantile matching), ``"random-conv"`` (a random ``k x k`` convolution rescaled to
  the content's mean and std, Xu et al. 2021). :func:`register_style_transfer` adds your own, e.g. an AdaIN
  network with pretrained weights.
* :func:`stylize_regions` applies a transfer to uint8 sections and blends it in with the mask; pixels
  with mask 0 are returned bit-identical, labels are never touched. :func:`augment_sections` builds the
  stylised copies of the selected sections with style sources drawn from a pool (other training sections,
  or unlabeled test-volume sections).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.segmentation.regions import connected_regions

__all__ = [
    "STYLE_TRANSFERS",
    "AugmentedSections",
    "FourierAmplitudeSwap",
    "HistogramMatch",
    "RandomConvolution",
    "StyleTransfer",
    "augment_sections",
    "blend",
    "get_style_transfer",
    "register_style_transfer",
    "select_regions",
    "stylize_regions",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------
# Region selection


def select_regions(
    forgetting_N_H_W: torch.Tensor | np.ndarray,
    *,
    tau: int = 2,
    top_k_sections: int | None = None,
    patch_margin: int | None = None,
    soft_sigma: float = 0.0,
    valid_N_H_W: torch.Tensor | np.ndarray | None = None,
    min_area: int = 1,
    connectivity: int = 2,
) -> np.ndarray:
    """Masks of the frequently forgotten regions, float32 ``[N, H, W]`` in ``[0, 1]``.

    Args:
        forgetting_N_H_W: integer forgetting counts per pixel.
        tau: a pixel is selected when forgotten at least ``tau`` times (integer >= 1).
        top_k_sections: keep only the ``k`` sections with the largest selected area (``None``: all).
        patch_margin: ``None``: the regions' own pixels; an integer ``m >= 0``: the bounding box of each
            connected component grown by ``m`` pixels on every side (clipped to the section).
        soft_sigma: ``> 0``: Gaussian-blur the mask edges (sigma in pixels, within each section) so that the
            mask ramps from 1 inside a region to 0 outside; values below 1e-3 are set to 0, so far-away
            pixels stay exactly unselected. ``0``: a hard 0/1 mask.
        valid_N_H_W: optional bool pixels that may be selected (e.g. not padding).
        min_area: connected components with fewer pixels are dropped.
        connectivity: 1 (4-neighbourhood) or 2 (8-neighbourhood) for the components.

    Returns:
        float32 ``[N, H, W]``; 1 on selected pixels, 0 elsewhere, in between on soft edges.
    """
    counts = (
        forgetting_N_H_W.cpu().numpy() if isinstance(forgetting_N_H_W, torch.Tensor) else forgetting_N_H_W
    )
    counts = np.asarray(counts)
    if counts.ndim != 3:
        raise ConfigError(f"select_regions needs forgetting counts [N, H, W], got shape {counts.shape}")
    if isinstance(tau, bool) or not isinstance(tau, int | np.integer) or tau < 1:
        raise ConfigError(f"regions.tau must be an integer >= 1, got {tau!r}")
    if top_k_sections is not None and top_k_sections < 1:
        raise ConfigError(f"regions.top_k_sections must be >= 1 or unset, got {top_k_sections!r}")
    if patch_margin is not None and patch_margin < 0:
        raise ConfigError(f"regions.patch_margin must be >= 0 or unset, got {patch_margin!r}")
    if soft_sigma < 0:
        raise ConfigError(f"regions.soft_sigma must be >= 0, got {soft_sigma!r}")
    hard = counts >= tau
    if valid_N_H_W is not None:
        valid = valid_N_H_W.cpu().numpy() if isinstance(valid_N_H_W, torch.Tensor) else valid_N_H_W
        hard &= np.asarray(valid, dtype=bool)
    regions = connected_regions(hard, connectivity=connectivity, min_area=min_area)
    hard = regions.labels > 0
    if top_k_sections is not None and top_k_sections < hard.shape[0]:
        area_N = hard.reshape(hard.shape[0], -1).sum(axis=1)
        order = np.argsort(-area_N, kind="stable")[:top_k_sections]
        keep = np.zeros(hard.shape[0], dtype=bool)
        keep[order[area_N[order] > 0]] = True
        hard &= keep[:, None, None]
    if patch_margin is not None:
        labels = np.where(hard, regions.labels, 0)
        patches = np.zeros_like(hard)
        _, h, w = hard.shape
        for box in ndimage.find_objects(labels):  # one bounding box per component (a few dozen)
            if box is None:
                continue
            sec, rows, cols = box
            r0, r1 = max(rows.start - patch_margin, 0), min(rows.stop + patch_margin, h)
            c0, c1 = max(cols.start - patch_margin, 0), min(cols.stop + patch_margin, w)
            patches[sec, r0:r1, c0:c1] = True
        hard = patches
    mask = hard.astype(np.float32)
    if soft_sigma > 0:
        blurred = ndimage.gaussian_filter(mask, sigma=(0.0, soft_sigma, soft_sigma), mode="constant")
        mask = np.maximum(mask, blurred).astype(np.float32)
        mask[mask < 1e-3] = 0.0
    return np.clip(mask, 0.0, 1.0)


# --------------------------------------------------------------------------------------------------------
# Style transfers


@runtime_checkable
class StyleTransfer(Protocol):
    """Restyle content images after style images (same shape), float32 ``[N, C, H, W]`` in ``[0, 1]``.

    ``content_N_C_H_W[i]`` takes the style of ``style_N_C_H_W[i]``; the result has the content's shape and
    dtype, values in ``[0, 1]``. All randomness must come from ``generator`` (a CPU ``torch.Generator``),
    so the same generator state gives the same output. Implementations see whole images; the mask is
    applied afterwards by :func:`blend`.
    """

    def __call__(
        self, content_N_C_H_W: torch.Tensor, style_N_C_H_W: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor: ...


def _check_pair(content: torch.Tensor, style: torch.Tensor, name: str) -> None:
    if content.ndim != 4 or style.shape != content.shape:
        raise ConfigError(
            f"style transfer {name!r} needs content and style of one shape [N, C, H, W], got "
            f"{tuple(content.shape)} and {tuple(style.shape)}"
        )
    if not content.dtype.is_floating_point:
        raise ConfigError(f"style transfer {name!r} needs float images in [0, 1], got {content.dtype}")


@dataclass(frozen=True)
class FourierAmplitudeSwap:
    """FDA (Yang & Soatto, 2020): swap the low-frequency Fourier amplitudes of the content for the style's.

    The phase (the structure: reflector positions, faults) stays the content's; the amplitude spectrum of the
    centred ``b x b`` low-frequency square, ``b = max(1, floor(beta * min(H, W)))``, comes from the style
    (overall contrast, slow amplitude trends). ``beta_jitter`` > 0 draws each image's band as
    ``beta * U(1 - beta_jitter, 1)`` from the generator; 0 makes the transfer deterministic given the pair.
    """

    beta: float = 0.1
    beta_jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.beta <= 1.0:
            raise ConfigError(f"style.options.beta (fda) must be in (0, 1], got {self.beta!r}")
        if not 0.0 <= self.beta_jitter < 1.0:
            raise ConfigError(f"style.options.beta_jitter (fda) must be in [0, 1), got {self.beta_jitter!r}")

    def __call__(
        self, content_N_C_H_W: torch.Tensor, style_N_C_H_W: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        _check_pair(content_N_C_H_W, style_N_C_H_W, "fda")
        n, _, h, w = content_N_C_H_W.shape
        device = content_N_C_H_W.device
        fc = torch.fft.fftshift(torch.fft.fft2(content_N_C_H_W.float()), dim=(-2, -1))
        fs = torch.fft.fftshift(torch.fft.fft2(style_N_C_H_W.float()), dim=(-2, -1))
        scale_N = 1.0 - self.beta_jitter * torch.rand(n, generator=generator)
        half_N = (torch.floor(self.beta * scale_N * min(h, w)).clamp_min(1.0) / 2).to(device)
        rows_H = (torch.arange(h, device=device) - h // 2).abs().float()
        cols_W = (torch.arange(w, device=device) - w // 2).abs().float()
        band_N_H_W = (rows_H[None, :, None] <= half_N[:, None, None]) & (
            cols_W[None, None, :] <= half_N[:, None, None]
        )
        amplitude = torch.where(band_N_H_W[:, None], fs.abs(), fc.abs())
        mixed = torch.polar(amplitude, fc.angle())
        out = torch.fft.ifft2(torch.fft.ifftshift(mixed, dim=(-2, -1))).real
        return out.clamp(0.0, 1.0).to(content_N_C_H_W.dtype)


@dataclass(frozen=True)
class HistogramMatch:
    """Per-image, per-channel histogram (quantile) matching of the content to the style.

    Each content value ``v`` goes to the style's value at the content CDF of ``v``: vectorised with one
    ``torch.sort`` of each image and one ``torch.searchsorted``; ties map together. ``strength`` in
    ``(0, 1]`` interpolates between the content (0) and the matched image (1); ``strength_jitter`` > 0 draws
    each image's strength as ``strength * U(1 - strength_jitter, 1)`` from the generator.
    """

    strength: float = 1.0
    strength_jitter: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 < self.strength <= 1.0:
            raise ConfigError(f"style.options.strength (histogram) must be in (0, 1], got {self.strength!r}")
        if not 0.0 <= self.strength_jitter < 1.0:
            raise ConfigError(
                f"style.options.strength_jitter (histogram) must be in [0, 1), got {self.strength_jitter!r}"
            )

    def __call__(
        self, content_N_C_H_W: torch.Tensor, style_N_C_H_W: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        _check_pair(content_N_C_H_W, style_N_C_H_W, "histogram")
        n, c, h, w = content_N_C_H_W.shape
        m = h * w
        x_NC_M = content_N_C_H_W.float().reshape(n * c, m).contiguous()
        s_sorted = style_N_C_H_W.float().reshape(n * c, m).sort(dim=1).values
        x_sorted = x_NC_M.sort(dim=1).values
        cdf = torch.searchsorted(x_sorted, x_NC_M, right=True)  # 1..M: values <= v
        matched = s_sorted.gather(1, (cdf - 1).clamp(0, m - 1)).reshape(n, c, h, w)
        strength_N = self.strength * (1.0 - self.strength_jitter * torch.rand(n, generator=generator))
        strength_N = strength_N.to(content_N_C_H_W.device)[:, None, None, None]
        out = torch.lerp(content_N_C_H_W.float(), matched, strength_N.expand_as(matched))
        return out.clamp(0.0, 1.0).to(content_N_C_H_W.dtype)


@dataclass(frozen=True)
class RandomConvolution:
    """Random-convolution texture (Xu et al., 2021): a fresh random ``k x k`` filter per image.

    The filter (``C -> C`` channels, Kaiming-normal, reflect padding) is drawn from the generator; the output
    is rescaled per image and channel to the content's mean and standard deviation, so the brightness
    and contrast stay and only the texture changes. ``kernel_sizes``: the odd sizes to draw from.
    ``mix`` in ``(0, 1]``: weight of the filtered image against the content.
    """

    kernel_sizes: tuple[int, ...] = (3, 5)
    mix: float = 0.8

    def __post_init__(self) -> None:
        if not self.kernel_sizes or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ConfigError(
                f"style.options.kernel_sizes (random-conv) must be odd sizes >= 1, got {self.kernel_sizes!r}"
            )
        if not 0.0 < self.mix <= 1.0:
            raise ConfigError(f"style.options.mix (random-conv) must be in (0, 1], got {self.mix!r}")

    def __call__(
        self, content_N_C_H_W: torch.Tensor, style_N_C_H_W: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        _check_pair(content_N_C_H_W, style_N_C_H_W, "random-conv")
        n, c, h, w = content_N_C_H_W.shape
        device = content_N_C_H_W.device
        x = content_N_C_H_W.float()
        pick = int(torch.randint(len(self.kernel_sizes), (1,), generator=generator))
        k = int(self.kernel_sizes[pick])
        weight = torch.randn(n * c, c, k, k, generator=generator) * (2.0 / (c * k * k)) ** 0.5
        pad = k // 2
        padded = (
            F.pad(x.reshape(1, n * c, h, w), (pad,) * 4, mode="reflect") if pad else x.reshape(1, -1, h, w)
        )
        y = F.conv2d(padded, weight.to(device), groups=n).reshape(n, c, h, w)
        mean_c, std_c = x.mean(dim=(-2, -1), keepdim=True), x.std(dim=(-2, -1), keepdim=True)
        mean_y, std_y = y.mean(dim=(-2, -1), keepdim=True), y.std(dim=(-2, -1), keepdim=True)
        y = (y - mean_y) / std_y.clamp_min(1e-6) * std_c + mean_c
        out = x + self.mix * (y - x)
        return out.clamp(0.0, 1.0).to(content_N_C_H_W.dtype)


#: Style-transfer factories by name: ``factory(**options) -> StyleTransfer``.
STYLE_TRANSFERS: dict[str, Callable[..., StyleTransfer]] = {
    "fda": FourierAmplitudeSwap,
    "histogram": HistogramMatch,
    "random-conv": RandomConvolution,
}


def register_style_transfer(
    name: str, factory: Callable[..., StyleTransfer], *, overwrite: bool = False
) -> None:
    """Make a style transfer available by name (config ``[style] method = name``).

    ``factory(**options)`` gets the config's ``[style.options]`` and returns a :class:`StyleTransfer`. A
    neural method with pretrained weights, e.g. AdaIN::

        class AdaIN:
            def __init__(self, weights: str, alpha: float = 1.0):
                self.net = load_my_adain(weights).eval()   # your encoder/decoder
                self.alpha = alpha
            def __call__(self, content, style, *, generator):  # float32 [N, C, H, W] in [0, 1]
                with torch.no_grad():
                    return self.net(content, style, alpha=self.alpha).clamp(0, 1)

        register_style_transfer("adain", AdaIN)

    The region mask, the uint8 conversion and the labels are handled by :func:`stylize_regions`.
    """
    if not name or not isinstance(name, str):
        raise ConfigError(f"a style transfer needs a non-empty name, got {name!r}")
    if not callable(factory):
        raise ConfigError(f"style transfer {name!r}: the factory must be callable, got {factory!r}")
    if name in STYLE_TRANSFERS and not overwrite:
        raise ConfigError(f"style transfer {name!r} is already registered; pass overwrite=True to replace it")
    STYLE_TRANSFERS[name] = factory


def get_style_transfer(name: str, **options: Any) -> StyleTransfer:
    """The registered style transfer ``name`` built with ``options``."""
    if name not in STYLE_TRANSFERS:
        raise UnknownNameError(f"unknown style transfer {name!r}; choose one of {sorted(STYLE_TRANSFERS)}")
    try:
        transfer = STYLE_TRANSFERS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"style.options for {name!r}: {exc}") from None
    if not callable(transfer):
        raise ConfigError(f"style transfer {name!r}: its factory returned {transfer!r}, not a callable")
    return transfer


# --------------------------------------------------------------------------------------------------------
# Applying a transfer to uint8 sections


def blend(content: torch.Tensor, stylized: torch.Tensor, mask_N_H_W: torch.Tensor) -> torch.Tensor:
    """``content * (1 - mask) + stylized * mask`` for float ``[N, C, H, W]`` and a mask ``[N, H, W]`` in
    ``[0, 1]`` (broadcast over channels); where the mask is 0 the content is returned exactly."""
    m = mask_N_H_W.to(content.dtype)[:, None]
    return torch.where(m > 0, content + m * (stylized - content), content)


def stylize_regions(
    images_N_C_H_W: torch.Tensor,
    style_N_C_H_W: torch.Tensor,
    mask_N_H_W: torch.Tensor | np.ndarray,
    transfer: StyleTransfer,
    *,
    generator: torch.Generator,
) -> torch.Tensor:
    """Restyle the masked pixels of uint8 sections, uint8 ``[N, C, H, W]`` out.

    Args:
        images_N_C_H_W: uint8 content sections.
        style_N_C_H_W: uint8 style sections, same shape (``style[i]`` styles ``images[i]``).
        mask_N_H_W: float in ``[0, 1]``; 0 keeps a pixel bit-identical, 1 takes the stylised value.
        transfer: a :class:`StyleTransfer`.
        generator: the transfer's randomness.
    """
    if images_N_C_H_W.dtype != torch.uint8 or style_N_C_H_W.dtype != torch.uint8:
        raise ConfigError(
            f"stylize_regions needs uint8 sections, got {images_N_C_H_W.dtype} and {style_N_C_H_W.dtype}"
        )
    mask = torch.as_tensor(mask_N_H_W, dtype=torch.float32, device=images_N_C_H_W.device)
    if mask.shape != (images_N_C_H_W.shape[0], *images_N_C_H_W.shape[2:]):
        raise ConfigError(
            f"region masks {tuple(mask.shape)} must be [N, H, W] of the sections "
            f"{tuple(images_N_C_H_W.shape)}"
        )
    content = images_N_C_H_W.float() / 255.0
    stylized = transfer(content, style_N_C_H_W.float() / 255.0, generator=generator)
    if stylized.shape != content.shape:
        raise ConfigError(
            f"the style transfer returned shape {tuple(stylized.shape)}, expected {tuple(content.shape)}"
        )
    mixed = blend(content, stylized.float().clamp(0.0, 1.0), mask)
    out = torch.round(mixed * 255.0).clamp(0, 255).to(torch.uint8)
    return torch.where(mask[:, None] > 0, out, images_N_C_H_W)  # exact outside the mask


@dataclass(frozen=True)
class AugmentedSections:
    """Stylised copies of the selected sections (labels are the sources' masks, unchanged).

    Attributes:
        images: uint8 ``[A, C, H, W]`` the stylised copies.
        source: int64 ``[A]`` the training section each copy was made from.
        style: int64 ``[A]`` the pool section that gave each copy its style.
        masks: float32 ``[A, H, W]`` the region mask applied to each copy.
    """

    images: torch.Tensor
    source: torch.Tensor
    style: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return int(self.source.numel())


def augment_sections(
    images_N_C_H_W: torch.Tensor,
    regions_N_H_W: torch.Tensor | np.ndarray,
    style_pool_M_C_H_W: torch.Tensor,
    transfer: StyleTransfer,
    *,
    copies: int = 2,
    generator: torch.Generator,
    pool_is_content: bool = False,
) -> AugmentedSections:
    """``copies`` stylised versions of every section with a non-empty region mask.

    Args:
        images_N_C_H_W: uint8 training sections.
        regions_N_H_W: float32 masks from :func:`select_regions`.
        style_pool_M_C_H_W: uint8 style sources of the same ``C, H, W`` (other training sections, or
            unlabeled sections of the test volume).
        transfer: a :class:`StyleTransfer`.
        copies: stylised copies per selected section (each with its own style source).
        generator: draws the style sources and the transfer's randomness.
        pool_is_content: the pool is ``images_N_C_H_W`` itself; a section is then never its own style.
    """
    mask = torch.as_tensor(np.asarray(regions_N_H_W), dtype=torch.float32)
    n = int(images_N_C_H_W.shape[0])
    if mask.shape != (n, *images_N_C_H_W.shape[2:]):
        raise ConfigError(
            f"region masks {tuple(mask.shape)} do not match sections {tuple(images_N_C_H_W.shape)}"
        )
    if style_pool_M_C_H_W.shape[1:] != images_N_C_H_W.shape[1:]:
        raise ConfigError(
            f"style sections {tuple(style_pool_M_C_H_W.shape)} must have the training sections' C, H, W "
            f"{tuple(images_N_C_H_W.shape[1:])}; use a pool cut to the same section size"
        )
    if copies < 1:
        raise ConfigError(f"style.copies must be >= 1, got {copies}")
    m = int(style_pool_M_C_H_W.shape[0])
    if m < (2 if pool_is_content else 1):
        raise ConfigError(f"the style pool has {m} sections; it needs at least {2 if pool_is_content else 1}")
    selected = torch.nonzero(mask.reshape(n, -1).amax(dim=1) > 0).reshape(-1)
    h, w = images_N_C_H_W.shape[-2:]
    if selected.numel() == 0:
        logger.warning("no frequently forgotten region selected: no augmented section is made")
        empty = images_N_C_H_W[:0]
        return AugmentedSections(
            empty, torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0, h, w)
        )
    source = selected.repeat(copies)
    if pool_is_content:  # uniform over the other sections: draw from M - 1, skip the source's own index
        style = torch.randint(m - 1, (source.numel(),), generator=generator)
        style = style + (style >= source).long()
    else:
        style = torch.randint(m, (source.numel(),), generator=generator)
    out = stylize_regions(
        images_N_C_H_W[source], style_pool_M_C_H_W[style], mask[source], transfer, generator=generator
    )
    logger.info(
        "augmented %d sections x %d copies = %d stylised sections", selected.numel(), copies, len(source)
    )
    return AugmentedSections(out, source, style, mask[source])
