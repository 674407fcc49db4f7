"""Hugging Face: the ForgettingTrainerCallback inside a real transformers.Trainer, on a tiny BERT built from
a config (random weights, no download) and an in-memory text dataset."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

transformers = pytest.importorskip("transformers")

from forgetting import EventTracker  # noqa: E402
from forgetting.cartography import read_cartography  # noqa: E402
from forgetting.exceptions import ConfigError  # noqa: E402
from forgetting.integrations.transformers import ForgettingTrainerCallback, hf_logits  # noqa: E402

VOCAB, LENGTH = 40, 12


def texts(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Token sequences labelled by an XOR of the first two tokens' halves of the vocabulary: four epochs
    of a tiny BERT keep changing their minds about it (many switches and forgetting events)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (n, LENGTH), generator=g)
    lengths = torch.randint(6, LENGTH + 1, (n,), generator=g)
    mask = (torch.arange(LENGTH)[None, :] < lengths[:, None]).long()
    ids = ids * mask  # 0 = padding
    upper = ids >= (VOCAB + 3) // 2
    labels = (upper[:, 0] ^ upper[:, 1]).long()
    return [{"input_ids": ids[i], "attention_mask": mask[i], "labels": labels[i]} for i in range(n)]


class Items(Dataset):
    def __init__(self, items: list[dict[str, torch.Tensor]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


def tiny_bert() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=2,
        hidden_dropout_prob=0.2,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


class HandFed(transformers.TrainerCallback):
    """The reference: at each epoch end, eval-mode predictions of the pool, fed to a tracker by hand."""

    def __init__(self, pool: list[dict[str, torch.Tensor]]) -> None:
        self.inputs = {k: torch.stack([item[k] for item in pool]) for k in ("input_ids", "attention_mask")}
        self.labels = torch.stack([item["labels"] for item in pool])
        self.tracker = EventTracker((len(pool),))
        self.logits: list[torch.Tensor] = []
        self.train_mode_seen: list[bool] = []

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.train_mode_seen.append(model.training)
        model.eval()
        with torch.no_grad():
            logits = model(**self.inputs).logits
        model.train()
        self.logits.append(logits)
        preds = logits.argmax(1)
        self.tracker.update(torch.arange(len(preds)), preds, self.labels, epoch=len(self.logits))


def test_trainer_callback_counts_equal_a_tracker_fed_by_hand(tmp_path) -> None:
    train, pool = Items(texts(128, seed=1)), texts(96, seed=2)
    callback = ForgettingTrainerCallback(
        pool, targets="source", batch_size=32, cartography=tmp_path / "carto"
    )
    reference = HandFed(pool)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=4,
        per_device_train_batch_size=16,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = transformers.Trainer(
        model=tiny_bert(), args=args, train_dataset=train, callbacks=[callback, reference]
    )
    trainer.train()

    assert len(reference.logits) == 4 and reference.train_mode_seen == [True] * 4
    tracker = callback.tracker
    for name in ("switches", "forgetting", "learning", "observations", "never_learned", "learned_epoch"):
        assert torch.equal(tracker.read(name), reference.tracker.read(name)), name
    assert int(tracker.switches.sum()) > 0 and int(tracker.forgetting.sum()) > 0
    assert callback.observer.steps == 4 * 8 and callback.observer.epochs == 4

    # the cartography files hold the same eval-mode logits, one file per epoch, closed at the end of training
    dynamics = read_cartography(tmp_path / "carto")
    assert list(dynamics) == list(range(96)) and callback.cartography_writer.epochs == [1, 2, 3, 4]
    exported = np.array([rec["logits"] for rec in dynamics.values()])  # [N, epochs, K]
    expected = torch.stack(reference.logits, 1).numpy()
    np.testing.assert_allclose(exported, expected, rtol=1e-5, atol=1e-5)
    assert [rec["gold"] for rec in dynamics.values()] == reference.labels.tolist()


def test_hf_logits_and_errors() -> None:
    model = tiny_bert().eval()
    batch = {k: torch.stack([item[k] for item in texts(4, seed=3)]) for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        assert torch.equal(hf_logits(model, batch), model(**batch).logits)
    with pytest.raises(ConfigError, match="'source' or None"):
        ForgettingTrainerCallback(texts(4, seed=3), targets="labels")
    unlabelled = [{k: v for k, v in item.items() if k != "labels"} for item in texts(8, seed=4)]
    callback = ForgettingTrainerCallback(unlabelled)  # switches only
    callback.callback.observe(tiny_bert(), epoch=1)
    assert callback.tracker.observations.tolist() == [1] * 8
    with pytest.raises(ConfigError, match="no label under labels, label, label_ids"):
        ForgettingTrainerCallback(unlabelled, targets="source").callback.observe(tiny_bert(), epoch=1)


def test_readme_example_runs(tmp_path) -> None:
    """docs/guide/integrations.md's Hugging Face section is the tail of examples/transformers_dynamics.py."""
    root = Path(__file__).resolve().parents[1]
    script = root / "examples" / "transformers_dynamics.py"
    readme = (root / "docs" / "guide" / "integrations.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Hugging Face Trainer") : readme.index("## Per-sample tables")]
    block = section.split("```python\n")[1].split("```")[0]
    assert 10 <= len(block.strip().splitlines()) <= 20 and block in script.read_text(encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread: see test_lightning
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "epochs in the data map: 5" in out.stdout and "forgotten at least once:" in out.stdout
    with (tmp_path / "runs" / "transformers-example" / "train.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 192 and {r["observations"] for r in rows} == {"5"}
