"""Tests of the model zoo: shapes, the embed/head contract, seeding, MC dropout, errors, a tiny overfit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.models import (
    MODELS,
    Classifier,
    DeconvNet,
    Segmenter,
    UNet,
    build_model,
    count_parameters,
    has_dropout,
    list_models,
    mc_dropout,
    model_info,
    validate_options,
)

CLASSIFIERS = ["mlp", "small-cnn", "resnet18", "resnet34", "vgg11", "vgg16", "densenet121"]
SEGMENTERS = ["unet", "deconvnet"]

# Small variants keep the whole file fast on a shared CPU.
SMALL: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": (32, 16)},
    "small-cnn": {"width": 8},
    "resnet18": {"width": 8},
    "resnet34": {"width": 8},
    "vgg11": {"width": 8},
    "vgg16": {"width": 8},
    "densenet121": {"width": 4},
    "unet": {"base": 4},
    "deconvnet": {"base": 4},
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _small(name: str, in_channels: int, num_classes: int, seed: int = 0, **extra: Any) -> nn.Module:
    return build_model(name, in_channels, num_classes, seed=seed, **{**SMALL[name], **extra})


# ---------------------------------------------------------------- registry


def test_registry_lists_every_model_with_its_task() -> None:
    assert list_models() == sorted(CLASSIFIERS + SEGMENTERS)
    assert list_models("classification") == sorted(CLASSIFIERS)
    assert list_models("segmentation") == sorted(SEGMENTERS)
    assert set(MODELS) == set(CLASSIFIERS + SEGMENTERS)
    with pytest.raises(ConfigError, match="classification"):
        list_models("detection")  # type: ignore[arg-type]


def test_model_info_gives_task_and_defaults_that_validate() -> None:
    info = model_info("small-cnn")
    assert info["task"] == "classification"
    assert info["options"] == {"width": 32, "dropout": 0.25, "embed_dim": 128}
    assert model_info("unet")["task"] == "segmentation"
    assert model_info("unet")["options"]["base"] == 16
    assert model_info("unet")["options"]["depth"] == 4
    assert model_info("resnet18")["options"]["width"] == 64
    assert model_info("mlp")["options"]["image_size"] == 28
    for name in list_models():
        defaults = model_info(name)["options"]
        assert "dropout" in defaults
        assert validate_options(name, {}) == defaults


def test_names_are_case_and_separator_insensitive() -> None:
    model = build_model("Small_CNN", 1, 10, seed=0, width=4)
    assert model_info("SMALL_cnn")["name"] == "small-cnn"
    assert isinstance(model, Classifier)


def test_unknown_model_lists_the_known_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_model("resnet50", 3, 10)
    message = str(info.value)
    assert "resnet50" in message
    for name in list_models():
        assert name in message
    assert isinstance(info.value, ConfigError) and isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError):
        model_info("transformer")


def test_unknown_option_names_it_and_the_allowed_options() -> None:
    with pytest.raises(ConfigError) as info:
        build_model("small-cnn", 1, 10, widht=16)
    message = str(info.value)
    assert "'widht'" in message
    for allowed in ("width", "dropout", "embed_dim"):
        assert allowed in message
    with pytest.raises(ConfigError, match="upsample"):
        build_model("deconvnet", 1, 2, upsample="bilinear")


@pytest.mark.parametrize(
    ("name", "options", "key"),
    [
        ("small-cnn", {"dropout": 1.5}, "dropout"),
        ("small-cnn", {"dropout": -0.1}, "dropout"),
        ("resnet18", {"width": 0}, "width"),
        ("vgg11", {"width": 8.0}, "width"),
        ("vgg16", {"width": True}, "width"),
        ("mlp", {"hidden": [16, 0]}, "hidden"),
        ("mlp", {"hidden": "256"}, "hidden"),
        ("mlp", {"image_size": -1}, "image_size"),
        ("unet", {"upsample": "nearest"}, "upsample"),
        ("unet", {"depth": 0}, "depth"),
        ("deconvnet", {"base": "16"}, "base"),
    ],
)
def test_bad_option_value_names_the_option(name: str, options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_model(name, 1, 10, **options)
    assert repr(key) in str(info.value)
    assert name in str(info.value)


@pytest.mark.parametrize(("in_channels", "num_classes"), [(0, 10), (1, 0), (1.0, 10), (True, 10)])
def test_bad_channels_or_classes_are_config_errors(in_channels: Any, num_classes: Any) -> None:
    with pytest.raises(ConfigError, match=r"in_channels|num_classes"):
        build_model("mlp", in_channels, num_classes)


def test_options_are_normalised() -> None:
    model = build_model("mlp", 1, 3, seed=0, hidden=[8], dropout=0)
    assert model.embed_dim == 8
    assert isinstance(model.dropout_layer.p, float) and model.dropout_layer.p == 0.0
    logistic = build_model("mlp", 1, 3, seed=0, hidden=[], image_size=4)
    assert logistic.embed_dim == 16
    assert logistic(torch.rand(2, 1, 4, 4)).shape == (2, 3)


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32)])
def test_classifier_shapes_and_head_of_embed(name: str, shape: tuple[int, int, int, int]) -> None:
    b, c, h, _ = shape
    extra = {"image_size": h} if name == "mlp" else {}
    model = _small(name, c, 7, dropout=0.3, **extra).eval()
    assert isinstance(model, Classifier)
    assert isinstance(model.head, nn.Linear) and isinstance(model.dropout_layer, nn.Dropout)
    assert model.head.in_features == model.embed_dim and model.head.out_features == 7
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(x)
        emb = model.embed(x)
    assert logits.shape == (b, 7) and logits.dtype == torch.float32
    assert emb.shape == (b, model.embed_dim) and emb.dtype == torch.float32
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(model.head(emb), logits)
    torch.testing.assert_close(model.head(model.dropout_layer(emb)), logits)


def test_train_mode_forward_is_head_of_dropout_of_embed() -> None:
    model = build_model("small-cnn", 1, 5, seed=0, width=4, dropout=0.5).train()
    x = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(123)
    logits = model(x)
    torch.manual_seed(123)
    expected = model.head(model.dropout_layer(model.embed(x)))
    torch.testing.assert_close(logits, expected)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = _small(name, 3, 4, image_size=16) if name == "mlp" else _small(name, 3, 4)
    model.train()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    model(x).square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("side", [4, 8, 9, 28, 40])
def test_small_cnn_and_vgg_take_any_reasonable_input_size(side: int) -> None:
    for name in ("small-cnn", "vgg11", "vgg16", "resnet18", "densenet121"):
        model = _small(name, 1, 3).eval()
        with torch.no_grad():
            assert model(torch.rand(2, 1, side, side)).shape == (2, 3)


def test_mlp_rejects_a_wrong_input_size_naming_the_option() -> None:
    model = build_model("mlp", 1, 10, seed=0, hidden=(8,))
    with pytest.raises(ConfigError, match="image_size"):
        model(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("name", ["small-cnn", "resnet18", "densenet121", "unet", "deconvnet"])
def test_embed_is_float32_under_autocast(name: str) -> None:
    model = _small(name, 1, 3).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.embed(x).dtype == torch.float32
        assert model(x).shape[:2] == (2, 3)


def test_default_widths_have_the_reference_parameter_counts() -> None:
    # The CIFAR-style ResNet-18/34 of the literature (3x3 stem, no max-pool) at width 64, 10 classes.
    assert count_parameters(build_model("resnet18", 3, 10)) == 11_173_962
    assert count_parameters(build_model("resnet34", 3, 10)) == 21_282_122
    assert 9.0e6 < count_parameters(build_model("vgg11", 3, 10)) < 9.5e6
    assert 14.5e6 < count_parameters(build_model("vgg16", 3, 10)) < 15.0e6
    assert build_model("resnet18", 3, 10).embed_dim == 512
    assert build_model("vgg16", 3, 10).embed_dim == 512
    assert build_model("small-cnn", 1, 10).embed_dim == 128
    # DenseNet-121 of the CIFAR literature (DenseNet-BC, growth 32, blocks 6/12/24/16, 3x3 stem).
    assert count_parameters(build_model("densenet121", 3, 10)) == 6_956_298
    assert build_model("densenet121", 3, 10).embed_dim == 1024


def test_count_parameters_trainable_only() -> None:
    model = build_model("small-cnn", 1, 10, seed=0, width=4)
    total = count_parameters(model)
    model.head.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - (128 * 10 + 10)
    assert count_parameters(model) == total


def test_densenet121_trains_a_step() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
    model = build_model("densenet121", 3, 10, seed=0, width=4, dropout=0.2).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert losses[-1] < losses[0]


def test_small_cnn_overfits_32_random_images() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    model = build_model("small-cnn", 1, 10, seed=0, width=8, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    accuracy = 0.0
    for step in range(1, 401):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            with torch.no_grad():
                accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
            if accuracy == 1.0:
                break
    assert accuracy == 1.0


# ---------------------------------------------------------------- segmentation


@pytest.mark.parametrize("name", SEGMENTERS)
@pytest.mark.parametrize("shape", [(1, 1, 37, 53), (1, 1, 64, 64), (2, 3, 16, 5)])
def test_segmenter_shapes(name: str, shape: tuple[int, int, int, int]) -> None:
    b, c, h, w = shape
    model = _small(name, c, 6).eval()
    assert isinstance(model, Segmenter)
    assert isinstance(model.head, nn.Conv2d) and isinstance(model.dropout_layer, nn.Dropout2d)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = model(x)
        emb = model.embed(x)
    assert out.shape == (b, 6, h, w) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert emb.shape == (b, model.embed_dim) and emb.dtype == torch.float32


def test_segmenter_embed_dims() -> None:
    assert build_model("unet", 1, 2, base=16, depth=4).embed_dim == 256
    assert build_model("deconvnet", 1, 2, base=16, depth=4).embed_dim == 128
    assert build_model("unet", 1, 2, base=4, depth=2).embed_dim == 16


@pytest.mark.parametrize("upsample", ["bilinear", "transpose"])
def test_unet_upsampling_modes(upsample: str) -> None:
    model = build_model("unet", 1, 3, seed=0, base=4, depth=3, upsample=upsample).eval()
    assert isinstance(model, UNet)
    has_transpose = any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    assert has_transpose == (upsample == "transpose")
    with torch.no_grad():
        assert model(torch.rand(1, 1, 21, 30)).shape == (1, 3, 21, 30)


def test_deconvnet_uses_pooling_indices() -> None:
    model = build_model("deconvnet", 1, 3, seed=0, base=4, depth=2)
    assert isinstance(model, DeconvNet)
    assert model.pool.return_indices
    assert any(isinstance(m, nn.MaxUnpool2d) for m in model.modules())


def test_f3_sized_section() -> None:
    x = torch.rand(1, 1, 255, 701, generator=torch.Generator().manual_seed(5))
    for name in SEGMENTERS:
        model = _small(name, 1, 6).eval()
        with torch.no_grad():
            assert model(x).shape == (1, 6, 255, 701)


@settings(max_examples=12, deadline=None)
@given(
    name=st.sampled_from(SEGMENTERS),
    depth=st.integers(1, 4),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
)
def test_segmenter_output_matches_any_input_size(name: str, depth: int, h: int, w: int) -> None:
    torch.set_num_threads(1)
    model = build_model(name, 1, 2, seed=0, base=2, depth=depth).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, h, w)).shape == (1, 2, h, w)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenter_every_parameter_gets_a_gradient(name: str) -> None:
    model = _small(name, 1, 3).train()
    out = model(torch.rand(2, 1, 19, 23, generator=torch.Generator().manual_seed(6)))
    nn.functional.cross_entropy(out, torch.randint(0, 3, (2, 19, 23))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_segmenter_forward_pads_by_replication_and_crops() -> None:
    # Cropping keeps exactly the input's pixels: the output for an input already at a multiple of 2**depth
    # equals the crop of the output for the same input padded by replication (what forward does inside).
    model = build_model("unet", 1, 2, seed=0, base=2, depth=2).eval()
    x = torch.rand(1, 1, 10, 13, generator=torch.Generator().manual_seed(7))
    padded = nn.functional.pad(x, (0, 3, 0, 2), mode="replicate")
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :10, :13])


# ---------------------------------------------------------------- seeding


@pytest.mark.parametrize("name", list_models())
def test_seeded_init_is_deterministic(name: str) -> None:
    a = _small(name, 1, 3, seed=11).state_dict()
    b = _small(name, 1, 3, seed=11).state_dict()
    c = _small(name, 1, 3, seed=12).state_dict()
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    weights = [k for k in a if k.endswith("weight") and a[k].dim() > 1]
    assert weights
    assert any(not torch.equal(a[k], c[k]) for k in weights)
    assert all(not torch.equal(a[k], c[k]) for k in weights)


def test_seeded_build_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    build_model("small-cnn", 1, 10, seed=5, width=4)
    torch.testing.assert_close(torch.rand(3), expected)


def test_unseeded_build_uses_the_global_rng() -> None:
    torch.manual_seed(7)
    a = build_model("mlp", 1, 2, hidden=(4,), image_size=4).head.weight
    torch.manual_seed(7)
    b = build_model("mlp", 1, 2, hidden=(4,), image_size=4).head.weight
    c = build_model("mlp", 1, 2, hidden=(4,), image_size=4).head.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- dropout


def test_has_dropout() -> None:
    assert has_dropout(build_model("small-cnn", 1, 10, width=4))  # default p = 0.25
    assert not has_dropout(build_model("small-cnn", 1, 10, width=4, dropout=0.0))
    assert not has_dropout(build_model("resnet18", 1, 10, width=4))
    assert has_dropout(build_model("resnet18", 1, 10, width=4, dropout=0.1))
    assert not has_dropout(build_model("unet", 1, 2, base=2))
    assert has_dropout(build_model("unet", 1, 2, base=2, dropout=0.2))
    assert not has_dropout(nn.Linear(2, 2))


@pytest.mark.parametrize(
    ("name", "shape"),
    [("resnet18", (4, 1, 28, 28)), ("densenet121", (4, 1, 32, 32)), ("deconvnet", (1, 1, 20, 20))],
)
def test_mc_dropout_is_stochastic_in_eval_and_restores_modes(name: str, shape: tuple[int, ...]) -> None:
    model = _small(name, 1, 5, dropout=0.5)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        model.train()(x)  # realistic BatchNorm running statistics
    model.eval()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    with torch.no_grad():
        reference = model(x)
        with mc_dropout(model) as same:
            assert same is model
            assert model.dropout_layer.training
            assert not any(bn.training for bn in bns)
            assert not model.training
            first, second = model(x), model(x)
        assert not torch.allclose(first, second)
        torch.testing.assert_close(model(x), reference)
    assert not any(m.training for m in model.modules())


def test_mc_dropout_with_p0_is_deterministic() -> None:
    model = _small("small-cnn", 1, 5, dropout=0.0).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(9))
    with torch.no_grad(), mc_dropout(model):
        torch.testing.assert_close(model(x), model(x))


def test_mc_dropout_restores_each_flag_even_on_error() -> None:
    model = _small("resnet18", 1, 5, dropout=0.5)
    model.train()
    model.stages.eval()
    model.dropout_layer.eval()
    before = {name: m.training for name, m in model.named_modules()}
    with pytest.raises(RuntimeError, match="boom"), mc_dropout(model):
        assert model.dropout_layer.training
        assert not model.stages.training
        raise RuntimeError("boom")
    assert {name: m.training for name, m in model.named_modules()} == before
