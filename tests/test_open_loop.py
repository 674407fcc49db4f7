"""The open loop: the user's own model, training function and torch Dataset, through the task interface."""

from __future__ import annotations

import sys
import textwrap
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from forgetting import (
    DatasetSource,
    LabeledSet,
    LoopConfig,
    Observer,
    SegmentationTask,
    StoppingRule,
    TrainConfig,
    TrainRecord,
    register_model,
    run_active_learning,
)
from forgetting.data import Split, load_dataset
from forgetting.exceptions import ConfigError
from forgetting.models import MODELS
from forgetting.observe import ObservationCallback

# ---------------------------------------------------------------------------------------- classification

MEAN, STD = torch.tensor([0.1307]), torch.tensor([0.3081])
FAST = TrainConfig(epochs=2, batch_size=32)


def normalise(image_C_H_W: torch.Tensor) -> torch.Tensor:
    """The user's eval transform: uint8 -> float, per-channel normalisation."""
    x = image_C_H_W.float() / 255
    return (x - MEAN[:, None, None]) / STD[:, None, None]


class Normalise(nn.Module):
    """The same normalisation as a layer, for the in-memory path (which feeds the model x / 255)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - MEAN.to(x.device)[None, :, None, None]) / STD.to(x.device)[None, :, None, None]


class DigitsDataset(Dataset):
    """A user's Dataset: (transform(image), label) items, nothing the library knows about."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int):
        x = self.images[i]
        return (self.transform(x) if self.transform else x), int(self.labels[i])


class TinyNet(nn.Module):
    """A model defined here, not in the zoo; ``features`` is the documented embedding hook."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(width, 2 * width, 3)
        )
        self.head = nn.Linear(2 * width, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x)).mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def random_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 2) -> torch.Tensor:
    """Random crop with reflect padding (commutes with a per-channel affine normalisation)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy, dx = (int(v) for v in torch.randint(0, 2 * padding + 1, (2,), generator=generator))
    return padded[:, :, dy : dy + h, dx : dx + w]


def sgd_train(model: nn.Module, labeled: LabeledSet, observer: Observer) -> TrainRecord:
    """The user's loop: SGD with momentum, random crops, the papers' stopping rule, the observer per epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(labeled.seed)
    rule = StoppingRule(0.9, min_epochs=2, max_epochs=4)
    steps = 0
    while True:
        model.train()
        for x, y in labeled.loader(16):
            x, y = random_crop(x.to(labeled.device), generator), y.to(labeled.device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            rule.update(logits, y)
        observer.epoch_end(model)
        if rule.epoch_end():
            break
    return TrainRecord(
        epochs=rule.epoch, steps=steps, train_accuracy=rule.accuracy, reached_target=rule.reached
    )


@lru_cache(maxsize=1)
def _digits() -> tuple[Split, Split]:
    ds = load_dataset("mnist-5k", seed=0)
    g = torch.Generator().manual_seed(0)
    train = ds.train.subset(torch.randperm(len(ds.train), generator=g)[:400])
    return train, ds.test.subset(torch.randperm(len(ds.test), generator=g)[:200])


def _config(strategy: str, model) -> LoopConfig:
    return LoopConfig(
        model=model,
        strategy=strategy,
        initial_size=20,
        query_size=10,
        rounds=3,
        seed=3,
        train_fn=sgd_train,
        pool_subsample=150,
        device="cpu",
    )


def _dataset_run(strategy: str) -> list:
    train, test = _digits()
    pool = DatasetSource(DigitsDataset(train.images, train.labels), transform=normalise, targets=train.labels)
    evals = {"test": DatasetSource(DigitsDataset(test.images, test.labels), transform=normalise)}
    return run_active_learning(pool, evals, 10, _config(strategy, TinyNet))


@pytest.mark.parametrize("strategy", ["gauss", "switch"])
def test_own_model_training_function_and_dataset(strategy: str) -> None:
    first = _dataset_run(strategy)
    again = _dataset_run(strategy)
    assert len(first) == 4 and [r.n_labeled for r in first] == [20, 30, 40, 50]
    assert [r.query_indices.tolist() for r in first] == [r.query_indices.tolist() for r in again]
    for r in first[:-1]:
        assert r.train.epochs >= 2 and r.train.steps > 0 and r.seconds["track"] > 0
        assert r.dynamics["switches"].shape == (150,) and r.dynamics["observations"].max() == r.train.epochs
        assert r.query_arrays["predicted"].shape == (10,)
    assert 0.0 <= first[-1].metrics["test"]["accuracy"] <= 1.0 and first[-1].metrics["test"]["nll"] > 0

    # The built-in in-memory path on the same data (uint8 tensors, the normalisation inside the model): the
    # same predictions, so the same switch counts and the same queries.
    train, test = _digits()
    in_memory = run_active_learning(
        train, {"test": test}, 10, _config(strategy, lambda: nn.Sequential(Normalise(), TinyNet()))
    )
    for lazy, fast in zip(first, in_memory, strict=True):
        np.testing.assert_array_equal(lazy.dynamics.get("switches"), fast.dynamics.get("switches"))
        assert lazy.query_indices.tolist() == fast.query_indices.tolist()
        assert lazy.metrics["test"]["accuracy"] == fast.metrics["test"]["accuracy"]


def test_observation_passes_give_identical_counts_on_both_paths() -> None:
    """An ObservationCallback over a lazy Dataset equals the in-memory fast path, subsampled rows too."""
    train, _ = _digits()
    torch.manual_seed(0)  # unseeded, the model and its perturbations came from whatever earlier tests left
    model = nn.Sequential(Normalise(), TinyNet()).eval()
    fast = ObservationCallback(train.images, train.labels, subsample=0.3, seed=1, batch_size=64)
    lazy_source = DatasetSource(DigitsDataset(train.images, train.labels), transform=normalise)
    lazy = ObservationCallback(lazy_source, train.labels, subsample=0.3, seed=1, batch_size=64)
    for epoch in range(1, 5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        fast.observe(model, epoch=epoch)  # uint8 -> x / 255 -> the model's Normalise layer
        lazy.observe(model[1], epoch=epoch)  # the Dataset's transform normalises; the same network
    for field in ("switches", "forgetting", "observations"):
        assert torch.equal(getattr(fast.tracker, field), getattr(lazy.tracker, field)), field
    assert int(fast.tracker.switches.sum()) > 0


def test_embedding_hooks_and_clear_errors() -> None:
    train, test = _digits()
    # coreset through a named layer (forward hook on the body) and through features()
    for layer in ("body", None):
        cfg = LoopConfig(
            model=TinyNet,
            strategy="coreset",
            embedding_layer=layer,
            initial_size=20,
            query_size=5,
            rounds=1,
            train_fn=sgd_train,
            pool_subsample=60,
            device="cpu",
        )
        records = run_active_learning(train, {"test": test}, 10, cfg)
        assert len(records[0].query_indices) == 5

    class NoHooks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    with pytest.raises(
        ConfigError, match=r"strategy 'coreset' needs embeddings.*features\(x\).*embedding_layer"
    ):
        run_active_learning(train, {"test": test}, 10, LoopConfig(model=NoHooks, strategy="coreset"))
    with pytest.raises(ConfigError, match=r"'bald' needs MC dropout.*NoHooks has no dropout.*nn.Dropout"):
        run_active_learning(train, {"test": test}, 10, LoopConfig(model=NoHooks, strategy="bald"))
    with pytest.raises(ConfigError, match="embedding_layer 'nope' is not a submodule"):
        run_active_learning(
            train, {"test": test}, 10, LoopConfig(model=TinyNet, strategy="coreset", embedding_layer="nope")
        )


def test_mc_dropout_on_any_module_with_dropout() -> None:
    train, test = _digits()

    def dropout_net() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))

    cfg = LoopConfig(
        model=dropout_net,
        strategy="bald",
        initial_size=20,
        query_size=5,
        rounds=1,
        mc_samples=4,
        train=FAST,
        device="cpu",
    )
    a = run_active_learning(train, {"test": test}, 10, cfg)
    b = run_active_learning(train, {"test": test}, 10, cfg)
    assert a[0].query_indices.tolist() == b[0].query_indices.tolist()
    assert np.all(np.isfinite(a[0].query_scores))


def test_register_model_and_import_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, test = _digits()
    register_model("tiny-test-net", TinyNet, options={"width": 6}, task="classification", overwrite=True)
    try:
        cfg = LoopConfig(
            model="tiny-test-net", model_options={"width": 4}, rounds=0, train=FAST, device="cpu"
        )
        (record,) = run_active_learning(train, {"test": test}, 10, cfg)
        assert record.train.epochs >= 1
        with pytest.raises(ConfigError, match=r"unknown option\(s\) 'depth'"):
            run_active_learning(
                train, {"test": test}, 10, LoopConfig(model="tiny-test-net", model_options={"depth": 2})
            )
    finally:
        MODELS.pop("tiny-test-net", None)
    module = tmp_path / "user_nets.py"
    module.write_text(
        textwrap.dedent(
            """
            from torch import nn

            def mlp(hidden=16):
                return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = LoopConfig(model="user_nets:mlp", model_options={"hidden": 8}, rounds=0, train=FAST, device="cpu")
    (record,) = run_active_learning(train, {"test": test}, 10, cfg)
    assert record.train.epochs == 2 and 0.0 <= record.metrics["test"]["accuracy"] <= 1.0
    with pytest.raises(ConfigError, match=r"module 'no_such_module' does not import"):
        run_active_learning(train, {"test": test}, 10, LoopConfig(model="no_such_module:net"))
    with pytest.raises(ConfigError, match=r"module 'user_nets' has no attribute 'resnet'.*mlp"):
        run_active_learning(train, {"test": test}, 10, LoopConfig(model="user_nets:resnet"))
    sys.modules.pop("user_nets", None)


def test_a_training_function_that_returns_nothing_is_counted_by_the_observer() -> None:
    train, test = _digits()

    def quiet(model: nn.Module, labeled: LabeledSet, observer: Observer) -> None:
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        for _ in range(2):
            for x, y in labeled.loader(32):
                loss = labeled.loss(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                observer.step_end(model)
            observer.epoch_end(model)

    cfg = LoopConfig(
        model=TinyNet, strategy="switch", initial_size=20, rounds=1, train_fn=quiet, device="cpu"
    )
    records = run_active_learning(train, {"test": test}, 10, cfg)
    assert records[0].train.epochs == 2 and records[0].train.steps == 2
    with pytest.raises(ConfigError, match="returned int"):
        run_active_learning(
            train, {"test": test}, 10, LoopConfig(model=TinyNet, train_fn=lambda m, labeled, o: 3, rounds=0)
        )


# ------------------------------------------------------------------------------------------ segmentation


class SectionsDataset(Dataset):
    """(normalised section, mask) items of a user's segmentation data."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        x = self.split.images[i].float() / 255
        return (x - 0.5) / 0.25, self.split.targets[i]


class EncoderDecoder(nn.Module):
    """A segmenter defined here: strided encoder, transposed-conv decoder, pooled ``features``."""

    def __init__(self, k: int = 6, width: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1)
        )
        self.decoder = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(width, width, 2, 2), nn.ReLU())
        self.head = nn.Conv2d(width, k, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.head(self.decoder(self.encoder(x)))[..., :h, :w]


def seg_train(model: nn.Module, labeled: LabeledSet, observer: Observer) -> TrainRecord:
    """SGD with momentum, left-right flips, the task's class weights and ignore index through
    ``labeled.loss``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(labeled.seed)
    for _ in range(3):
        model.train()
        for x, y in labeled.loader(4):
            if bool(torch.rand((), generator=generator) < 0.5):
                x, y = x.flip(-1), y.flip(-1)
            loss = labeled.loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        observer.epoch_end(model)
    return TrainRecord(epochs=3, steps=0)


def _seg_run(strategy: str) -> list:
    ds = load_dataset("seismic-synthetic", seed=0, inlines=8, crosslines=8, depth=24)
    task = SegmentationTask(ds.num_classes, ignore_index=255, class_names=ds.classes)
    cfg = LoopConfig(
        model=EncoderDecoder,
        model_options={"k": ds.num_classes},
        strategy=strategy,
        initial_size=3,
        query_size=2,
        rounds=3,
        seed=1,
        train_fn=seg_train,
        device="cpu",
    )
    pool = DatasetSource(SectionsDataset(ds.train))
    evals = {"test": DatasetSource(SectionsDataset(ds.test))}
    return run_active_learning(pool, evals, ds.num_classes, cfg, task=task)


@pytest.mark.parametrize("strategy", ["gauss", "switch"])
def test_own_segmenter_training_function_and_dataset(strategy: str) -> None:
    first = _seg_run(strategy)
    again = _seg_run(strategy)
    assert [r.n_labeled for r in first] == [3, 5, 7, 9]
    assert [r.query_indices.tolist() for r in first] == [r.query_indices.tolist() for r in again]
    for r in first[:-1]:
        assert r.dynamics["switches"].dtype == np.float32
        assert r.query_arrays["switch_maps"].shape == (2, 24, 8) and "images" not in r.query_arrays
        assert r.query_arrays["masks"].shape == (2, 24, 8) and r.query_arrays["pred"].shape == (2, 24, 8)
    metrics = first[-1].metrics["test"]
    assert 0.0 <= metrics["miou"] <= 1.0 and "iou/scruff" in metrics


def test_segmentation_project_with_a_model_given_by_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`forgetting init-project --task segmentation --model pkg.mod:fn`, then masks, then a GauSS query."""
    from typer.testing import CliRunner

    from forgetting.annotate import LabelingProject
    from forgetting.cli import app
    from test_annotate_segmentation import CLASSES, _return_masks, _sections

    images, masks, _ = _sections()
    folder = tmp_path / "sections"
    folder.mkdir()
    np.savez(folder / "sections.npz", images=images[:, None])
    (tmp_path / "user_seg.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            CALLS = []

            class Net(nn.Module):
                def __init__(self, k):
                    super().__init__()
                    self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
                    self.head = nn.Conv2d(8, k, 1)

                def forward(self, x):
                    return self.head(self.body(x))

            def segmenter(num_classes=6):
                CALLS.append(num_classes)
                return Net(num_classes)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    root = tmp_path / "proj"
    result = CliRunner().invoke(
        app,
        [
            "init-project",
            str(root),
            "--images",
            str(folder / "sections.npz"),
            "--task",
            "segmentation",
            "--classes",
            ",".join(CLASSES),
            "--model",
            "user_seg:segmenter",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = root / "forgetting.toml"
    assert 'model = "user_seg:segmenter"' in manifest.read_text()
    text = manifest.read_text().replace("\n[train]\n", "\n[train]\nepochs = 2\n")
    manifest.write_text(text.replace("batch_size = 64", "batch_size = 4"))
    project = LabelingProject.open(root)
    r0 = project.query(strategy="random", n=4)
    ids = project.source.item_ids()
    row = {item: i for i, item in enumerate(ids)}
    project.import_labels(_return_masks(tmp_path / "r0", {i: masks[row[i]] for i in r0.item_ids}, npy=4))
    r1 = project.query(strategy="gauss", n=3)
    assert len(r1.item_ids) == 3 and not set(r1.item_ids) & set(r0.item_ids)
    maps = np.load(r1.maps_path)
    assert maps["pred"].shape == (3, *images.shape[1:]) and "switch_maps" in maps
    import user_seg  # the project built the user's model, once per query round

    assert user_seg.CALLS and set(user_seg.CALLS) == {6}
    sys.modules.pop("user_seg", None)
    bad = CliRunner().invoke(
        app,
        [
            "init-project",
            str(tmp_path / "p2"),
            "--images",
            str(folder / "sections.npz"),
            "--task",
            "segmentation",
            "--classes",
            ",".join(CLASSES),
            "--model",
            "user_seg:nope",
        ],
    )
    assert bad.exit_code == 2 and "has no attribute 'nope'" in " ".join(bad.output.split())


@pytest.mark.parametrize("script", ["own_model_classification.py", "own_model_segmentation.py"])
def test_readme_examples_run(script: str) -> None:
    """The two examples of "Your own model, training loop and data" (docs/guide/own-model.md)."""
    import subprocess

    path = Path(__file__).resolve().parents[1] / "examples" / script
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) == 4 and all("test" in ln for ln in lines)


def test_maps_augment_and_experiment_configs_name_models_by_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forgetting.experiments import expand_grid, parse_config
    from forgetting.segmentation.augment_protocol import parse_augment_config
    from forgetting.segmentation.maps import parse_maps_config

    (tmp_path / "cfg_nets.py").write_text(
        "from torch import nn\n\ndef seg(k=6):\n    return nn.Conv2d(1, k, 1)\n\nNOT_CALLABLE = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert parse_maps_config('model = "cfg_nets:seg"').model == "cfg_nets:seg"
    assert parse_augment_config('model = "cfg_nets:seg"').model == "cfg_nets:seg"
    with pytest.raises(ConfigError, match=r"module 'cfg_nets' has no attribute 'deeplab'"):
        parse_maps_config('model = "cfg_nets:deeplab"')
    with pytest.raises(ConfigError, match="not callable"):
        parse_augment_config('model = "cfg_nets:NOT_CALLABLE"')
    config = parse_config(
        'name = "x"\nmodel = "cfg_nets:seg"\n[train]\nfunction = "cfg_nets:seg"\n'
        '[model_options."cfg_nets:seg"]\nk = 3\n'
    )
    (spec,) = expand_grid(config)
    loop = spec.loop_config()
    assert loop.model == "cfg_nets:seg" and loop.train_fn == "cfg_nets:seg" and spec.model_options == {"k": 3}
    plain = expand_grid(parse_config('name = "x"'))[0]
    assert "function" not in plain.canonical_json() and "embedding_layer" not in plain.canonical_json()
    with pytest.raises(ConfigError, match=r"train.function.*module 'nope' does not import"):
        parse_config('name = "x"\n[train]\nfunction = "nope:loop"')
    sys.modules.pop("cfg_nets", None)
