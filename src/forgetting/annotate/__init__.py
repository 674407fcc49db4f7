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

Modules: :mod:`~forgetting.annotate.project` (the project, its settings and label ledger),
:mod:`~forgetting.annotate.sources` (reading the images), :mod:`~forgetting.annotate.session` (one query),
:mod:`~forgetting.annotate.importers` and :mod:`~forgetting.annotate.exporters` (file formats).
"""

from __future__ import annotations

from forgetting.annotate.exporters import write_png
from forgetting.annotate.importers import LabelRow, MaskRow, read_label_file, read_mask_file, read_mask_source
from forgetting.annotate.project import (
    ImportSummary,
    LabelEntry,
    LabelingProject,
    ProjectSettings,
    ProjectStatus,
    init_project,
)
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
    "PIXEL_KCENTER",
    "ImageSource",
    "ImportSummary",
    "LabelConflictError",
    "LabelEntry",
    "LabelImportError",
    "LabelRow",
    "LabelingProject",
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
    "read_mask_file",
    "read_mask_source",
    "write_png",
]
