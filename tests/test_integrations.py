"""What the framework adapters need from the core, without a framework: lazy imports that name the extra,
keyword-input sources observed through a ``forward``, and observation passes that leave the training run's
random stream alone."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from forgetting import DatasetSource, EventTracker, ObservationCallback
from forgetting.exceptions import ConfigError, MissingDependencyError
from forgetting.integrations.mapping import MappingSource

FRAMEWORKS = ("lightning", "pytorch_lightning", "transformers", "accelerate", "pandas", "pyarrow")


def test_import_forgetting_imports_no_framework() -> None:
    """``import forgetting`` (and the integrations package) leaves every optional framework unimported."""
    code = textwrap.dedent(
        f"""
        import sys
        import forgetting, forgetting.integrations, forgetting.exports, forgetting.cartography
        print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("forgetting.integrations.lightning", "lightning", "lightning"),
        ("forgetting.integrations.transformers", "transformers", "transformers"),
    ],
)
def test_a_missing_framework_names_its_extra(monkeypatch, module: str, blocked: str, extra: str) -> None:
    for name in [m for m in sys.modules if m == blocked or m.startswith(blocked + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` now raises ImportError
    if blocked == "lightning":
        monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'forgetting\[{extra}\]'"):
        importlib.import_module(module)
    import forgetting.integrations as integrations

    name = "ForgettingCallback" if extra == "lightning" else "ForgettingTrainerCallback"
    with pytest.raises(MissingDependencyError, match=rf"forgetting\[{extra}\]"):
        getattr(integrations, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        integrations.nope  # noqa: B018


class KeywordNet(nn.Module):
    """A model that takes keyword inputs and returns an output object, like a Hugging Face model."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 3)
        self.dropout = nn.Dropout(0.5)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        h = (self.embed(input_ids) * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        return {"logits": self.head(self.dropout(h))}


def _items(n: int = 30) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 20, (n, 6), generator=g)
    mask = torch.ones(n, 6, dtype=torch.long)
    mask[::3, 4:] = 0
    labels = torch.randint(0, 3, (n,), generator=g)
    items = [{"input_ids": ids[i], "attention_mask": mask[i], "label": labels[i]} for i in range(n)]
    return items, torch.stack([ids, mask]), labels


def test_keyword_inputs_observed_through_forward_equal_a_tracker_fed_by_hand() -> None:
    items, (ids, mask), labels = _items()
    torch.manual_seed(0)
    model = KeywordNet()
    seen: list[tuple[int, tuple[int, ...], bool]] = []
    callback = ObservationCallback(
        MappingSource(items),
        "source",
        batch_size=8,
        forward=lambda m, batch: m(**batch)["logits"],
        on_logits=lambda idx, logits, t, epoch: seen.append((epoch, tuple(logits.shape), t is not None)),
    )
    reference = EventTracker((len(items),))
    for epoch in range(1, 5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.4 * torch.randn_like(p))
        callback.observe(model, epoch=epoch)
        assert model.training  # the train flag is restored; dropout was off while observing
        with torch.no_grad():
            preds = model.eval()(input_ids=ids, attention_mask=mask)["logits"].argmax(1)
        model.train()
        reference.update(torch.arange(len(items)), preds, labels, epoch=epoch)
    for name in ("switches", "forgetting", "learning", "never_learned"):
        assert torch.equal(callback.tracker.read(name), reference.read(name)), name
    assert int(reference.switches.sum()) > 0
    assert seen[:4] == [(1, (8, 3), True)] * 3 + [(1, (6, 3), True)]  # 30 rows in batches of 8
    # subsampled passes index the same rows
    sub = ObservationCallback(
        MappingSource(items), "source", subsample=0.5, forward=lambda m, b: m(**b)["logits"]
    )
    sub.observe(model, epoch=1)
    assert int(sub.tracker.observations.sum()) == 15
    assert MappingSource(items).read_targets([2, 5]).tolist() == labels[[2, 5]].tolist()
    # labels given as a tensor instead of read from the items: the same counts
    given = ObservationCallback(
        MappingSource(items, has_targets=False), labels, forward=lambda m, b: m(**b)["logits"]
    )
    from_items = ObservationCallback(MappingSource(items), "source", forward=lambda m, b: m(**b)["logits"])
    for epoch in (1, 2):
        given.observe(model, epoch=epoch)
        from_items.observe(model, epoch=epoch)
    assert torch.equal(given.tracker.read("correct"), from_items.tracker.read("correct"))
    with pytest.raises(ConfigError, match="keyword inputs, not images"):
        _ = MappingSource(items).input_shape


def test_observing_a_lazy_source_leaves_the_global_random_stream_alone() -> None:
    """A pass over a Dataset (DatasetSource or MappingSource) draws nothing from torch's global generator, so
    observing does not change the dropout masks or shuffles of the training run it watches."""
    images = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    items, _, _ = _items(20)
    cases = [
        (
            DatasetSource(list(zip(images, torch.zeros(20, dtype=torch.long), strict=True))),
            nn.Flatten(),
            None,
        ),
        (MappingSource(items), KeywordNet(), lambda m, b: m(**b)["logits"]),
    ]
    for source, model, forward in cases:
        torch.manual_seed(3)
        expected = torch.rand(3)
        torch.manual_seed(3)
        ObservationCallback(source, None, batch_size=7, forward=forward).observe(model, epoch=1)
        assert torch.equal(torch.rand(3), expected), type(source).__name__
