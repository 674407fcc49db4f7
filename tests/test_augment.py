"""Forgetting-guided augmentation: region selection, the weight-free style transfers, the protocol and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from forgetting.cli import app
from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.segmentation.augment import (
    STYLE_TRANSFERS,
    StyleTransfer,
    augment_sections,
    blend,
    get_style_transfer,
    register_style_transfer,
    select_regions,
    stylize_regions,
)
from forgetting.segmentation.augment_protocol import (
    TABLE_COLUMNS,
    default_augment_config,
    parse_augment_config,
    random_flips,
    rotate_sections,
    run_augment_protocol,
    standard_augment,
)

BUILTIN = ("fda", "histogram", "random-conv")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _sections(seed: int = 0, n: int = 4, c: int = 1, h: int = 24, w: int = 16) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, h)[None, None, :, None] * torch.linspace(0.2, 1, w)[None, None, None, :]
    content = (ramp * 200 + torch.rand(n, c, h, w, generator=g) * 55).to(torch.uint8)
    style = (torch.rand(n, c, h, w, generator=g) ** 2 * 255).to(torch.uint8)
    mask = torch.zeros(n, h, w)
    mask[:, 4:12, 3:9] = 1.0
    mask[:, 12, 3:9] = 0.5  # a soft edge
    mask[-1] = 0.0  # one section without a region
    return content, style, mask


# ------------------------------------------------------------------ style transfers


@pytest.mark.parametrize("name", BUILTIN)
def test_style_transfer_preserves_shape_dtype_range(name: str) -> None:
    content, style, _ = _sections(c=2)
    transfer = get_style_transfer(name)
    assert isinstance(transfer, StyleTransfer)
    x = content.float() / 255
    y = transfer(x, style.float() / 255, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)  # it does restyle
    out = stylize_regions(
        content, style, torch.ones(content.shape[0], 24, 16), transfer, generator=torch.Generator()
    )
    assert out.shape == content.shape and out.dtype == torch.uint8


@pytest.mark.parametrize("name", BUILTIN)
def test_only_the_masked_region_changes(name: str) -> None:
    content, style, mask = _sections()
    out = stylize_regions(
        content, style, mask, get_style_transfer(name), generator=torch.Generator().manual_seed(3)
    )
    outside = (mask == 0)[:, None].expand_as(content)
    assert torch.equal(out[outside], content[outside])
    assert torch.equal(out[-1], content[-1])  # the section without a region is untouched
    inside = (mask == 1)[:, None].expand_as(content)
    assert bool((out[inside] != content[inside]).any())


@pytest.mark.parametrize("name", BUILTIN)
def test_deterministic_per_seed(name: str) -> None:
    content, style, mask = _sections()
    pool = torch.cat([style, content])
    transfer = get_style_transfer(name)

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return augment_sections(content, mask.numpy(), pool, transfer, copies=2, generator=g).images

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_soft_mask_blends_and_fda_keeps_phase_band() -> None:
    content, style, mask = _sections()
    x, s = content.float() / 255, style.float() / 255
    mixed = blend(x, s, mask)
    half = (mask == 0.5)[:, None].expand_as(x)
    torch.testing.assert_close(mixed[half], 0.5 * (x[half] + s[half]))
    # with the same style image as content, FDA changes nothing (up to float error)
    same = get_style_transfer("fda", beta=0.2, beta_jitter=0.0)(x, x, generator=torch.Generator())
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)


def test_histogram_matching_takes_the_style_distribution() -> None:
    content, style, _ = _sections()
    x, s = content.float() / 255, style.float() / 255
    y = get_style_transfer("histogram", strength=1.0, strength_jitter=0.0)(x, s, generator=torch.Generator())
    # the matched image's sorted values are (a subset of) the style's
    assert torch.isin(y.reshape(-1), s.reshape(-1)).all()
    assert abs(float(y.mean() - s.mean())) < abs(float(x.mean() - s.mean()))


def test_registry_and_options() -> None:
    assert set(BUILTIN) <= set(STYLE_TRANSFERS)
    with pytest.raises(UnknownNameError, match="choose one of"):
        get_style_transfer("adain-nope")
    with pytest.raises(ConfigError, match="beta"):
        get_style_transfer("fda", beta=2.0)
    with pytest.raises(ConfigError, match=r"style\.options"):
        get_style_transfer("histogram", nope=1)

    class Invert:  # a user "neural" method
        def __init__(self, amount: float = 1.0) -> None:
            self.amount = amount

        def __call__(
            self, content: torch.Tensor, style: torch.Tensor, *, generator: torch.Generator
        ) -> torch.Tensor:
            return (1 - content) * self.amount

    register_style_transfer("test-invert", Invert)
    try:
        with pytest.raises(ConfigError, match="already registered"):
            register_style_transfer("test-invert", Invert)
        content, style, mask = _sections()
        out = stylize_regions(
            content, style, mask, get_style_transfer("test-invert"), generator=torch.Generator()
        )
        inside = (mask == 1)[:, None].expand_as(content)
        assert torch.equal(out[inside], 255 - content[inside])
    finally:
        STYLE_TRANSFERS.pop("test-invert", None)


# ------------------------------------------------------------------ region selection


def _maps() -> np.ndarray:
    f = np.zeros((3, 20, 20), dtype=np.int64)
    f[0, 2:6, 2:6] = 3  # 16 px, section 0
    f[0, 15, 15] = 5  # a single pixel
    f[1, 8:10, 8:14] = 2  # 12 px, section 1
    f[2, 0:2, 0:2] = 1  # below tau
    return f


def test_select_regions_threshold_min_area_and_valid() -> None:
    m = select_regions(_maps(), tau=2)
    assert m.dtype == np.float32 and m.shape == (3, 20, 20)
    assert set(np.unique(m)) == {0.0, 1.0}
    assert m[0].sum() == 17 and m[1].sum() == 12 and m[2].sum() == 0
    assert select_regions(_maps(), tau=2, min_area=4)[0].sum() == 16  # the single pixel is dropped
    assert select_regions(_maps(), tau=3).sum() == 17
    valid = np.ones((3, 20, 20), dtype=bool)
    valid[0] = False
    assert select_regions(_maps(), tau=2, valid_N_H_W=valid)[0].sum() == 0
    with pytest.raises(ConfigError, match="tau"):
        select_regions(_maps(), tau=0)


def test_select_regions_top_k_patches_and_soft_edges() -> None:
    top = select_regions(_maps(), tau=2, top_k_sections=1)
    assert top[0].sum() == 17 and top[1].sum() == 0
    patches = select_regions(_maps(), tau=2, patch_margin=1, min_area=2)
    assert patches[0].sum() == 36  # (4 + 2) x (4 + 2) box
    assert patches[1].sum() == 4 * 8
    soft = select_regions(_maps(), tau=2, soft_sigma=1.5)
    hard = select_regions(_maps(), tau=2)
    assert np.all(soft[hard == 1] == 1.0)
    edge = soft[(hard == 0) & (soft > 0)]
    assert edge.size > 0 and np.all((edge > 0) & (edge < 1))
    assert soft[2].sum() == 0 and soft[0, 19, 0] == 0.0  # far away stays exactly 0


def test_augment_sections_labels_and_pool_exclusion() -> None:
    content, _style, mask = _sections(n=5)
    aug = augment_sections(
        content, mask.numpy(), content, get_style_transfer("histogram"), copies=3,
        generator=torch.Generator().manual_seed(0), pool_is_content=True,
    )  # fmt: skip
    assert len(aug) == 3 * 4  # the section without a region is not copied
    assert not bool((aug.style == aug.source).any())
    assert aug.images.dtype == torch.uint8 and aug.masks.shape == (12, 24, 16)


def test_random_flips_move_image_and_mask_together() -> None:
    x = torch.arange(2 * 1 * 4 * 3, dtype=torch.float32).reshape(2, 1, 4, 3)
    y = x[:, 0].long()
    for seed in range(4):
        fx, fy = random_flips(x, y, torch.Generator().manual_seed(seed), updown=True)
        assert torch.equal(fx[:, 0].long(), fy)
        lx, _ = random_flips(x, y, torch.Generator().manual_seed(seed))  # default: left-right only
        assert all(torch.equal(lx[i], x[i]) or torch.equal(lx[i], x[i].flip(-1)) for i in range(2))


def test_rotate_sections_is_a_pixel_space_rotation() -> None:
    from scipy import ndimage

    square = torch.arange(16).reshape(1, 4, 4)
    x, y = rotate_sections(square[:, None].float(), square, torch.tensor([90.0]), fill=255)
    assert torch.equal(y, torch.rot90(square, 1, (1, 2)))  # positive = counter-clockwise on screen
    torch.testing.assert_close(x[:, 0], y.float())
    tall = torch.arange(32).reshape(1, 8, 4)  # not square: no shear from the normalised grid
    _, y = rotate_sections(tall[:, None].float(), tall, torch.tensor([180.0]), fill=255)
    assert torch.equal(y, tall.flip(-1).flip(-2))
    x, y = rotate_sections(tall[:, None].float(), tall, torch.tensor([0.0]), fill=255)
    assert torch.equal(y, tall) and torch.equal(x[:, 0], tall.float())  # angle 0: bit for bit
    # +-10 degrees on an 80 x 40 section of facies bands: scipy's nearest rotation agrees almost everywhere
    bands = (torch.arange(80)[:, None] // 10 + 8 * (torch.arange(40)[None, :] // 20)).expand(80, 40)[None]
    for angle in (10.0, -10.0):
        x, y = rotate_sections(bands[:, None].float(), bands, torch.tensor([angle]), fill=255)
        ref = ndimage.rotate(bands[0].numpy(), angle, reshape=False, order=0, mode="constant", cval=255)
        assert (y[0].numpy() == ref).mean() > 0.95
        outside = y[0] == 255  # rotated in from outside the frame: the ignore index, and 0 in the image
        assert 0.05 < outside.float().mean() < 0.15
        assert set(torch.unique(y[0][~outside]).tolist()) <= set(torch.unique(bands).tolist())
        assert float(x[0, 0][outside].abs().max()) < float(bands.max())  # faded towards the zero padding


def test_standard_augment_rotates_half_the_sections_by_plus_or_minus_10() -> None:
    n = 400
    y = torch.zeros(n, 20, 10, dtype=torch.long)
    x = torch.ones(n, 1, 20, 10)
    _, ry = standard_augment(x, y, torch.Generator().manual_seed(0), flips="none", fill=255)
    turned = (ry == 255).flatten(1).any(1)
    assert 0.4 < turned.float().mean() < 0.6
    # the same draws whatever the flips: with flips the rotated set is the same
    _, fy = standard_augment(x, y, torch.Generator().manual_seed(0), flips="lr", fill=255)
    assert torch.equal((fy == 255).flatten(1).any(1), turned)
    # each turned section is the +10 or the -10 degree rotation, and both signs occur
    ramp = torch.arange(10).expand(n, 20, 10).contiguous()
    _, out = standard_augment(
        ramp[:, None].float(), ramp, torch.Generator().manual_seed(0), flips="none", fill=255
    )
    plus = [
        rotate_sections(ramp[:1, None].float(), ramp[:1], torch.tensor([a]), fill=255)[1][0]
        for a in (10.0, -10.0)
    ]
    sign = torch.tensor([0 if torch.equal(o, ramp[0]) else 1 if torch.equal(o, plus[0]) else
                         -1 if torch.equal(o, plus[1]) else 9 for o in out])  # fmt: skip
    assert torch.equal(sign != 0, turned) and set(sign.tolist()) == {-1, 0, 1}
    _, same = standard_augment(x, y, torch.Generator().manual_seed(0), rotation=0.0, flips="none", fill=255)
    assert torch.equal(same, y)


# ------------------------------------------------------------------ protocol


TINY = {
    "seeds": [0, 1],
    "device": "cpu",
    "threads": 1,
    "model_options": {"base": 4, "depth": 2},
    "data": {"options": {"inlines": 12, "crosslines": 12, "depth": 32, "stride": 2}},
    "train": {"epochs": 3, "batch_size": 4},
    "regions": {"tau": 1, "min_region_area": 1, "soft_sigma": 1.0},
    "style": {"method": "histogram", "copies": 1},
    "report": {"examples": 2},
}


def test_protocol_end_to_end(tmp_path: Path) -> None:
    result = run_augment_protocol(parse_augment_config(TINY), tmp_path / "run")
    out = tmp_path / "run"
    assert (out / "report" / "index.html").is_file() and (out / "table.md").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["table"] == result.table == (out / "table.md").read_text().strip()
    steps = {summary["per_seed"][s][a]["steps"] for s in ("0", "1") for a in summary["arms"]}
    assert steps == {summary["budget"]["steps"]} == {3 * 3}  # identical budget: 3 epochs of ceil(12 / 4)
    sel = summary["per_seed"]["0"]["selection"]
    assert sel["mean_abs_change_in_mask"] >= 0
    assert summary["per_seed"]["0"]["ours"]["sections"] == 12 + sel["stylised_copies"]
    if sel["stylised_copies"]:
        assert list((out / "report").glob("example-*.png"))
    # the printed table's numbers are the stored aggregates
    lines = result.table.splitlines()[3:]
    for arm, line in zip(summary["arms"], lines, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == arm
        for (path, _, digits), cell in zip(TABLE_COLUMNS, cells[1:], strict=True):
            agg = summary["aggregate"][arm][path]
            assert cell == f"{agg['mean']:.{digits}f} ± {agg['std']:.{digits}f}"
            values = agg["values"]
            assert agg["mean"] == pytest.approx(float(np.mean(values)))
            assert values[0] == pytest.approx(_lookup(summary["per_seed"]["0"][arm], path))


def _lookup(record: dict, path: str) -> float:
    for part in path.split("."):
        record = record[part]
    return float(record)  # type: ignore[arg-type]


def test_standard_arm_defaults_and_the_rotation_only_benchmark() -> None:
    from forgetting.segmentation.augment_protocol import load_augment_config

    default = default_augment_config()
    assert (default.train.standard_rotation, default.train.standard_flips) == (10.0, "lr")
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "augment_rotation_only.toml"
    only = load_augment_config(bench)
    assert (only.train.standard_rotation, only.train.standard_flips) == (10.0, "none")
    assert only.arms == ["standard", "standard+ours"]
    same = {"train", "arms", "name"}
    assert {k: v for k, v in only.model_dump().items() if k not in same} == {
        k: v for k, v in default.model_dump().items() if k not in same
    }
    with pytest.raises(ConfigError, match="standard_flips"):
        parse_augment_config({"train": {"standard_flips": "ud"}})


def test_config_errors_and_cli_exit_code(tmp_path: Path) -> None:
    assert default_augment_config().seeds == [0, 1, 2]
    with pytest.raises(ConfigError, match="unknown key"):
        parse_augment_config({"nope": 1})
    with pytest.raises(UnknownNameError, match=r"style\.method"):
        parse_augment_config({"style": {"method": "nope"}})
    bad = tmp_path / "bad.toml"
    bad.write_text('[style]\nmethod = "nope"\n')
    result = CliRunner().invoke(app, ["augment", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["augment", "--seeds", "a,b", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2


def test_augment_training_set_takes_styles_from_the_configured_source() -> None:
    from forgetting.segmentation.augment_protocol import augment_training_set, load_protocol_data

    config = parse_augment_config({**TINY, "style": {"method": "histogram", "source": "test", "copies": 1}})
    data = load_protocol_data(config)
    forgetting = np.zeros(tuple(data.train.targets.shape), np.int64)
    forgetting[:3, 4:10, 2:6] = 5
    aug, copies, selection = augment_training_set(config, data, forgetting, seed=7)
    assert selection["sections"] == 3 and len(aug) == len(data.train) + 3
    regions = select_regions(forgetting, tau=1, soft_sigma=1.0, valid_N_H_W=data.valid["train"], min_area=1)
    expected = augment_sections(
        data.train.images,
        regions,
        data.test.images,  # the unlabeled test sections are the style sources
        get_style_transfer("histogram"),
        copies=1,
        generator=torch.Generator().manual_seed(7),
    )
    assert torch.equal(copies.images, expected.images) and torch.equal(copies.style, expected.style)
    torch.testing.assert_close(aug.targets[len(data.train) :], data.train.targets[:3])
