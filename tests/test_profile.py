"""Explaining a classifier (`forgetting.profile`): presentation-time dynamics, AUM, flags, pruning, report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

import forgetting
from forgetting import DatasetSource, ObservationCallback, Split, TrainConfig, TrainRecord, build_model, fit
from forgetting.callbacks import Callback
from forgetting.exceptions import ConfigError
from forgetting.profile import (
    DynamicsAccumulator,
    MislabelSettings,
    eval_observation,
    flag_mislabeled,
    flip_labels,
    flip_map,
    prune,
    removal_order,
    train_profiled,
    with_rows,
)
from forgetting.profile.report import (
    FIGURES,
    flagged_rows,
    forgettable_rows,
    per_class_rates,
    unforgettable_rows,
)
from forgetting.profile.table import csv_cell
from test_report import parse_report, table_dicts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
K = 3
OPTIONS = {"width": 2, "embed_dim": 8, "dropout": 0.0}


def blobs(n: int = 96, seed: int = 0, noise: float = 60.0) -> Split:
    """uint8 [n, 1, 8, 8]: class k lights rows 2k..2k+2, plus noise; labels balanced."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    x = torch.rand(n, 1, 8, 8, generator=g) * noise
    for k in range(K):
        x[labels == k, :, 2 * k : 2 * k + 2, :] += 150
    return Split(x.clamp(0, 255).to(torch.uint8), labels.to(torch.int64))


def tiny_model(seed: int = 0) -> torch.nn.Module:
    return build_model("small-cnn", 1, K, seed=seed, **OPTIONS)


class Recorder(Callback):
    """Records every batch the trainer presents: rows, logits, targets, epoch."""

    wants_batches = True

    def __init__(self) -> None:
        self.batches: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []

    def on_batch_end(self, model, *, rows, logits, targets, epoch, step):
        self.batches.append((rows.cpu().numpy(), logits.float().cpu().numpy(), targets.cpu().numpy(), epoch))


def reference(batches, n: int) -> dict[str, np.ndarray]:
    """Every read-out by a plain loop over the recorded presentations, sample by sample, in order."""
    seen = [[] for _ in range(n)]  # per sample: (epoch, logits, target) in presentation order
    for rows, logits, targets, epoch in batches:
        for r, z, t in zip(rows.tolist(), logits, targets.tolist(), strict=True):
            seen[r].append((epoch, z.astype(np.float64), t))
    out = {k: np.zeros(n) for k in ("forgetting", "learning", "switches", "aum", "confidence", "variability")}
    out |= {k: np.full(n, -1) for k in ("first_learned_epoch", "learned_epoch")}
    out |= {"never_learned": np.zeros(n, bool), "final_loss": np.zeros(n), "correctness": np.zeros(n)}
    for i, obs in enumerate(seen):
        prev_pred = prev_correct = None
        probs, margins, correct_count = [], [], 0
        for epoch, z, t in obs:
            pred = int(np.argmax(z))
            correct = pred == t
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            probs.append(p[t])
            other = np.delete(z, t).max()
            margins.append(z[t] - other)
            correct_count += correct
            if prev_pred is not None:
                out["switches"][i] += pred != prev_pred
                out["forgetting"][i] += prev_correct and not correct
                out["learning"][i] += (not prev_correct) and correct
            if correct and out["first_learned_epoch"][i] < 0:
                out["first_learned_epoch"][i] = epoch
            if correct and not prev_correct:
                out["learned_epoch"][i] = epoch
            if not correct:
                out["learned_epoch"][i] = -1
            prev_pred, prev_correct = pred, correct
            out["final_loss"][i] = -np.log(p[t])
        out["never_learned"][i] = correct_count == 0
        out["confidence"][i] = np.mean(probs)
        out["variability"][i] = np.std(probs)
        out["aum"][i] = np.mean(margins)
        out["correctness"][i] = correct_count / len(obs)
    return out


def assert_matches(dynamics, ref) -> None:
    for key in (
        "forgetting",
        "learning",
        "switches",
        "first_learned_epoch",
        "learned_epoch",
        "never_learned",
    ):
        np.testing.assert_array_equal(
            getattr(dynamics, key), ref[key].astype(getattr(dynamics, key).dtype), key
        )
    for key in ("confidence", "variability", "aum", "final_loss", "correctness"):
        np.testing.assert_allclose(getattr(dynamics, key), ref[key], rtol=1e-4, atol=1e-5, err_msg=key)


# ---------------------------------------------------------------------------------------------- dynamics


def test_presentation_counts_equal_a_hand_written_loop_on_a_fixed_batch_order():
    data = blobs(60)
    n = len(data)
    orders = [torch.randperm(n, generator=torch.Generator().manual_seed(100 + e)) for e in range(6)]
    recorded = []

    def train(model, labeled, observer):  # a user's loop, with its own fixed batch order
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        images, labels = labeled.data.as_tensors()
        for e, order in enumerate(orders, start=1):
            for start in range(0, n, 16):
                rows = order[start : start + 16]
                x, y = images[rows].float() / 255, labels[rows]
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                observer.batch_end(model, rows, logits, y)
                recorded.append((rows.numpy(), logits.detach().numpy(), y.numpy(), e))
            observer.epoch_end(model)
        return TrainRecord(epochs=len(orders), steps=len(recorded))

    trained = train_profiled(data, K, model="small-cnn", model_options=OPTIONS, train_fn=train, device="cpu")
    assert len(recorded) == 6 * 4
    ref = reference(recorded, n)
    assert ref["forgetting"].sum() > 0 and ref["switches"].sum() > 0  # the run has events to count
    assert_matches(trained.dynamics, ref)
    assert trained.dynamics.observations.tolist() == [6] * n


def test_fit_hands_each_batch_its_rows_in_the_seeded_order_and_aum_equals_a_direct_computation():
    data = blobs(50)
    recorder = Recorder()
    acc = DynamicsAccumulator(len(data), K)
    config = TrainConfig(epochs=4, batch_size=16, lr=3e-2)
    fit(tiny_model(), data, config, seed=3, callbacks=[acc, recorder])
    g = torch.Generator().manual_seed(3)  # fit's batch order: one randperm per epoch from the seed
    orders = [torch.randperm(50, generator=g) for _ in range(4)]
    expected = [(orders[e - 1][s : s + 16].numpy(), e) for e in range(1, 5) for s in (0, 16, 32, 48)]
    assert [(b[0].tolist(), b[3]) for b in recorder.batches] == [(r.tolist(), e) for r, e in expected]
    for rows, _, targets, _ in recorder.batches:
        assert targets.tolist() == data.labels[rows].tolist()
    # AUM directly from the recorded logits: mean over presentations of gold logit - largest other logit
    margin_sum, count = np.zeros(50), np.zeros(50)
    for rows, logits, targets, _ in recorder.batches:
        gold = logits[np.arange(len(rows)), targets]
        masked = logits.copy()
        masked[np.arange(len(rows)), targets] = -np.inf
        np.add.at(margin_sum, rows, gold - masked.max(1))
        np.add.at(count, rows, 1)
    dyn = acc.result()
    np.testing.assert_allclose(dyn.aum, margin_sum / count, rtol=1e-5, atol=1e-6)
    assert_matches(dyn, reference(recorder.batches, 50))


def test_a_presentation_time_profiler_leaves_fit_bit_identical():
    data = blobs(64)
    config = TrainConfig(epochs=3, batch_size=16, lr=1e-2, augment=True, crop_padding=1)
    plain, watched = tiny_model(), tiny_model()
    rec_a = fit(plain, data, config, seed=7)
    acc = DynamicsAccumulator(len(data), K)
    rec_b = fit(watched, data, config, seed=7, callbacks=[forgetting.Observer([acc])])
    assert (rec_a.epochs, rec_a.steps, rec_a.train_accuracy) == (
        rec_b.epochs,
        rec_b.steps,
        rec_b.train_accuracy,
    )
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert acc.result().observations.tolist() == [3] * 64


def test_the_dataloader_path_gives_the_same_rows_and_dynamics():
    data = blobs(40)
    config = TrainConfig(epochs=3, batch_size=16, lr=3e-2)
    dataset = TensorDataset(data.images, data.labels)
    lazy = DatasetSource(dataset, targets=data.labels)
    results, recorders = [], []
    for source in (data, lazy):
        acc, rec = DynamicsAccumulator(len(data), K), Recorder()
        fit(tiny_model(), source, config, seed=1, callbacks=[acc, rec])
        results.append(acc.result())
        recorders.append(rec)
    assert [b[0].tolist() for b in recorders[0].batches] == [b[0].tolist() for b in recorders[1].batches]
    for key in ("forgetting", "switches", "learned_epoch", "aum", "confidence"):
        np.testing.assert_allclose(getattr(results[0], key), getattr(results[1], key), rtol=1e-5, err_msg=key)


def test_eval_mode_observes_the_training_set_after_every_epoch():
    data = blobs(45)
    config = TrainConfig(epochs=4, batch_size=16, lr=3e-2)
    acc = DynamicsAccumulator(len(data), K, presentation=False)
    plain = ObservationCallback(data, "source", name="plain")
    fit(tiny_model(), data, config, seed=2, callbacks=[eval_observation(data, acc), plain])
    dyn = acc.result()
    assert dyn.observations.tolist() == [4] * 45
    np.testing.assert_array_equal(dyn.forgetting, plain.tracker.forgetting.numpy())
    np.testing.assert_array_equal(dyn.learned_epoch, plain.tracker.learned_epoch.numpy())
    with pytest.raises(ConfigError, match="presentation=False"):
        eval_observation(data, DynamicsAccumulator(45, K))


def test_logits_of_the_wrong_width_are_an_error_naming_the_fix():
    acc = DynamicsAccumulator(4, 3)
    with pytest.raises(ConfigError, match=r"\[B, 3\]"):
        acc.update(torch.arange(4), torch.zeros(4, 5), torch.zeros(4, dtype=torch.int64), epoch=1)


def test_history_jsonl_holds_each_epochs_logits(tmp_path):
    data = blobs(30)
    acc, rec = DynamicsAccumulator(30, K, history_dir=tmp_path), Recorder()
    fit(tiny_model(), data, TrainConfig(epochs=2, batch_size=16), seed=0, callbacks=[acc, rec])
    lines = [json.loads(line) for line in (tmp_path / "dynamics_epoch_2.jsonl").read_text().splitlines()]
    assert sorted(r["guid"] for r in lines) == list(range(30))
    by_row = {
        int(r): z for rows, logits, _, e in rec.batches if e == 2 for r, z in zip(rows, logits, strict=True)
    }
    for line in lines:
        np.testing.assert_allclose(line["logits_epoch_2"], by_row[line["guid"]], rtol=1e-6)
        assert line["gold"] == int(data.labels[line["guid"]])


def test_with_rows_feeds_a_users_dataloader_loop():
    data = blobs(32)
    seen = []

    def train(model, labeled, observer):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        loader = DataLoader(
            with_rows(labeled.dataset()),
            batch_size=8,
            shuffle=True,
            generator=torch.Generator().manual_seed(labeled.seed),
        )
        for _ in range(2):
            for x, y, rows in loader:
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                observer.batch_end(model, rows, logits, y)
                seen.append(rows)
            observer.epoch_end(model)

    trained = train_profiled(data, K, model="small-cnn", model_options=OPTIONS, train_fn=train, device="cpu")
    assert sorted(torch.cat(seen).tolist()) == sorted(list(range(32)) * 2)
    assert trained.dynamics.observations.tolist() == [2] * 32
    with pytest.raises(ConfigError, match="observed nothing"):
        train_profiled(data, K, model_options=OPTIONS, train_fn=lambda m, lab, obs: None, device="cpu")


# ---------------------------------------------------------------------------------------------- noise


def test_flip_labels_flips_exactly_the_rate_and_never_to_the_true_class():
    labels = np.arange(200) % 4
    noisy, flipped = flip_labels(labels, 0.2, "uniform", 4, seed=1)
    assert flipped.sum() == 40 and np.all(noisy[flipped] != labels[flipped])
    assert np.array_equal(noisy[~flipped], labels[~flipped])
    noisy_c, flipped_c = flip_labels(labels, 0.1, "class-conditional", 4, seed=1)
    pi = flip_map(4, 1)
    assert flipped_c.sum() == 20 and np.all(pi != np.arange(4))
    assert np.array_equal(noisy_c[flipped_c], pi[labels[flipped_c]])
    again, _ = flip_labels(labels, 0.2, "uniform", 4, seed=1)
    assert np.array_equal(again, noisy)
    with pytest.raises(ConfigError, match="kind"):
        flip_labels(labels, 0.2, "pairs", 4, seed=0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- flags


def test_threshold_samples_flag_the_flipped_labels():
    data = blobs(150, noise=40.0)
    noisy, flipped = flip_labels(data.labels.numpy(), 0.2, "uniform", K, seed=0)
    source = Split(data.images, torch.from_numpy(noisy))
    train = TrainConfig(epochs=6, batch_size=16, lr=2e-2)
    flags = flag_mislabeled(
        source,
        noisy,
        K,
        MislabelSettings(runs=2),
        seed=0,
        model="small-cnn",
        model_options=OPTIONS,
        train=train,
        device="cpu",
    )
    assert flags is not None
    a, b = flags.threshold_rows
    assert len(a) == len(b) == round(150 / (K + 1)) and not set(a.tolist()) & set(b.tolist())
    for run, (rows, t) in enumerate(zip(flags.threshold_rows, flags.thresholds, strict=True)):
        assert t == pytest.approx(np.percentile(flags.aum_runs[run][rows], 99.0))
    gaps = np.stack([flags.aum_runs[r] - flags.thresholds[r] for r in range(2)])
    for r in range(2):
        gaps[r][flags.threshold_rows[r]] = np.nan
    np.testing.assert_allclose(flags.gap, np.nanmean(gaps, 0), rtol=1e-5, atol=1e-6)
    assert np.array_equal(flags.flagged, flags.gap < 0)
    hits = (flags.flagged & flipped).sum()
    assert hits / flags.flagged.sum() > 0.6 and hits / flipped.sum() > 0.6  # it finds the flipped labels
    assert flag_mislabeled(source, noisy, K, MislabelSettings(runs=0)) is None


# ---------------------------------------------------------------------------------------------- pruning


def test_removal_order_puts_unforgettable_first_and_never_learned_last():
    acc = DynamicsAccumulator(6, 2)
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    # epoch 1: rows 0..3 correct, 4..5 wrong; epoch 2: rows 2 and 3 forgotten
    acc.update(torch.arange(6), z[[0, 1, 0, 1, 1, 0]], y, epoch=1)
    acc.update(torch.arange(6), z[[0, 1, 1, 0, 1, 0]], y, epoch=2)
    dyn = acc.result()
    assert dyn.unforgettable.tolist() == [True, True, False, False, False, False]
    assert dyn.never_learned.tolist() == [False] * 4 + [True] * 2
    order = removal_order(dyn, seed=0)
    assert set(order[:2]) == {0, 1} and set(order[2:4]) == {2, 3} and set(order[4:]) == {4, 5}
    orders = {tuple(removal_order(dyn, seed=s)[:2]) for s in range(8)}
    assert orders == {(0, 1), (1, 0)}  # ties broken at random, by the seed


def test_prune_retrains_without_the_removed_rows():
    data = blobs(40)
    acc = DynamicsAccumulator(40, K)
    fit(tiny_model(), data, TrainConfig(epochs=3, batch_size=16, lr=3e-2), seed=0, callbacks=[acc])
    dyn = acc.result()
    trained_on = []

    def train(model, labeled, observer):
        trained_on.append(labeled.data.read_targets().clone())
        return TrainRecord(epochs=0, steps=0)

    result = prune(
        dyn,
        data,
        blobs(30, seed=9),
        K,
        0.25,
        seed=0,
        model="small-cnn",
        model_options=OPTIONS,
        train_fn=train,
        device="cpu",
    )
    assert result.removed == 10 and len(trained_on) == 2 and all(len(t) == 30 for t in trained_on)
    assert result.removed_forgetting.tolist() == sorted(removal_order(dyn, seed=0)[:10].tolist())
    assert len(set(result.removed_random.tolist())) == 10
    assert 0.0 <= result.forgetting_accuracy <= 1.0 and 0.0 <= result.random_accuracy <= 1.0


# ---------------------------------------------------------------------------------------------- outputs


def test_csv_cells_neutralise_formulas():
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert [csv_cell(v) for v in ("+1", "-x", "@a", " =b", "cat")] == ["'+1", "'-x", "'@a", "' =b", "cat"]
    assert (
        csv_cell(-1.5) == "-1.5" and csv_cell(np.float32("nan")) == "" and csv_cell(np.bool_(True)) == "true"
    )


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    data = blobs(90, noise=40.0)
    noisy, flipped = flip_labels(data.labels.numpy(), 0.1, "uniform", K, seed=0)
    names = ("=cmd|calc", "bar", "baz")  # a formula-like class name must not reach a spreadsheet as one
    result = forgetting.profile(
        Split(data.images, torch.from_numpy(noisy)),
        test=blobs(30, seed=5),
        num_classes=K,
        class_names=names,
        model_options=OPTIONS,
        train=TrainConfig(epochs=5, batch_size=16, lr=2e-2),
        mislabel=MislabelSettings(runs=2),
        prune=[0.2],
        device="cpu",
        out_dir=out,
        thumbnails=6,
        label_flipped=flipped,
    )
    return result, out


def test_the_report_shows_every_figure_and_its_tables_hold_the_numbers(profiled):
    result, out = profiled
    index = out / "report" / "index.html"
    page = parse_report(index)
    assert sorted(page.images) == sorted(FIGURES)
    for name in page.images:
        assert (index.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    d = result.dynamics
    summary = {row[0][0]: row[1][0] for row in page.tables["summary"][1:]}
    assert summary["samples"] == "90" and summary["epochs"] == "5"
    assert summary["test accuracy"] == f"{result.test_accuracy:.3f}"
    assert summary["unforgettable (learned, never forgotten)"] == str(int(d.unforgettable.sum()))
    assert summary["never learned"] == str(int(d.never_learned.sum()))
    assert summary["likely mislabelled"] == str(int(result.mislabel.flagged.sum()))
    hist = {row[0][0]: int(row[1][0]) for row in page.tables["histogram"][1:]}
    learned = ~d.never_learned
    assert hist.pop("never learned") == int(d.never_learned.sum())
    assert hist == {str(c): int(v) for c, v in enumerate(np.bincount(d.forgetting[learned], minlength=1))}
    rows = table_dicts(page.tables["per-class"])
    assert [r["class"][0] for r in rows] == list(result.class_names)
    for r, k in zip(rows, range(K), strict=True):
        mask = result.labels == k
        assert int(r["n"][0]) == mask.sum()
        assert float(r["unforgettable"][0]) == pytest.approx(d.unforgettable[mask].mean(), abs=5e-4)
        assert float(r["never learned"][0]) == pytest.approx(d.never_learned[mask].mean(), abs=5e-4)
        assert float(r["mean AUM"][0]) == pytest.approx(d.aum[mask].mean(), abs=5e-4)
        assert float(r["likely mislabelled"][0]) == pytest.approx(
            result.mislabel.flagged[mask].mean(), abs=5e-4
        )
    for cls, rows_shown in (
        ("forgettable", forgettable_rows(result, 6)),
        ("unforgettable", unforgettable_rows(result, 6)),
        ("mislabeled", flagged_rows(result)),
    ):
        listed = [int(r["row"][0]) for r in table_dicts(page.tables[cls])]
        assert listed == rows_shown.tolist(), cls
    assert all(d.unforgettable[unforgettable_rows(result, 6)])
    scores = d.forgetting_score()
    assert scores[forgettable_rows(result, 6)].min() >= np.sort(scores)[-6]
    prune_rows = table_dicts(page.tables["pruning"])
    assert len(prune_rows) == 1
    p = result.pruning[0]
    assert float(prune_rows[0]["by forgetting"][0]) == pytest.approx(p.forgetting_accuracy, abs=5e-4)
    assert float(prune_rows[0]["at random"][0]) == pytest.approx(p.random_accuracy, abs=5e-4)
    assert per_class_rates(result)[0]["class"] == "=cmd|calc"


def test_the_table_and_summary_hold_every_sample(profiled):
    result, out = profiled
    with (out / "samples.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = result.columns()
    assert list(rows[0]) == list(cols) and len(rows) == 90
    assert {"label_flipped", "likely_mislabeled", "aum", "confidence", "variability"} <= set(cols)
    for i in (0, 17, 89):
        assert int(rows[i]["forgetting"]) == cols["forgetting"][i]
        assert float(rows[i]["aum"]) == pytest.approx(float(cols["aum"][i]))
        assert rows[i]["never_learned"] == ("true" if cols["never_learned"][i] else "false")
    names = {r["label_name"] for r in rows}
    assert "'=cmd|calc" in names and "=cmd|calc" not in names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 90 and summary["mislabel"]["flagged"] == int(result.mislabel.flagged.sum())
    hits = int((result.mislabel.flagged & result.label_flipped).sum())
    assert summary["mislabel"]["recall"] == pytest.approx(hits / result.label_flipped.sum())
    assert summary["pruning"][0]["removed"] == 18
    if "parquet" in result.files:
        import pyarrow.parquet as pq

        assert pq.read_table(result.files["parquet"]).num_rows == 90


def test_forgetting_profile_is_callable_as_a_package():
    import forgetting.profile.report

    assert callable(forgetting.profile) and forgetting.profile.DynamicsAccumulator is DynamicsAccumulator
    assert not math.isnan(float(forgetting.profile.margins(torch.tensor([[2.0, 1.0]]), torch.tensor([0]))[0]))


# ---------------------------------------------------------------------------------------------- CLI

TINY = """
name = "tiny"
device = "cpu"
dataset = "mnist-5k"
[model_options]
width = 2
embed_dim = 8
[data]
limit = 120
test_split = "test"
label_noise = 0.1
[train]
epochs = 2
[mislabel]
runs = 1
"""


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("profile-*.toml")), ids=lambda p: p.name)
def test_every_profile_example_loads(path):
    from forgetting.profile.config import ProfileConfig, load_profile_config

    config = load_profile_config(path)
    if path.name == "profile-mnist5k.toml":
        assert config == ProfileConfig()  # the example spells out the defaults of `forgetting profile`


def test_cli_profile_writes_the_table_and_report(tmp_path):
    from forgetting.cli import app

    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(app, ["profile", str(config), "--out", str(out), "--prune", "0.25"])
    assert res.exit_code == 0, res.output
    assert "likely mislabelled" in res.output and "pruning" in res.output
    assert (out / "samples.csv").is_file() and (out / "report" / "index.html").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 120 and summary["label_flipped"] == 12 and summary["pruning"][0]["removed"] == 30
    bad = tmp_path / "bad.toml"
    bad.write_text('[profile]\nobserve = "sometimes"\n')
    res = runner.invoke(app, ["profile", str(bad)])
    assert res.exit_code == 2 and "profile.observe" in res.output
    res = runner.invoke(app, ["profile", str(config), "--prune", "1.5"])
    assert res.exit_code == 2 and "--prune" in res.output


# ---------------------------------------------------------------------------------------------- benchmark


def _bench():
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "label_errors.py"
    spec = importlib.util.spec_from_file_location("label_errors_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["label_errors_bench"] = module
    spec.loader.exec_module(module)  # imports no cleanlab: the cells import it lazily
    return module


def test_benchmark_precision_at_k_breaks_ties_in_expectation_and_tables_render(tmp_path):
    bench = _bench()
    positive = np.array([1, 1, 0, 0, 0, 1], dtype=bool)
    assert bench.precision_at_k(np.array([5, 4, 3, 2, 1, 0.0]), positive, 3) == pytest.approx(2 / 3)
    # scores 3 > 2 = 2 = 2 > 0: top-3 is row 0 plus 2 of the 3 tied rows, of which 1 is positive
    assert bench.precision_at_k(np.array([3, 2, 2, 2, 0, 0.0]), positive, 3) == pytest.approx((1 + 2 / 3) / 3)
    assert bench.auroc(np.array([3, 2, 2, 2, 0, 0.0]), positive) == pytest.approx(5.5 / 9)  # ties: 1/2
    cell = {
        "part": "label-errors",
        "dataset": "mnist-5k",
        "kind": "uniform",
        "rate": 0.1,
        "k": 2,
        "precision_at_k": dict.fromkeys(bench.METHODS, 0.5),
        "auroc": dict.fromkeys(bench.METHODS, 0.75),
        "flags": {"cleanlab": {"flagged": 3, "precision": 0.5, "recall": 0.75}},
        "seconds": {"profile": 1.0},
    }
    cells = [cell | {"seed": s} for s in (0, 1)]
    cells.append(
        {
            "part": "pruning",
            "seed": 0,
            "full_accuracy": 0.9,
            "unforgettable": 10,
            "fractions": {str(f): {"forgetting": 0.9, "random": 0.85} for f in bench.PRUNE_FRACTIONS},
        }
    )
    text = bench.tables(cells)
    assert "| mnist-5k | uniform | 10% | 2 | **0.500 ± 0.000**" in text
    assert "| 20% | 0.900 | 0.850 | 0.050 |" in text
    report = bench.write_report(cells, bench.Setup(), tmp_path / "report.md", 90.0, "cmd", ran=1)
    head = report.read_text(encoding="utf-8").splitlines()[2]
    assert head.startswith("Command: `cmd`; this invocation ran 1 cells in 1.5 min and reused 2 finished")
    bench.write_report(cells, bench.Setup(), tmp_path / "fresh.md", 60.0, "cmd", ran=3)
    assert "ran 3 cells in 1.0 min (load average" in (tmp_path / "fresh.md").read_text(encoding="utf-8")
