"""Human in the loop: choose what to label in your own images, with the same strategies as the simulations.

A *labelling project* is a directory (see :mod:`forgetting.annotate.project` for its layout) that points at
your images (a folder of image files, or an ``.npz``/``.npy`` array) and keeps the labels returned so far.
Each query trains the project's model on the labelled images, tracks the unlabelled ones while it trains
(for the dynamics-based strategies), and writes the next images to label: a ranked CSV, a Label Studio
import file and an HTML page. Returned labels (the CSV filled in, or a Label Studio export) are imported,
and the next query continues from there::

    from forgetting.annotate import init_project

    project = init_project("pets", "photos/", classes=["cat", "dog"])
    first = project.query(20, strategy="kcenter-pixels")  # no labels yet: a class-agnostic cold start
    project.import_labels("pets/rounds/0/query.csv")      # after filling in its label column
    second = project.query(20)                            # GauSS (the default strategy)

Segmentation projects (``task="segmentation"``) take masks instead of class labels: a folder of mask files
(class id per pixel, named after the images) or an ``.npz``; each query trains a U-Net on them and ranks the
unlabelled images by their pixel scores, reduced to one per image::

    seismic = init_project("f3", "sections/", classes=["sand", "shale", "salt"], task="segmentation")
    first = seismic.query(8, strategy="kcenter-pixels")
    seismic.import_labels("returned-masks/")              # named as the mask_file column of query.csv
    second = seismic.query(8)                             # GauSS on per-pixel switch counts

Label Studio works both ways for both kinds: each round writes Label Studio tasks with the model's
pre-annotations (a choice, or the predicted mask as brush regions), and exports come back in with
``import_labels``. ``forgetting serve`` (:mod:`~forgetting.annotate.serve`, the ``labelstudio`` extra) runs a
project as a Label Studio ML backend that ranks the tasks, imports annotations from webhooks and retrains
after every k labels (:class:`~forgetting.annotate.live.LiveProject`).

Modules: :mod:`~forgetting.annotate.project` (the project and its rounds), :mod:`~forgetting.annotate.labels`
(what its labels are: class names or masks), :mod:`~forgetting.annotate.ledger` (the records),
:mod:`~forgetting.annotate.settings`, :mod:`~forgetting.annotate.sources` (reading the images),
:mod:`~forgetting.annotate.session` (one query), :mod:`~forgetting.annotate.importers` and
:mod:`~forgetting.annotate.exporters` (file formats), :mod:`~forgetting.annotate.label_studio` and
:mod:`~forgetting.annotate.rle` (Label Studio's formats), :mod:`~forgetting.annotate.live` and
:mod:`~forgetting.annotate.serve` (the ML backend).
"""

from __future__ import annotations

from forgetting.annotate.exporters import write_png
from forgetting.annotate.importers import (
    LabelRow,
    MaskRow,
    read_label_file,
    read_label_studio_masks,
    read_mask_file,
    read_mask_source,
)
from forgetting.annotate.labels import LABEL_KINDS, ClassLabels, LabelKind, MaskLabels
from forgetting.annotate.ledger import ImportSummary, LabelEntry, ProjectStatus
from forgetting.annotate.live import LiveProject, LiveSettings
from forgetting.annotate.project import LabelingProject, ProjectSettings, init_project
from forgetting.annotate.results import QueryResult, RankedItem
from forgetting.annotate.session import (
    COLD_START_STRATEGIES,
    PIXEL_KCENTER,
    query_strategies,
    rank_pool,
)
from forgetting.annotate.sources import ImageSource
from forgetting.exceptions import LabelConflictError, LabelImportError, ProjectError

__all__ = [
    "COLD_START_STRATEGIES",
    "LABEL_KINDS",
    "PIXEL_KCENTER",
    "ClassLabels",
    "ImageSource",
    "ImportSummary",
    "LabelConflictError",
    "LabelEntry",
    "LabelImportError",
    "LabelKind",
    "LabelRow",
    "LabelingProject",
    "LiveProject",
    "LiveSettings",
    "MaskLabels",
    "MaskRow",
    "ProjectError",
    "ProjectSettings",
    "ProjectStatus",
    "QueryResult",
    "RankedItem",
    "init_project",
    "query_strategies",
    "rank_pool",
    "read_label_file",
    "read_label_studio_masks",
    "read_mask_file",
    "read_mask_source",
    "write_png",
]
