"""Per-sample exports of a tracker (table, CSV, Parquet, pandas) and the dataset-cartography JSONL."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from forgetting import EventTracker, ObservationCallback, exports
from forgetting.cartography import CartographyWriter, epoch_file, read_cartography
from forgetting.exceptions import ConfigError, MissingDependencyError
from forgetting.exports import SAMPLE_COLUMNS, sample_table, to_frame, write_csv, write_parquet

N, K = 40, 4


def _fed_tracker(seed: int = 0, shape: tuple[int, ...] = (N,), passes: int = 5) -> tuple[EventTracker, list]:
    """A tracker fed with random predictions over ``passes`` epochs, and the (preds, targets) it saw."""
    g = torch.Generator().manual_seed(seed)
    tracker = EventTracker(shape, num_classes=K)
    targets = torch.randint(0, 3, shape, generator=g)
    seen = []
    for epoch in range(1, passes + 1):
        preds = torch.where(
            torch.rand(shape, generator=g) < 0.6, targets, torch.randint(0, K, shape, generator=g)
        )
        tracker.update(torch.arange(shape[0]), preds, targets, epoch=epoch)
        seen.append((preds.clone(), targets))
    return tracker, seen


def _by_hand(history: list) -> dict[str, np.ndarray]:
    """Counters recomputed from the raw prediction history, element by element (the reference)."""
    preds = np.stack([p.numpy() for p, _ in history])  # [T, ...]
    correct = np.stack([(p == t).numpy() for p, t in history])
    switches = (preds[1:] != preds[:-1]).sum(0)
    forgetting = (correct[:-1] & ~correct[1:]).sum(0)
    learning = (~correct[:-1] & correct[1:]).sum(0)
    epochs = np.arange(2, len(history) + 1).reshape(-1, *[1] * (preds.ndim - 1))
    forgot_at = np.where(correct[:-1] & ~correct[1:], epochs, -1)
    return {
        "switches": switches,
        "forgetting": forgetting,
        "learning": learning,
        "never_learned": ~correct.any(0),
        "correct": correct[-1],
        "prediction": preds[-1],
        "last_forgotten_epoch": forgot_at.max(0),
    }


def test_table_columns_equal_the_counts_recomputed_by_hand() -> None:
    tracker, history = _fed_tracker()
    table = tracker.table()
    assert tuple(table) == SAMPLE_COLUMNS
    assert all(len(col) == N for col in table.values())
    np.testing.assert_array_equal(table["sample_id"], np.arange(N))
    expected = _by_hand(history)
    for name, values in expected.items():
        np.testing.assert_array_equal(table[name], values, err_msg=name)
    assert table["observations"].tolist() == [5] * N and table["observed_with_targets"].all()
    assert int(table["forgetting"].sum()) > 0 and int(table["never_learned"].sum()) >= 0
    # without epoch tracking the epoch columns are absent
    plain = EventTracker((3,), track_epochs=False)
    plain.update(torch.arange(3), torch.tensor([0, 1, 2]))
    assert "learned_epoch" not in plain.table() and "last_forgotten_epoch" not in plain.table()
    with pytest.raises(ConfigError, match=r"one id per row of the tracker \(40\)"):
        tracker.table(ids=["a", "b"])


def test_csv_round_trip_with_and_without_pandas(tmp_path) -> None:
    tracker, _ = _fed_tracker(seed=1)
    ids = [f"img_{i:03d}.png" for i in range(N)]
    ids[3], ids[4], ids[5] = "=HYPERLINK(1)", "-2.png", "@sum"
    path = tracker.to_csv(tmp_path / "samples.csv", ids)
    table = tracker.table(ids)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(SAMPLE_COLUMNS) and len(rows) == N
    # text cells a spreadsheet would evaluate carry a leading quote; numbers (epoch -1) never do
    assert [rows[i]["sample_id"] for i in (3, 4, 5, 6)] == [
        "'=HYPERLINK(1)",
        "'-2.png",
        "'@sum",
        "img_006.png",
    ]
    assert "-1" in {r["last_forgotten_epoch"] for r in rows}
    for name in SAMPLE_COLUMNS[1:]:
        col = table[name]
        parsed = [r[name] == "true" for r in rows] if col.dtype == np.bool_ else [int(r[name]) for r in rows]
        assert parsed == col.tolist(), name

    frame = tracker.to_frame(ids)
    pd = pytest.importorskip("pandas")
    back = pd.read_csv(path)
    assert list(back.columns) == list(frame.columns) == list(SAMPLE_COLUMNS)
    for name in SAMPLE_COLUMNS[1:]:
        np.testing.assert_array_equal(back[name].to_numpy(), frame[name].to_numpy(), err_msg=name)
        assert back[name].dtype.kind == ("b" if frame[name].dtype.kind == "b" else "i"), name
    assert back["sample_id"].tolist()[6:] == ids[6:]


def test_parquet_round_trip_keeps_dtypes(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    tracker, _ = _fed_tracker(seed=2)
    ids = np.arange(100, 100 + N)
    path = tracker.to_parquet(tmp_path / "samples.parquet", ids)
    back = pd.read_parquet(path)
    table = tracker.table(ids)
    assert list(back.columns) == list(table)
    for name, col in table.items():
        np.testing.assert_array_equal(back[name].to_numpy(), col, err_msg=name)
        assert back[name].dtype == col.dtype, name


def test_missing_optional_packages_name_the_extra(monkeypatch, tmp_path) -> None:
    tracker, _ = _fed_tracker()
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'forgetting\[parquet\]'"):
        tracker.to_parquet(tmp_path / "x.parquet")
    with pytest.raises(MissingDependencyError, match=r"pip install 'forgetting\[pandas\]'"):
        tracker.to_frame()
    assert tracker.to_csv(tmp_path / "x.csv").is_file()  # the CSV needs neither


def test_pixel_trackers_refuse_without_per_and_give_both_tables(monkeypatch) -> None:
    shape = (3, 4, 5)
    tracker, history = _fed_tracker(seed=3, shape=shape, passes=4)
    with pytest.raises(ConfigError, match=r"counts pixels.*per='pixel'.*per='sample'"):
        tracker.table()
    with pytest.raises(ConfigError, match="needs a pixel tracker"):
        _fed_tracker()[0].table(per="pixel")

    pixels = tracker.table(["a", "b", "c"], per="pixel")
    assert len(pixels["sample_id"]) == 60 and list(pixels)[:3] == ["sample_id", "y", "x"]
    coords = zip(pixels["sample_id"], pixels["y"], pixels["x"], strict=True)
    rows = {(s, y, x): i for i, (s, y, x) in enumerate(coords)}
    switches = tracker.switches.numpy()
    assert rows[("b", 2, 3)] == 1 * 20 + 2 * 5 + 3
    for (s, y, x), i in list(rows.items())[::7]:
        assert pixels["switches"][i] == switches["abc".index(s), y, x]

    summary = tracker.table(per="sample")
    flat = {
        name: tracker.read(name).reshape(3, -1).numpy() for name in ("switches", "forgetting", "learning")
    }
    np.testing.assert_array_equal(summary["switches_sum"], flat["switches"].sum(1))
    np.testing.assert_allclose(summary["switches_mean"], flat["switches"].mean(1))
    np.testing.assert_array_equal(summary["forgetting_max"], flat["forgetting"].max(1))
    np.testing.assert_array_equal(summary["learning_sum"], flat["learning"].sum(1))
    assert summary["pixels"].tolist() == [20] * 3 and summary["observations"].tolist() == [4] * 3
    expected = np.stack([(p == t).numpy() for p, t in history]).any(0)
    np.testing.assert_array_equal(summary["never_learned_pixels"], (~expected).reshape(3, -1).sum(1))
    # read in chunks of rows (here one row at a time): the same summary
    monkeypatch.setattr(exports, "_SUMMARY_CHUNK", 20)
    chunked = tracker.table(per="sample")
    assert list(chunked) == list(summary)
    for name, col in summary.items():
        np.testing.assert_array_equal(chunked[name], col, err_msg=name)


def test_pixel_summary_of_unobserved_rows_is_nan_not_zero() -> None:
    tracker = EventTracker((2, 2, 2))
    tracker.update(torch.tensor([0]), torch.zeros(1, 2, 2, dtype=torch.long), epoch=1)
    summary = sample_table(tracker, per="sample")
    assert summary["observed_pixels"].tolist() == [4, 0]
    assert summary["switches_mean"][0] == 0 and np.isnan(summary["switches_mean"][1])


def test_write_helpers_check_the_table(tmp_path) -> None:
    with pytest.raises(ConfigError, match="differ in length"):
        write_csv({"a": np.arange(3), "b": np.arange(2)}, tmp_path / "bad.csv")
    with pytest.raises(ConfigError, match="no columns"):
        to_frame({})
    pytest.importorskip("pyarrow")
    path = write_parquet({"sample_id": np.array(["x", "y"]), "v": np.array([1.5, np.nan])}, tmp_path / "t.pq")
    assert path.is_file() and not list(tmp_path.glob(".*tmp"))


# ------------------------------------------------------------------------------------------------ cartography


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _images(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g), torch.randint(
        0, K, (n,), generator=g
    )


def test_cartography_jsonl_round_trip(tmp_path) -> None:
    images, labels = _images()
    torch.manual_seed(0)
    model = _Linear()
    ids = [f"guid-{i}" for i in range(N)]
    writer = CartographyWriter(tmp_path, ids=ids)
    observe = ObservationCallback(images, labels, batch_size=16, on_logits=writer)
    expected = []
    for epoch in range(1, 5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
            expected.append(model(images.float() / 255))
        observe.observe(model, epoch=epoch)
    writer.close()

    files = sorted(p.name for p in (tmp_path / "training_dynamics").iterdir())
    assert files == [f"dynamics_epoch_{e}.jsonl" for e in range(4)] and writer.epochs == [1, 2, 3, 4]
    for e in range(4):  # readable line by line, with exactly the documented keys
        with epoch_file(tmp_path, e).open(encoding="utf-8") as fh:
            lines = [json.loads(line) for line in fh]
        assert len(lines) == N
        assert all(set(rec) == {"guid", f"logits_epoch_{e}", "gold"} for rec in lines)
        assert [rec["guid"] for rec in lines] == ids and [rec["gold"] for rec in lines] == labels.tolist()
        np.testing.assert_allclose(
            np.array([rec[f"logits_epoch_{e}"] for rec in lines]), expected[e].numpy(), rtol=1e-6, atol=1e-6
        )

    dynamics = read_cartography(tmp_path)
    assert list(dynamics) == ids
    # forgetting events recounted from the exported logits agree with the tracker
    correct = np.array([[np.argmax(ep) == rec["gold"] for ep in rec["logits"]] for rec in dynamics.values()])
    forgotten = (correct[:, :-1] & ~correct[:, 1:]).sum(1)
    np.testing.assert_array_equal(forgotten, observe.tracker.forgetting.numpy())
    assert forgotten.sum() > 0


def test_cartography_refuses_what_its_reader_would_misread(tmp_path) -> None:
    images, labels = _images()
    model = _Linear()
    writer = CartographyWriter(tmp_path / "a", n=N)
    sub = ObservationCallback(images, labels, subsample=0.5, on_logits=writer)
    sub.observe(model, epoch=1)
    with pytest.raises(ConfigError, match=r"observed 20 of 40 samples.*without subsample"):
        writer.close()
    unlabeled = ObservationCallback(images, None, on_logits=CartographyWriter(tmp_path / "b", n=N))
    with pytest.raises(ConfigError, match="needs the gold labels"):
        unlabeled.observe(model, epoch=1)
    # gold labels given up front work for an unlabelled observation
    gold_writer = CartographyWriter(tmp_path / "c", gold=labels)
    ObservationCallback(images, None, on_logits=gold_writer).observe(model, epoch=1)
    gold_writer.close()
    assert [r["gold"] for r in read_cartography(tmp_path / "c").values()] == labels.tolist()
    # an earlier run's files: refused unless overwrite; foreign files always
    with pytest.raises(ConfigError, match="already holds 1 dynamics_epoch"):
        CartographyWriter(tmp_path / "c", n=N)
    CartographyWriter(tmp_path / "c", n=N, overwrite=True)
    assert not epoch_file(tmp_path / "c", 0).exists()
    (tmp_path / "c" / "training_dynamics" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"other files \(notes.txt\)"):
        CartographyWriter(tmp_path / "c", n=N, overwrite=True)
    with pytest.raises(ConfigError, match="needs n"):
        CartographyWriter(tmp_path / "d")
