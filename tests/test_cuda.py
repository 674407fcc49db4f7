"""The CUDA paths (issue 20): bf16 autocast, device batch sizes, data kept on the device, no per-batch host
sync, several experiments sharing one GPU. Marked ``cuda`` and skipped without a GPU;
``benchmarks/gpu_check.sh`` runs them (``pytest -m cuda``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from forgetting.data import Split
from forgetting.inference import default_batch_size, predict
from forgetting.loop import LoopConfig, TrackConfig, run_active_learning
from forgetting.models import build_model
from forgetting.observe import ObservationCallback
from forgetting.performance import place_model
from forgetting.training import LabeledSet, TrainConfig, fit, fit_fn

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _digits(n: int, seed: int = 0, classes: int = 4) -> Split:
    """Learnable 1x28x28 images: a bright square whose position is the class, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, 1, 28, 28), generator=g)
    for c in range(classes):
        rows = labels == c
        images[rows, :, 4 + 5 * c : 10 + 5 * c, 8:20] += 180
    return Split(images.clamp(0, 255).to(torch.uint8), labels.to(torch.int64))


def _syncs(fn: Callable[[], object]) -> int:
    """How many synchronising CUDA calls ``fn`` makes (``torch.cuda.set_sync_debug_mode("warn")``)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def test_device_batch_sizes() -> None:
    cuda = torch.device("cuda")
    assert default_batch_size(cuda, (3, 32, 32)) == 4096
    model = place_model(build_model("small-cnn", 1, 4, width=4), cuda)
    weight = next(m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1)
    assert weight.device.type == "cuda" and weight.is_contiguous()  # channels_last is a CPU default only


def test_fit_syncs_per_epoch_not_per_batch() -> None:
    data = _digits(256).to(torch.device("cuda"))

    def train(batch_size: int) -> Callable[[], object]:
        model = build_model("small-cnn", 1, 4, width=4).cuda()
        return lambda: fit(model, data, TrainConfig(epochs=2, batch_size=batch_size), seed=0)

    few, many = _syncs(train(128)), _syncs(train(8))  # 2 vs 32 batches per epoch
    assert many == few, f"{many} syncs with 32 batches per epoch vs {few} with 2"


def test_observation_pass_syncs_per_pass_not_per_batch_and_runs_bf16() -> None:
    model = build_model("small-cnn", 1, 4, width=4).cuda()
    images = _digits(512).images.cuda()
    dtypes: list[torch.dtype] = []
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    small = ObservationCallback(images, None, batch_size=16)
    large = ObservationCallback(images, None, batch_size=256)
    small.observe(model, epoch=1)  # first passes: allocation, device copies
    large.observe(model, epoch=1)
    assert _syncs(lambda: small.observe(model, epoch=2)) == _syncs(lambda: large.observe(model, epoch=2))
    assert set(dtypes) == {torch.bfloat16}  # autocast on CUDA
    assert small.tracker.device is not None and small.tracker.device.type == "cuda"
    assert small.tracker.observations.sum().item() == large.tracker.observations.sum().item() == 2 * 512


def test_predict_on_cuda_matches_cpu_within_bf16() -> None:
    model = build_model("small-cnn", 1, 4, width=4).eval()
    images = _digits(64).images
    cpu = predict(model, images, embeddings=True, mc_samples=3).probs_N_C
    out = predict(model.cuda(), images.cuda(), embeddings=True, mc_samples=3)
    assert out.probs_N_C is not None and out.probs_N_C.device.type == "cuda"
    assert out.mc_probs_K_N_C is not None and out.mc_probs_K_N_C.shape == (3, 64, 4)
    torch.testing.assert_close(out.probs_N_C.cpu(), cpu, atol=0.05, rtol=0.0)


def test_active_learning_on_cuda_keeps_the_data_on_the_device() -> None:
    train, test = _digits(300, seed=0), _digits(100, seed=1)
    devices: list[str] = []

    def train_fn(model: nn.Module, labeled: LabeledSet, observer):  # type: ignore[no-untyped-def]
        tensors = labeled.data.as_tensors()
        assert tensors is not None
        devices.append(tensors[0].device.type)
        return fit_fn(TrainConfig(epochs=5, batch_size=8))(model, labeled, observer)

    config = LoopConfig(
        model="small-cnn",
        model_options={"width": 4},
        strategy="switch",
        initial_size=20,
        query_size=20,
        rounds=2,
        train_fn=train_fn,
        track=TrackConfig(),
        device="cuda",
    )
    records = run_active_learning(train, {"test": test}, 4, config)
    assert [r.round for r in records] == [0, 1, 2]
    assert devices == ["cuda"] * 3
    assert all(0.0 <= r.metrics["test"]["accuracy"] <= 1.0 for r in records)
    assert records[0].dynamics["switches"].shape == (280,)
    assert records[-1].metrics["test"]["accuracy"] > 0.4  # chance is 0.25: it learns on the GPU


def test_two_experiments_share_the_gpu(tmp_path: Path) -> None:
    from forgetting.experiments import ResultStore, parse_config, run_experiments

    config = parse_config(
        """
name = "cuda-share"
seeds = [0, 1]
dataset = "mnist-5k"
model = "small-cnn"
strategy = ["random", "switch"]
eval_sets = ["test"]
device = "cuda"
jobs = 2

[al]
initial_size = 10
query_size = 5
rounds = 1

[train]
epochs = 2

[model_options.small-cnn]
width = 4
embed_dim = 16

[data]
train_limit = 150
eval_limit = 60
"""
    )
    summary = run_experiments(config, tmp_path / "run", progress=False)
    assert summary.ok and len(summary.finished) == 4
    with ResultStore(tmp_path / "run") as store:
        assert all(row.status == "done" for row in store.experiments())
