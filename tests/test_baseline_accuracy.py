"""Real data, real shift: small-cnn trained briefly on mnist-5k generalises in-distribution, not to digits,
and corruption severity lowers its accuracy."""

from __future__ import annotations

import time

import numpy as np
import pytest

from forgetting.data import build_eval_set, load_dataset
from forgetting.data.corruptions import CORRUPTIONS
from forgetting.evaluation import evaluate
from forgetting.models import build_model
from forgetting.training import TrainConfig, fit


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    ds = load_dataset("mnist-5k", seed=0)
    model = build_model("small-cnn", 1, 10, seed=0)
    start = time.perf_counter()
    fit(model, ds.train, TrainConfig(epochs=4, batch_size=64, lr=2e-3), seed=0)
    return {"model": model, "data": ds, "seconds": time.perf_counter() - start}


def test_small_cnn_learns_mnist_and_fails_on_digits(trained: dict[str, object]) -> None:
    model, ds = trained["model"], trained["data"]
    test_acc = evaluate(model, ds.test)["accuracy"]
    digits = build_eval_set("digits", ds.test, seed=0)
    digits_acc = evaluate(model, digits)["accuracy"]
    assert test_acc > 0.90, f"mnist-5k test accuracy {test_acc:.3f}"
    # Measured with He-initialised small-cnn: test ~0.97, digits 0.73-0.82 depending on the thread count
    # (float summation order); a 10-point drop is the "clearly lower" this test pins.
    assert digits_acc < test_acc - 0.10, f"digits {digits_acc:.3f} vs test {test_acc:.3f}: no clear shift"
    assert digits_acc > 0.2  # the same digit classes: far above chance, far below in-distribution


def test_corruption_severity_lowers_accuracy(trained: dict[str, object]) -> None:
    model, ds = trained["model"], trained["data"]
    names = [c for c in CORRUPTIONS if c != "saturate"]  # saturate needs RGB
    acc = {
        (name, sev): evaluate(model, build_eval_set(f"{name}-{sev}", ds.test, seed=0))["accuracy"]
        for name in names
        for sev in (1, 5)
    }
    mean1 = np.mean([acc[(n, 1)] for n in names])
    mean5 = np.mean([acc[(n, 5)] for n in names])
    assert mean5 < mean1 - 0.05, f"mean accuracy at severity 1: {mean1:.3f}, at 5: {mean5:.3f}"
    worse = sum(acc[(n, 5)] <= acc[(n, 1)] + 0.01 for n in names)
    assert worse >= len(names) - 2, acc
