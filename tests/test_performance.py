"""Speed defaults (issue 20): subnormals flushed around training and passes (and restored), CPU inference
batch sizes, channels_last zoo models, fused optimizers, threads per parallel job, uint8 lazy batches."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from forgetting.callbacks import Callback
from forgetting.data import DatasetSource, Split, TensorSource
from forgetting.evaluation import evaluate
from forgetting.inference import default_batch_size, predict
from forgetting.loop import LoopConfig, train_round
from forgetting.models import build_model
from forgetting.observe import ObservationCallback
from forgetting.performance import (
    KEEP_DENORMALS_ENV,
    available_cores,
    denormals_flushed,
    flush_denormals,
    fused_optimizer_ok,
    inference_batch_size,
    largest_activation,
    place_model,
    prefers_channels_last,
    threads_per_job,
)
from forgetting.tasks import get_task
from forgetting.training import TrainConfig, fit, make_optimizer

CPU = torch.device("cpu")
_FLUSH_SUPPORTED = torch.set_flush_denormal(True)  # False (and a no-op) where the CPU cannot flush
torch.set_flush_denormal(False)
needs_flush = pytest.mark.skipif(not _FLUSH_SUPPORTED, reason="torch.set_flush_denormal works on x86 only")


@pytest.fixture(autouse=True)
def _denormals_kept(monkeypatch: pytest.MonkeyPatch):
    """Every test starts with subnormals kept (PyTorch's default) and no opt-out set."""
    monkeypatch.delenv(KEEP_DENORMALS_ENV, raising=False)
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def _split(n: int = 48, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = (labels[:, None, None, None] * 80 + torch.randint(0, 40, (n, 1, 12, 12), generator=g)).to(
        torch.uint8
    )
    return Split(images, labels.to(torch.int64))


class FlushProbe(nn.Module):
    """A tiny classifier that records, at every forward, whether subnormals are flushed."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(144, 3)
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(denormals_flushed())
        return self.linear(x.flatten(1))


class EpochProbe(Callback):
    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_epoch_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        self.seen.append(denormals_flushed())


# ------------------------------------------------------------------------------------------ subnormals
@needs_flush
def test_flush_denormals_flushes_inside_and_restores_after() -> None:
    assert not denormals_flushed()
    with flush_denormals() as on:
        assert on and denormals_flushed()
        with flush_denormals() as inner:  # nested: still on, and the outer block is not switched off
            assert inner
        assert denormals_flushed()
    assert not denormals_flushed()


@needs_flush
def test_flush_denormals_keeps_a_setting_the_caller_made() -> None:
    torch.set_flush_denormal(True)
    with flush_denormals():
        pass
    assert denormals_flushed()  # it was on before: left on


@needs_flush
def test_keep_denormals_env_opts_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEEP_DENORMALS_ENV, "1")
    with flush_denormals() as on:
        assert not on and not denormals_flushed()
    model = FlushProbe()
    fit(model, _split(), TrainConfig(epochs=1, batch_size=16))
    assert model.seen and not any(model.seen)


@needs_flush
def test_fit_observe_predict_evaluate_flush_and_restore() -> None:
    data = _split()
    model = FlushProbe()
    epochs = EpochProbe()
    pool = ObservationCallback(data.images, None, batch_size=16)
    fit(model, data, TrainConfig(epochs=2, batch_size=16), callbacks=[pool, epochs])
    assert model.seen and all(model.seen)  # training steps and the two observation passes
    assert epochs.seen == [True, True]
    assert not denormals_flushed()
    model.seen.clear()
    predict(model, data.images, batch_size=16)
    evaluate(model, data, batch_size=16)
    pool.observe(model, epoch=3)
    assert len(model.seen) == 9 and all(model.seen)
    assert not denormals_flushed()


@needs_flush
def test_flushing_changes_only_subnormal_results() -> None:
    normal = torch.tensor([1.0, 1e-30, 3e-38], dtype=torch.float32)  # halves stay >= 1.18e-38 (normal)
    subnormal = torch.tensor([1e-39], dtype=torch.float32)
    with flush_denormals():
        inside = (normal * 0.5, subnormal * 1.0)
    assert torch.equal(inside[0], normal * 0.5)
    assert float(inside[1]) == 0.0 and float(subnormal * 1.0) != 0.0


# ------------------------------------------------------------------------------------------ batch sizes
def test_cpu_inference_batch_sizes_follow_the_largest_activation() -> None:
    cases = [
        (build_model("small-cnn", 1, 10, width=8), (1, 28, 28), 256),  # largest output 8 x 28 x 28
        (build_model("small-cnn", 1, 10, width=32), (1, 28, 28), 64),
        (build_model("resnet18", 3, 10, width=16), (3, 32, 32), 128),  # 16 x 32 x 32
        (build_model("unet", 1, 6, base=8, depth=3), (1, 64, 64), 32),  # 16 x 64 x 64
    ]
    for model, shape, expected in cases:
        assert inference_batch_size(CPU, shape, model) == expected, type(model).__name__
        assert default_batch_size(CPU, shape, model) == expected
    # without the model: 2**18 input values per batch
    assert inference_batch_size(CPU, (1, 28, 28)) == 256
    assert inference_batch_size(CPU, (3, 32, 32)) == 64
    assert inference_batch_size(CPU, (1, 255, 701)) == 1
    assert inference_batch_size(CPU, (1, 8, 8)) == 1024  # capped
    assert inference_batch_size(CPU) == 256  # shape unknown
    for device in ("cuda", "mps"):
        assert inference_batch_size(torch.device(device), (1, 28, 28), cases[0][0]) == 4096
    # tasks leave the choice to each pass (which knows the model) unless a size is configured
    assert get_task("classification", 3).batch_size(CPU, (1, 28, 28), None) is None
    assert get_task("classification", 3).batch_size(CPU, (1, 28, 28), 7) == 7
    assert get_task("segmentation", 3).batch_size(CPU, (1, 64, 64), None) is None


def test_largest_activation_is_cached_and_leaves_the_model_and_rng_alone() -> None:
    model = build_model("small-cnn", 1, 10, width=8).train()
    state = torch.random.get_rng_state()
    assert largest_activation(model, (1, 20, 20)) == 8 * 20 * 20
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(torch.random.get_rng_state(), state)
    calls: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, args: calls.append(1))
    assert largest_activation(model, (1, 20, 20)) == 8 * 20 * 20  # cached: no second forward
    hook.remove()
    assert not calls

    class Picky(nn.Module):  # a forward that rejects the zero probe: the input-size rule applies
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not bool(x.any()):
                raise ValueError("empty image")
            return self.linear(x.flatten(1))

    assert largest_activation(Picky(), (1, 2, 2)) is None
    assert inference_batch_size(CPU, (1, 28, 28), Picky()) == 256


def test_observation_callback_uses_the_models_default() -> None:
    images = torch.zeros(300, 1, 28, 28, dtype=torch.uint8)
    model = build_model("small-cnn", 1, 3, width=8)
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda m, args: sizes.append(int(args[0].shape[0])))
    ObservationCallback(images).observe(model, epoch=1)
    assert [s for s in sizes if s > 1] == [256, 44]  # (a one-image probe first, unless cached)


# ------------------------------------------------------------------------------------------ layout
class UserNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


def _conv_weight(model: nn.Module) -> torch.Tensor:
    return next(m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1)


def test_zoo_cnns_run_channels_last_on_cpu_only() -> None:
    cnn = build_model("small-cnn", 1, 3, width=4)
    assert prefers_channels_last(cnn, CPU)
    assert not prefers_channels_last(cnn, torch.device("cuda"))  # not measured on a GPU: left as it is
    placed = place_model(cnn, CPU)
    w = _conv_weight(placed)
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    mlp = build_model("mlp", 1, 3)
    assert not prefers_channels_last(mlp, CPU)  # no convolutions
    user = UserNet()
    assert not prefers_channels_last(user, CPU)  # a user's model keeps its layout
    assert place_model(user, CPU).conv.weight.is_contiguous()


def test_channels_last_changes_outputs_only_by_rounding() -> None:
    torch.manual_seed(0)
    model = build_model("small-cnn", 1, 3, width=4).eval()
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
        after = place_model(model, CPU)(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_the_loops_round_model_is_channels_last_and_reproducible() -> None:
    data = Split(
        torch.randint(0, 255, (40, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)),
        torch.arange(40) % 3,
    )
    config = LoopConfig(
        model="small-cnn", model_options={"width": 4}, train=TrainConfig(epochs=2, batch_size=8)
    )
    task = get_task("classification", 3)
    a, rec_a, _ = train_round(config, 0, task, data, device=CPU)
    b, rec_b, _ = train_round(config, 0, task, data, device=CPU)
    assert _conv_weight(a).is_contiguous(memory_format=torch.channels_last)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert rec_a.steps == rec_b.steps == 10


# ------------------------------------------------------------------------------------------ optimizers
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_optimizers_are_fused_on_cpu(optimizer: str) -> None:
    model = build_model("small-cnn", 1, 3, width=4)
    opt = make_optimizer(model, TrainConfig(optimizer=optimizer))  # type: ignore[arg-type]
    assert opt.defaults["fused"] is True
    assert fused_optimizer_ok(list(model.parameters()))
    assert not fused_optimizer_ok([])
    assert not fused_optimizer_ok([torch.zeros(2, dtype=torch.int64)])


# ------------------------------------------------------------------------------------------ threads
def test_threads_per_job_splits_the_cores(caplog: pytest.LogCaptureFixture) -> None:
    assert threads_per_job(1, cores=8) == 8
    assert threads_per_job(2, cores=8) == 4
    assert threads_per_job(3, cores=8) == 2
    with caplog.at_level(logging.WARNING, logger="forgetting.performance"):
        assert threads_per_job(4, cores=2) == 1
    assert "4 parallel jobs on 2 cores" in caplog.text
    assert 1 <= available_cores() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert available_cores() == len(os.sched_getaffinity(0))


def test_process_backend_gives_each_worker_cores_over_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forgetting.experiments import runner
    from forgetting.experiments.config import parse_config

    seen: dict[str, int] = {}

    def fake_pool(todo, driver, *, fail_fast, jobs, threads, hook=None):  # type: ignore[no-untyped-def]
        seen["jobs"], seen["threads"], seen["todo"] = jobs, threads, len(todo)

    monkeypatch.setattr(runner, "run_pool", fake_pool)
    monkeypatch.setattr(runner, "available_cores", lambda: 8)
    monkeypatch.setattr("forgetting.performance.available_cores", lambda: 8)
    config = parse_config(
        'name = "t"\nseeds = [0, 1, 2]\ndataset = "digits"\nstrategy = "random"\n[al]\nrounds = 1\n'
    )
    runner.run_experiments(config, tmp_path / "run", jobs=2, progress=False)
    assert seen == {"jobs": 2, "threads": 4, "todo": 3}
    runner.run_experiments(config, tmp_path / "run2", backend="process", progress=False)  # jobs: all cores
    assert seen == {"jobs": 8, "threads": 2, "todo": 3}  # 3 workers started: 8 // 3 threads each


# ------------------------------------------------------------------------------------------ lazy batches
class Items(Dataset):
    def __init__(self, images: torch.Tensor, float_rows: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.images = images
        self.float_rows = float_rows

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        return (x.float() / 255.0 if i in self.float_rows else x), i % 3


def test_lazy_uint8_batches_equal_the_in_memory_ones() -> None:
    images = _split(40).images
    lazy = list(DatasetSource(Items(images)).batches(CPU, 16))
    eager = list(TensorSource(images).batches(CPU, 16, targets=False))
    assert len(lazy) == len(eager) == 3
    for (x, y), (e, _) in zip(lazy, eager, strict=True):
        assert x.dtype == torch.float32 and torch.equal(x, e)
        assert y is not None and y.dtype == torch.int64
    mixed = list(DatasetSource(Items(images, {1, 5})).batches(CPU, 16))  # a dataset that mixes dtypes
    for (x, _), (e, _) in zip(mixed, eager, strict=True):
        torch.testing.assert_close(x, e)
    item = DatasetSource(Items(images)).torch_dataset()[0]  # a user loop's items stay float in [0, 1]
    assert item[0].dtype == torch.float32 and float(item[0].max()) <= 1.0
    assert np.isclose(float(item[0].max()), float(images[0].max()) / 255.0)
