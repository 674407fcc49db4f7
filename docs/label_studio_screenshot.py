"""Take docs/img/label-studio.png and docs/img/label-studio-ranked.png: the real Label Studio UI, in headless
chromium, showing the tasks of a segmentation project ranked by `forgetting serve` (the Data Manager sorted by
prediction score) and the top task open in the editor with its masks pre-annotated by the model.

    make screenshot-label-studio        # or: python docs/label_studio_screenshot.py [--out PNG]

Needs the Label Studio venv (`make label-studio-env`), the labelstudio extra, and chromium with its
WebDriver (`apt-get install chromium chromium-driver`). It builds a labelling project of 96 synthetic seismic
sections (6 facies, 64x48 pixels), gives it the true masks of 6 sections, and starts `forgetting serve` on it
(round 0: GauSS on a U-Net trained on those 6 masks ranks the other 90, and pre-annotates the first 12 with
its predicted masks). It then starts Label Studio (benchmarks/label_studio/servers.py), creates a project
with the project's brush interface through the SDK, imports every section, connects the backend, and
screenshots a Data Manager tab sorted by prediction score, then the top task open in the editor. About 2-6
minutes on 2 CPU cores; everything lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from forgetting.annotate import init_project, write_png  # noqa: E402
from forgetting.data import load_dataset  # noqa: E402


def _servers():
    spec = importlib.util.spec_from_file_location(
        "label_studio_servers", REPO / "benchmarks/label_studio/servers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE / "img" / "label-studio.png")
    parser.add_argument("--table-out", type=Path, default=HERE / "img" / "label-studio-ranked.png")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv-labelstudio")
    args = parser.parse_args(argv)
    servers = _servers()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="forgetting-ls-") as tmp:
        root = Path(tmp)
        data = load_dataset("seismic-synthetic", inlines=48, crosslines=48, depth=64, seed=0)
        images = data.train.images[:, 0].numpy()
        masks = data.train.targets.numpy()
        classes = list(data.classes)
        folder = root / "documents" / "sections"
        items = []
        for i in range(images.shape[0]):
            item = f"{'inline' if i < images.shape[0] // 2 else 'crossline'}-{i:03d}.png"
            write_png(folder / item, images[i][None])
            items.append(item)
        project = init_project(
            root / "project",
            folder,
            classes=classes,
            task="segmentation",
            query_size=12,
            model_options={"base": 8, "depth": 3},
            train={"epochs": 40, "batch_size": 6},
            device="cpu",
        )
        labelled = items[::16]
        project.add_masks({item: masks[items.index(item)] for item in labelled})
        ls = servers.LabelStudioServer(root / "label-studio", root / "documents", venv=args.venv)
        with servers.BackendServer(project.root, "--every", "5") as backend, ls:
            backend.wait(lambda h: h["rounds"] == 1 and not h["training"], what="round 0", timeout=900)
            setup = ls.connect(project, backend, "F3-like sections ranked by forgetting")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shot = ls.client(
                "screenshot",
                "--project",
                str(setup["project"]),
                "--out",
                str(args.out.resolve()),
                "--username",
                ls.username,
                "--password",
                ls.password,
                "--table-out",
                str(args.table_out.resolve()),
            )
    seconds = time.perf_counter() - started
    print(
        f"{args.out}: task {shot['item']} (rank 1 of round 0) open in the editor; "
        f"{len(labelled)} sections labelled, {len(items)} in the project; {seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
