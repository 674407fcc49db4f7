"""CIFAR-10-C-style corruptions: shapes, dtypes, determinism, severity ordering, errors, JPEG fidelity."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import forgetting.data as fd
from forgetting.data.corruptions import GRAYSCALE_CORRUPTIONS, RGB_ONLY
from forgetting.exceptions import ConfigError, UnknownNameError

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
RANDOM = (*NOISE, "motion_blur", "elastic_transform")


@pytest.fixture(scope="module")
def gray() -> torch.Tensor:
    """Eight real MNIST digits, ``uint8 [8, 1, 28, 28]``."""
    return fd.load_dataset("mnist-5k").test.images[:8]


@pytest.fixture(scope="module")
def rgb(gray: torch.Tensor) -> torch.Tensor:
    """The digits coloured: a random foreground and background colour per image, ``uint8 [8, 3, 28, 28]``."""
    g = torch.Generator().manual_seed(0)
    fg = torch.rand(8, 3, 1, 1, generator=g)
    bg = torch.rand(8, 3, 1, 1, generator=g) * 0.5
    ink = gray.float() / 255
    return ((ink * fg + (1 - ink) * bg) * 255).round().to(torch.uint8)


def _images(kind: str, gray: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    return gray if kind == "gray" else rgb


def _change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


@pytest.mark.parametrize("kind", ["gray", "rgb"])
@pytest.mark.parametrize("name", fd.CORRUPTIONS)
def test_every_corruption_and_severity(name: str, kind: str, gray: torch.Tensor, rgb: torch.Tensor) -> None:
    images = _images(kind, gray, rgb)
    if kind == "gray" and name in RGB_ONLY:
        with pytest.raises(ConfigError) as info:
            fd.corrupt(images, name, 3, seed=0)
        assert "gaussian_noise" in str(info.value)  # names the corruptions that do work on grayscale
        return
    changes = []
    for severity in range(1, 6):
        out = fd.corrupt(images, name, severity, seed=0)
        assert out.dtype == torch.uint8 and out.shape == images.shape and out.device == images.device
        changes.append(_change(out, images))
    assert changes[0] > 0.0
    assert changes[4] > changes[0], f"{name} {kind}: severity 5 should change more than 1: {changes}"


@pytest.mark.parametrize("name", fd.CORRUPTIONS)
def test_deterministic_per_seed(name: str, rgb: torch.Tensor) -> None:
    a = fd.corrupt(rgb, name, 4, seed=11)
    assert torch.equal(a, fd.corrupt(rgb, name, 4, seed=11))
    if name in RANDOM:
        assert not torch.equal(a, fd.corrupt(rgb, name, 4, seed=12))


@pytest.mark.parametrize("kind", ["gray", "rgb"])
@pytest.mark.parametrize("name", fd.CORRUPTIONS)
def test_small_images(name: str, kind: str) -> None:
    channels = 1 if kind == "gray" else 3
    if channels == 1 and name in RGB_ONLY:
        return
    images = torch.randint(
        0, 256, (3, channels, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    out = fd.corrupt(images, name, 5, seed=0)
    assert out.shape == (3, channels, 8, 8) and out.dtype == torch.uint8
    odd = torch.randint(0, 256, (2, channels, 11, 13), dtype=torch.uint8)
    assert fd.corrupt(odd, name, 2, seed=0).shape == odd.shape


def test_noise_statistics(gray: torch.Tensor) -> None:
    flat = torch.full((64, 1, 16, 16), 128, dtype=torch.uint8)
    noisy = fd.corrupt(flat, "gaussian_noise", 5, seed=0).float()
    assert abs(float(noisy.mean()) - 128) < 1.0
    assert abs(float(noisy.std()) - 0.10 * 255) < 1.0  # CIFAR-10-C severity 5: sigma 0.10
    impulse = fd.corrupt(flat, "impulse_noise", 5, seed=0)
    hit = (impulse == 0) | (impulse == 255)
    assert abs(float(hit.float().mean()) - 0.07) < 0.01  # amount 0.07, half salt half pepper
    assert abs(float((impulse == 0).float().mean()) - 0.035) < 0.01


def test_photometric_values() -> None:
    gray = torch.tensor([[[[0, 100], [200, 100]]]], dtype=torch.uint8)
    bright = fd.corrupt(gray, "brightness", 5, seed=0).flatten().float()  # + 0.3 * 255 = 76.5
    assert torch.allclose(bright, torch.tensor([76.5, 176.5, 255.0, 176.5]), atol=0.51)
    contrast = fd.corrupt(gray, "contrast", 5, seed=0).float()
    assert torch.allclose(contrast.mean(), gray.float().mean(), atol=0.5)
    assert float(contrast.std()) < 0.2 * float(gray.float().std())
    # brightness keeps hue and saturation: an RGB pixel is scaled, black turns gray
    rgb = torch.tensor([[[[0, 100]], [[0, 50]], [[0, 0]]]], dtype=torch.uint8)
    bright = fd.corrupt(rgb, "brightness", 1, seed=0)[0, :, 0]
    assert bright[:, 0].tolist() == [13, 13, 13]
    assert bright[:, 1].tolist() == [113, 56, 0]


def test_saturate_keeps_gray_value_and_hue() -> None:
    rgb = torch.tensor([[[[200]], [[150]], [[100]]]], dtype=torch.uint8)
    out = fd.corrupt(rgb, "saturate", 1, seed=0)[0, :, 0, 0].float()  # s: 0.5 -> 0.75
    assert out[0] == 200  # value (max) kept
    assert torch.allclose(out, torch.tensor([200.0, 125.0, 50.0]), atol=1.0)


def test_blur_preserves_flat_images_and_mean() -> None:
    flat = torch.full((2, 3, 20, 20), 77, dtype=torch.uint8)
    for name in ("gaussian_blur", "defocus_blur", "motion_blur", "pixelate", "elastic_transform"):
        assert torch.all(fd.corrupt(flat, name, 5, seed=0) == 77), name


def test_jpeg_matches_pillow(gray: torch.Tensor, rgb: torch.Tensor) -> None:
    pil = pytest.importorskip("PIL.Image")
    for images, tolerance in ((gray, 0.5), (rgb, 2.0)):
        for severity, quality in ((1, 80), (5, 40)):
            ours = fd.corrupt(images, "jpeg_compression", severity, seed=0)
            reference = []
            for image in images:
                array = image.permute(1, 2, 0).numpy()
                buffer = io.BytesIO()
                pil.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(
                    buffer, "JPEG", quality=quality
                )
                decoded = np.asarray(pil.open(io.BytesIO(buffer.getvalue())))
                reference.append(decoded.reshape(array.shape))
            ref = torch.from_numpy(np.stack(reference)).permute(0, 3, 1, 2)
            # the round trip changes the images by about as much as libjpeg's, and in the same places
            assert _change(ours, ref) < tolerance
            assert abs(_change(ours, images) - _change(ref, images)) < 0.1 * _change(ref, images) + 0.1


def test_chunking_does_not_break_determinism(monkeypatch: pytest.MonkeyPatch, rgb: torch.Tensor) -> None:
    from forgetting.data import corruptions

    whole = fd.corrupt(rgb, "contrast", 3, seed=0)
    monkeypatch.setattr(corruptions, "_CHUNK_VALUES", 3 * 28 * 28 * 3)  # 3 images per chunk
    assert torch.equal(fd.corrupt(rgb, "contrast", 3, seed=0), whole)
    chunked = fd.corrupt(rgb, "gaussian_noise", 3, seed=0)
    assert torch.equal(chunked, fd.corrupt(rgb, "gaussian_noise", 3, seed=0))


def test_errors(gray: torch.Tensor) -> None:
    with pytest.raises(UnknownNameError) as info:
        fd.corrupt(gray, "fog", 1, seed=0)
    assert "gaussian_noise" in str(info.value) and "elastic_transform" in str(info.value)
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ConfigError, match=r"1\.\.5"):
            fd.corrupt(gray, "contrast", bad, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="uint8"):
        fd.corrupt(gray.float(), "contrast", 1, seed=0)
    assert set(GRAYSCALE_CORRUPTIONS) == set(fd.CORRUPTIONS) - RGB_ONLY
    assert len(fd.CORRUPTIONS) >= 13


def test_empty_batch() -> None:
    empty = torch.zeros((0, 3, 16, 16), dtype=torch.uint8)
    assert fd.corrupt(empty, "motion_blur", 3, seed=0).shape == empty.shape


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", fd.CORRUPTIONS)
def test_cuda(name: str, rgb: torch.Tensor) -> None:
    images = rgb.cuda()
    out = fd.corrupt(images, name, 5, seed=3)
    assert out.device == images.device and out.dtype == torch.uint8
    assert torch.equal(out, fd.corrupt(images, name, 5, seed=3))
    if name not in RANDOM:  # deterministic corruptions agree with the CPU up to rounding
        cpu = fd.corrupt(rgb, name, 5, seed=3)
        assert (out.cpu().float() - cpu.float()).abs().max() <= 1
