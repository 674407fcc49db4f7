"""Active learning for segmentation: reductions, strategies on pixel inputs, and a 2-round integration run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from forgetting.data import load_dataset, parse_eval_set_name
from forgetting.data.dataset import Split
from forgetting.data.source import TensorSource
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.experiments import ResultStore, expand_grid, parse_config, run_experiments
from forgetting.loop import LoopConfig, run_active_learning
from forgetting.segmentation import SegmentationTask
from forgetting.segmentation.active import (
    PixelScoreReducer,
    SegmentationOptions,
    queried_section_arrays,
    reduce_pixel_scores,
    segmentation_eval_metrics,
    segmentation_form,
    segmentation_strategies,
    segmentation_strategy_inputs,
)
from forgetting.strategies import StrategyInputs, entropy_scores, get_strategy
from forgetting.training import TrainConfig

# ------------------------------------------------------------------------------------------- reductions


def test_mean_sum_and_top_q_by_hand():
    s = torch.tensor(
        [
            [[1.0, 2.0], [3.0, 4.0]],
            [[0.0, 0.0], [0.0, 8.0]],
        ]
    )
    assert reduce_pixel_scores(s, reduction="mean").tolist() == [2.5, 2.0]
    assert reduce_pixel_scores(s, reduction="sum").tolist() == [10.0, 8.0]
    # q = 0.5: the mean of the top ceil(0.5 * 4) = 2 pixels
    assert reduce_pixel_scores(s, reduction="top-q", top_q=0.5).tolist() == [3.5, 4.0]
    # q small: at least one pixel, the maximum
    assert reduce_pixel_scores(s, reduction="top-q", top_q=0.01).tolist() == [4.0, 8.0]
    # top-q ranks the section with one hot spot first, mean the section that is warm everywhere
    assert reduce_pixel_scores(s, reduction="mean").argmax() == 0
    assert reduce_pixel_scores(s, reduction="top-q", top_q=0.25).argmax() == 1


def test_valid_pixels_only_and_nan_without_any():
    s = torch.tensor([[[1.0, 9.0]], [[5.0, 7.0]]])
    valid = torch.tensor([[[True, False]], [[False, False]]])
    for reduction, first in (("mean", 1.0), ("sum", 1.0), ("top-q", 1.0)):
        out = reduce_pixel_scores(s, reduction=reduction, valid_N_H_W=valid, top_q=1.0)
        assert out[0].item() == first
        assert math.isnan(out[1].item())


def test_class_balanced_weights_rare_predicted_classes_up():
    # Pool: 3 pixels predicted class 0 for every 1 of class 1 overall -> weights 1/0.75 and 1/0.25.
    s = torch.tensor([[[1.0, 1.0, 1.0, 5.0]], [[2.0, 2.0, 2.0, 2.0]]])
    pred = torch.tensor([[[0, 0, 0, 1]], [[0, 0, 0, 1]]])
    out = reduce_pixel_scores(s, reduction="class-balanced", pred_N_H_W=pred, num_classes=2)
    w0, w1 = 1 / 0.75, 1 / 0.25
    expected0 = (3 * 1.0 * w0 + 5.0 * w1) / (3 * w0 + w1)
    assert out[0].item() == pytest.approx(expected0)
    assert out[1].item() == pytest.approx(2.0)
    # the plain mean of section 0 is 2.0: the rare class pulls the balanced score towards its 5.0
    assert reduce_pixel_scores(s, reduction="mean")[0].item() == 2.0
    assert out[0].item() > 2.0
    with pytest.raises(ValueError, match="class-balanced"):
        reduce_pixel_scores(s, reduction="class-balanced")


@pytest.mark.parametrize("reduction", ["mean", "sum", "top-q", "class-balanced"])
def test_streaming_updates_by_row_index_equal_one_shot(reduction):
    g = torch.Generator().manual_seed(0)
    s = torch.rand(7, 5, 6, generator=g)
    pred = torch.randint(0, 3, (7, 5, 6), generator=g)
    whole = reduce_pixel_scores(s, reduction=reduction, pred_N_H_W=pred, num_classes=3, top_q=0.2)
    reducer = PixelScoreReducer(7, 3, reduction=reduction, top_q=0.2)
    for rows in (torch.tensor([6, 0, 3]), torch.tensor([1, 2]), torch.tensor([5, 4])):
        reducer.update(rows, s[rows], pred[rows])
    torch.testing.assert_close(reducer.finalize(), whole)


def test_reducer_rejects_bad_settings():
    with pytest.raises(ConfigError, match="reduction"):
        PixelScoreReducer(3, 2, reduction="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="top_q"):
        PixelScoreReducer(3, 2, reduction="top-q", top_q=0.0)
    with pytest.raises(ConfigError, match=r"segmentation\.reduction"):
        SegmentationOptions(reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="class_weights"):
        SegmentationOptions(class_weights="inverse")


# ------------------------------------------------------------------------------------------- strategies


@pytest.mark.parametrize(
    ("name", "options", "form"),
    [
        ("random", {}, "none"),
        ("entropy", {}, "pixel-probs"),
        ("margin", {}, "pixel-probs"),
        ("least-confidence", {}, "pixel-probs"),
        ("switch", {}, "pixel-switches"),
        ("gauss", {}, "pixel-switches"),
        ("sampled-switch", {}, "pixel-switches"),
        ("sampled-count", {}, "pixel-switches"),
        ("coreset", {}, "embeddings"),
        ("bald", {}, "pixel-mc"),
    ],
)
def test_segmentation_forms(name, options, form):
    assert segmentation_form(get_strategy(name, **options)) == form


@pytest.mark.parametrize(
    ("name", "options"),
    [("badge", {}), ("batchbald", {}), ("forgetting", {}), ("switch", {"tie_break": "entropy"})],
)
def test_strategies_without_a_segmentation_form_fail_with_the_list(name, options):
    with pytest.raises(ConfigError, match=r"segmentation experiments support: .*entropy.*switch"):
        segmentation_form(get_strategy(name, **options))


def test_scores_file_strategies_rank_one_score_per_section(tmp_path):
    path = tmp_path / "scores.npy"
    np.save(path, np.array([0.0, 5.0, 1.0, 9.0]))
    strategy = get_strategy("switch", scores_file=str(path))
    assert segmentation_form(strategy) == "image-scores"
    assert "switch" in segmentation_strategies() and "badge" not in segmentation_strategies()


class _TinySegmenter(nn.Module):
    """A 1x1-conv segmenter with a pooled embedding, enough to exercise the pixel paths exactly."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Conv2d(4, k, 1)
        self.embed_dim = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.conv(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The documented embedding hook of a user model: a feature map, averaged to [B, 4] by the loop."""
        return torch.tanh(self.conv(x))


def _pool_images(n: int = 6, h: int = 8, w: int = 5) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, h, w), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_pixel_probability_scores_equal_the_strategy_score_on_every_pixel():
    model = _TinySegmenter().eval()
    images = _pool_images()
    pool = np.arange(2, 6)
    pool_t = torch.from_numpy(pool)
    labeled_t = torch.tensor([0, 1])
    options = SegmentationOptions(reduction="mean")
    got = segmentation_strategy_inputs(
        model,
        get_strategy("entropy"),
        pool=TensorSource(images[pool_t]),
        labeled=TensorSource(images[labeled_t]),
        pool_indices=pool,
        num_classes=3,
        options=options,
        batch_size=3,
    )
    with torch.no_grad():
        probs = model(images[pool_t].float() / 255).softmax(1)
    manual = entropy_scores(probs.permute(0, 2, 3, 1).reshape(-1, 3)).reshape(4, -1).mean(1)
    torch.testing.assert_close(got.inputs.scores_N, manual.double(), rtol=1e-5, atol=1e-6)
    selection = get_strategy("entropy").select(got.inputs, 2, seed=0)
    assert selection.indices.tolist() == torch.argsort(manual, descending=True)[:2].tolist()


def _tracker_with_switches(switches: torch.Tensor) -> EventTracker:
    """A pixel tracker whose switch counts equal ``switches`` (int ``[P, H, W]``), built by observing."""
    p = switches.shape[0]
    tracker = EventTracker(tuple(switches.shape), track_epochs=False)
    pred = torch.zeros_like(switches)
    tracker.update(torch.arange(p), pred, epoch=0)
    for t in range(1, int(switches.max()) + 1):
        pred = torch.where(switches >= t, 1 - pred, pred)
        tracker.update(torch.arange(p), pred, epoch=t)
    return tracker


def test_switch_strategies_rank_reduced_pixel_switches():
    switches = torch.zeros(4, 8, 5, dtype=torch.int64)
    switches[1] = 1  # warm everywhere: mean 1
    switches[2, :2, :2] = 6  # one hot spot: mean 24 / 40 = 0.6, top-10 % (4 px) mean 6
    switches[3, :, :] = 2  # mean 2
    tracker = _tracker_with_switches(switches)
    model = _TinySegmenter().eval()
    images = _pool_images(4)
    pool = np.arange(4)
    kwargs = {
        "pool": TensorSource(images),
        "labeled": TensorSource(images[:0]),
        "pool_indices": pool,
        "num_classes": 3,
        "tracker": tracker,
    }
    mean = segmentation_strategy_inputs(
        model, get_strategy("switch"), options=SegmentationOptions(reduction="mean"), **kwargs
    )
    torch.testing.assert_close(mean.inputs.scores_N.float(), torch.tensor([0.0, 1.0, 0.6, 2.0]))
    torch.testing.assert_close(mean.switch_scores.float(), torch.tensor([0.0, 1.0, 0.6, 2.0]))
    assert get_strategy("switch").select(mean.inputs, 1, seed=0).indices.tolist() == [3]
    top = segmentation_strategy_inputs(
        model, get_strategy("switch"), options=SegmentationOptions(reduction="top-q", top_q=0.1), **kwargs
    )
    assert get_strategy("switch").select(top.inputs, 1, seed=0).indices.tolist() == [2]
    gauss = get_strategy("gauss").select(mean.inputs, 2, seed=3)
    assert len(set(gauss.indices.tolist())) == 2
    arrays = queried_section_arrays(
        model,
        get_strategy("switch"),
        "pixel-switches",
        pool=TensorSource(images),
        masks=torch.zeros(1, 8, 5, dtype=torch.int64),
        positions=np.array([2]),
        tracker=tracker,
    )
    assert arrays["switch_maps"].dtype == np.uint8 and arrays["switch_maps"][0, 0, 0] == 6
    assert arrays["images"].shape == (1, 1, 8, 5) and arrays["pred"].shape == (1, 8, 5)
    np.testing.assert_array_equal(arrays["pixel_scores"][0], switches[2].numpy())


def test_pixel_switch_strategy_without_tracking_is_a_clear_error():
    model = _TinySegmenter().eval()
    pool = np.arange(3)
    with pytest.raises(ConfigError, match="not tracked"):
        segmentation_strategy_inputs(
            model,
            get_strategy("gauss"),
            pool=TensorSource(_pool_images(3)),
            labeled=TensorSource(_pool_images(3)[:0]),
            pool_indices=pool,
            num_classes=3,
            options=SegmentationOptions(),
        )


def test_coreset_runs_on_pooled_embeddings():
    model = _TinySegmenter().eval()
    images = _pool_images(6)
    pool = np.arange(2, 6)
    got = segmentation_strategy_inputs(
        model,
        get_strategy("coreset"),
        pool=TensorSource(images[2:6]),
        labeled=TensorSource(images[:2]),
        pool_indices=pool,
        num_classes=3,
        options=SegmentationOptions(),
    )
    assert got.inputs.embeddings_N_D.shape == (4, 4)
    assert got.inputs.labeled_embeddings_L_D.shape == (2, 4)
    picked = get_strategy("coreset").select(got.inputs, 3, seed=0).indices
    assert sorted(set(picked.tolist())) == sorted(picked.tolist()) and len(picked) == 3


def test_image_scores_replace_the_strategy_score():
    inputs = StrategyInputs(n_pool=3, scores_N=torch.tensor([0.1, 0.9, 0.5]))
    assert get_strategy("margin").select(inputs, 2, seed=0).indices.tolist() == [1, 2]


def test_eval_metrics_by_hand():
    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = nn.Parameter(torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # predicts class 0 left, class 1 right
            logits = torch.zeros(x.shape[0], 2, *x.shape[-2:])
            logits[:, 0, :, :2] = 1.0
            logits[:, 1, :, 2:] = 1.0
            return logits + self.p

    masks = torch.tensor([[[0, 0, 1, 1], [0, 1, 1, 255]]])
    m = segmentation_eval_metrics(
        Fixed(),
        Split(torch.zeros(1, 1, 2, 4, dtype=torch.uint8), masks),
        num_classes=2,
        class_names=("a", "b"),
        ignore_index=255,
    )
    # valid: 7 pixels; wrong: (1,1) true 1 predicted 0. IoU a = 3/4, IoU b = 3/4.
    assert m["pixel_accuracy"] == pytest.approx(6 / 7)
    assert m["iou/a"] == pytest.approx(3 / 4) and m["iou/b"] == pytest.approx(3 / 4)
    assert m["miou"] == pytest.approx(3 / 4)
    assert m["class_accuracy/b"] == pytest.approx(3 / 4) and m["class_accuracy/a"] == 1.0


# ------------------------------------------------------------------------------------------- data and config


def test_split_eval_set_names():
    parsed = parse_eval_set_name("split:shifted")
    assert (parsed.kind, parsed.dataset) == ("split", "shifted")
    with pytest.raises(UnknownNameError, match="split:<name>"):
        parse_eval_set_name("split:")


def test_seismic_both_adds_the_shifted_volume_of_the_default():
    small = {"inlines": 8, "crosslines": 8, "depth": 24}
    both = load_dataset("seismic-synthetic", seed=3, test_geology="both", **small)
    shifted = load_dataset("seismic-synthetic", seed=3, **small)
    same = load_dataset("seismic-synthetic", seed=3, test_geology="same", **small)
    assert set(both.splits) == {"train", "test", "shifted"}
    torch.testing.assert_close(both.splits["shifted"].targets, shifted.test.targets)
    torch.testing.assert_close(both.train.images, shifted.train.images)
    # the in-distribution test volume is a new draw of the training geology, not the "same" test volume
    assert not torch.equal(both.test.targets, same.test.targets)


_CONFIG = """
name = "seg-it"
seeds = [0]
dataset = "seismic-synthetic"
model = "unet"
strategy = {strategy}
eval_sets = ["test", "split:shifted", "gaussian_noise-3"]
[al]
initial_size = 2
query_size = 2
rounds = 1
[train]
lr = 0.003
batch_size = 4
epochs = 2
[segmentation]
reduction = {reduction}
[model_options.unet]
base = 4
depth = 2
[data.options.seismic-synthetic]
inlines = 8
crosslines = 8
depth = 24
test_geology = "both"
"""


def test_config_segmentation_section_sweeps_reductions_and_keeps_classification_ids():
    cfg = parse_config(_CONFIG.format(strategy='["switch"]', reduction='["mean", "top-q"]'))
    specs = expand_grid(cfg)
    assert [s.segmentation.reduction for s in specs] == ["mean", "top-q"]
    assert [s.variant for s in specs] == ["segmentation.reduction=mean", "segmentation.reduction=top-q"]
    assert specs[0].task_options(dataset_ignore_index=255)["ignore_index"] == 255
    plain = expand_grid(parse_config('name = "c"\nstrategy = "random"'))[0]
    assert plain.segmentation is None and "segmentation" not in plain.canonical_json()
    with pytest.raises(ConfigError, match="reduction"):
        parse_config(_CONFIG.format(strategy='"switch"', reduction='"median"'))


def test_two_round_segmentation_run_stores_metrics_maps_and_resumes(tmp_path):
    cfg = parse_config(_CONFIG.format(strategy='["random", "switch"]', reduction='"mean"'))
    summary = run_experiments(cfg, tmp_path / "run", progress=False, fail_fast=True, backend="local")
    assert len(summary.finished) == 2 and not summary.failed
    with ResultStore(tmp_path / "run") as store:
        by_strategy = {}
        for row in store.experiments():
            rounds = store.load_rounds(row.id, arrays=True)
            by_strategy[row.spec.strategy] = rounds
            assert [r.n_labeled for r in rounds] == [2, 4]
            for r in rounds:
                assert set(r.metrics) == {"test", "split:shifted", "gaussian_noise-3"}
                for values in r.metrics.values():
                    assert 0.0 <= values["miou"] <= 1.0
                    assert "iou/scruff" in values and "class_accuracy/zechstein" in values
            first = rounds[0]
            assert first.query_arrays["images"].shape == (2, 1, 24, 8)
            assert first.query_arrays["masks"].shape == (2, 24, 8)
            assert len(set(first.query_indices.tolist())) == 2
        switch_first = by_strategy["switch"][0]
        assert switch_first.query_arrays["switch_maps"].dtype == np.uint8
        assert switch_first.dynamics["switches"].shape == switch_first.pool_indices.shape
        np.testing.assert_allclose(
            np.sort(switch_first.dynamics["switches"])[-2:].min(),
            switch_first.query_scores.min(),
            rtol=1e-3,
        )
        assert "switch_maps" not in by_strategy["random"][0].query_arrays
    again = run_experiments(cfg, tmp_path / "run", progress=False, fail_fast=True, backend="local")
    assert not again.finished and len(again.skipped) == 2


def test_loop_same_seed_same_queries_on_masks():
    ds = load_dataset("seismic-synthetic", seed=0, inlines=8, crosslines=8, depth=24)
    config = LoopConfig(
        model="unet",
        model_options={"base": 4, "depth": 2},
        strategy="margin",
        initial_size=2,
        query_size=2,
        rounds=1,
        train=TrainConfig(epochs=1, batch_size=4, target_accuracy=None),
    )
    task = SegmentationTask(ds.num_classes, ignore_index=255, reduction="class-balanced")
    a = run_active_learning(ds.train, {"test": ds.test}, ds.num_classes, config, task=task)
    b = run_active_learning(ds.train, {"test": ds.test}, ds.num_classes, config, task=task)
    assert a[0].query_indices.tolist() == b[0].query_indices.tolist()
    assert "miou" in a[0].metrics["test"] and "iou/0" in a[0].metrics["test"]
    with pytest.raises(ConfigError, match="no segmentation form"):
        run_active_learning(
            ds.train, {"test": ds.test}, ds.num_classes, LoopConfig(strategy="badge", model="unet")
        )


def test_pixel_batch_size_bounds_pixels_per_batch():
    from forgetting.models import build_model
    from forgetting.segmentation.active import pixel_batch_size

    cpu = torch.device("cpu")
    assert pixel_batch_size(cpu, 255, 701) == 1  # a full F3 section: over half the CPU budget of 2**18 values
    assert pixel_batch_size(cpu, 64, 64) == 64 and pixel_batch_size(cpu, 64, 64, channels=3) == 16
    assert pixel_batch_size(cpu, 28, 28) == 256  # small images keep the sample batch size
    assert pixel_batch_size(cpu, 4000, 4000) == 1
    unet = build_model("unet", 1, 6, base=8, depth=3)
    assert pixel_batch_size(cpu, 64, 64, model=unet) == 32  # sized to its largest layer output
    cuda = torch.device("cuda")  # only the device type is read: no GPU needed
    assert pixel_batch_size(cuda, 255, 701) == 23 and pixel_batch_size(cuda, 28, 28) == 4096


class _FullPasses(nn.Module):
    """The same network without ``decode``: forces the K-full-passes MC path."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_bald_on_pixels_reuses_the_decoding_exactly():
    from forgetting.models import build_model
    from forgetting.segmentation.active import PixelScoreReducer, _pixel_mc_scores

    model = build_model("unet", 1, 3, seed=0, base=4, depth=1, dropout=0.5).eval()
    images = _pool_images(5, 8, 6)
    bald = get_strategy("bald")
    fast, pred = _pixel_mc_scores(model, images, bald, None, mc_samples=6, batch_size=12, seed=7, keep=True)
    slow, _ = _pixel_mc_scores(
        _FullPasses(model), images, bald, None, mc_samples=6, batch_size=12, seed=7, keep=True
    )
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    assert fast.shape == (5, 8, 6) and pred.shape == (5, 8, 6)
    assert float(fast.max()) > 0.0  # dropout 0.5: the passes disagree somewhere
    # by hand on one section: BALD of its K softmaxes per pixel, then the mean
    reducer = PixelScoreReducer(5, 3)
    _pixel_mc_scores(model, images, bald, reducer, mc_samples=6, batch_size=12, seed=7)
    torch.testing.assert_close(reducer.finalize(), fast.double().reshape(5, -1).mean(1), rtol=1e-4, atol=1e-6)


def test_bald_segmentation_round():
    ds = load_dataset("seismic-synthetic", seed=0, inlines=8, crosslines=8, depth=24)
    config = LoopConfig(
        model="unet",
        model_options={"base": 4, "depth": 2, "dropout": 0.3},
        strategy="bald",
        initial_size=2,
        query_size=2,
        rounds=1,
        mc_samples=4,
        train=TrainConfig(epochs=1, batch_size=4, target_accuracy=None),
    )
    task = SegmentationTask(ds.num_classes, ignore_index=255)
    first = run_active_learning(ds.train, {"test": ds.test}, ds.num_classes, config, task=task)
    again = run_active_learning(ds.train, {"test": ds.test}, ds.num_classes, config, task=task)
    assert first[0].query_indices.tolist() == again[0].query_indices.tolist()
    assert first[0].query_arrays["pixel_scores"].shape == (2, 24, 8)
    assert np.all(np.isfinite(first[0].query_scores))
