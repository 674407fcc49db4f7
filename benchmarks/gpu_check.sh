#!/usr/bin/env bash
# The GPU check of issue 20. Run it from the repository root on a machine with an NVIDIA GPU, with the
# project installed (`make env`):
#
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh             # about 10 minutes on one GPU
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --device cpu --quick   # smoke run of every step
#
# Steps (each one's output goes to OUT, default runs/gpu-check; the script goes on after a failed step and
# exits non-zero at the end if any failed):
#   1. the CUDA-marked tests (`pytest -m cuda`: autocast, device batch sizes, data kept on the device, no
#      per-batch host sync, two experiments sharing the GPU);
#   2. benchmarks/throughput.py on the device: pool passes and training against the best plain loop;
#   3. a short resnet18 active-learning grid on synthetic CIFAR-shaped data (3x32x32, 10 classes, written
#      to OUT, so nothing is downloaded), `--jobs 4` (four experiments share the GPU), with nvidia-smi
#      sampling the GPU's utilisation every 0.5 s; prints the images/s of training and of the pool
#      passes (from the stored rounds) and the utilisation.
set -uo pipefail

PY=${PYTHON:-python}
DEVICE=cuda
QUICK=0
OUT=runs/gpu-check
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (use --device cpu|cuda, --quick, --out DIR)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
FAILED=()
step() { echo; echo "=== $1 ($(date +%T))"; }

step "environment"
"$PY" - "$DEVICE" <<'EOF' || exit 1
import sys

import torch

import forgetting

device = sys.argv[1]
print(f"forgetting {forgetting.__version__} from {forgetting.__file__}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device (a CPU-only torch?); use --device cpu for a smoke run")
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
EOF
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L; HAVE_SMI=1; else echo "nvidia-smi: not found"; HAVE_SMI=0; fi

step "1. CUDA-marked tests"
if ! "$PY" -m pytest -m cuda -q -rs -p no:cacheprovider tests 2>&1 | tee "$OUT/tests.log"; then
  FAILED+=("tests")
fi

step "2. benchmarks/throughput.py --device $DEVICE"
THROUGHPUT_ARGS=(--device "$DEVICE" --json "$OUT/throughput.json")
[ "$DEVICE" != cpu ] && THROUGHPUT_ARGS+=(--threads 4)
[ "$QUICK" = 1 ] && THROUGHPUT_ARGS+=(--quick)
if ! "$PY" benchmarks/throughput.py "${THROUGHPUT_ARGS[@]}" 2>&1 | tee "$OUT/throughput.log"; then
  FAILED+=("throughput")
fi

step "3. resnet18 active-learning grid, CIFAR-shaped synthetic data, --jobs 4"
"$PY" - "$OUT" "$QUICK" "$DEVICE" <<'EOF' || FAILED+=("grid setup")
"""Writes OUT/cifar_shaped.npz (learnable: a seeded colour template per class plus noise) and OUT/grid.toml."""
import sys
from pathlib import Path

import numpy as np

out, quick, device = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
n_train, n_test = (600, 200) if quick else (20000, 2000)
rng = np.random.default_rng(0)
templates = rng.integers(0, 256, (10, 3, 32, 32)).astype(np.float32)


def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, n)
    noise = rng.normal(0, 60, (n, 3, 32, 32))
    images = np.clip(0.5 * templates[labels] + 0.5 * rng.integers(0, 256, (n, 1, 1, 1)) + noise, 0, 255)
    return images.astype(np.uint8), labels.astype(np.int64)


train_x, train_y = draw(n_train)
test_x, test_y = draw(n_test)
np.savez(out / "cifar_shaped.npz", train_images=train_x, train_labels=train_y, test_images=test_x,
         test_labels=test_y)
if quick:
    seeds, strategies, width, al, epochs, jobs = "[0]", '["random", "switch"]', 8, (50, 50, 1, 200), 1, 2
else:
    seeds, strategies, width, al, epochs, jobs = (
        "[0, 1]", '["random", "entropy", "switch", "bald"]', 64, (500, 500, 3, 10000), 5, 4
    )
(out / "grid.toml").write_text(f"""# written by benchmarks/gpu_check.sh
name = "gpu-check"
seeds = {seeds}
dataset = "arrays"
model = "resnet18"
strategy = {strategies}
eval_sets = ["test"]
device = "{device}"
jobs = {jobs}

[al]
initial_size = {al[0]}
query_size = {al[1]}
rounds = {al[2]}
pool_subsample = {al[3]}
mc_samples = 10

[train]
optimizer = "sgd"
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
batch_size = 128
epochs = {epochs}

[track]
preset = "paper-exact"

[model_options.resnet18]
width = {width}
dropout = 0.2

[data]
root = "{out / 'cifar_shaped.npz'}"
seed = 0
""")
print(f"wrote {out / 'cifar_shaped.npz'} ({n_train} + {n_test} images) and {out / 'grid.toml'}")
EOF
rm -rf "$OUT/al"
SMI_PID=""
if [ "$HAVE_SMI" = 1 ] && [ "$DEVICE" != cpu ]; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
    > "$OUT/gpu_util.csv" &
  SMI_PID=$!
fi
JOBS=4
[ "$QUICK" = 1 ] && JOBS=2
START=$(date +%s)
if ! "$PY" -m forgetting run "$OUT/grid.toml" --out "$OUT/al" --jobs "$JOBS" --backend process \
    2>&1 | tee "$OUT/grid.log"; then
  FAILED+=("grid")
fi
echo "grid wall time: $(( $(date +%s) - START )) s"
[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null

"$PY" - "$OUT" <<'EOF' || FAILED+=("grid summary")
"""Images/s of the grid's training and pool passes (from the stored rounds) and the GPU's utilisation."""
import sys
from pathlib import Path

import numpy as np

from forgetting.experiments import ResultStore

out = Path(sys.argv[1])
train_images = train_s = track_images = track_s = eval_s = 0.0
with ResultStore(out / "al") as store:
    rows = store.experiments()
    for row in rows:
        batch = row.spec.train.batch_size
        for r in store.load_rounds(row.id, arrays=True):
            train_images += r.train.steps * batch  # the last batch of an epoch may be smaller
            train_s += r.seconds.get("train", 0.0)
            if "observations" in r.dynamics:
                track_images += float(np.asarray(r.dynamics["observations"]).sum())
                track_s += r.seconds.get("track", 0.0)
            eval_s += r.seconds.get("eval", 0.0)
    done = sum(row.status == "done" for row in rows)
print(f"{done}/{len(rows)} experiments done")
if train_s:
    print(f"training: {train_images / train_s:,.0f} images/s per process ({train_images:,.0f} images, {train_s:.1f} s)")
if track_s:
    print(f"pool passes: {track_images / track_s:,.0f} images/s per process ({track_images:,.0f} images, {track_s:.1f} s)")
util = out / "gpu_util.csv"
if util.exists() and util.stat().st_size:
    values = np.array([float(line.split(",")[1]) for line in util.read_text().splitlines() if line.count(",") >= 2])
    memory = np.array([float(line.split(",")[2]) for line in util.read_text().splitlines() if line.count(",") >= 2])
    print(f"GPU utilisation during the grid: mean {values.mean():.0f} %, median {np.median(values):.0f} %, "
          f"max {values.max():.0f} % ({values.size} samples); memory used up to {memory.max():,.0f} MiB")
else:
    print("GPU utilisation: not sampled (no nvidia-smi, or --device cpu)")
if done < len(rows):
    sys.exit("some experiments did not finish: see grid.log")
EOF

echo
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "gpu_check: FAILED steps: ${FAILED[*]} (logs in $OUT)"
  exit 1
fi
echo "gpu_check: all steps passed (logs in $OUT)"
