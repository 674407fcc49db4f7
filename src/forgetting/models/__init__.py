"""The model zoo: classification (mlp, small-cnn, resnet18/34, vgg11/16, densenet121) and segmentation (unet,
deconvnet).

Build a model by name with :func:`build_model`; every model exposes ``embed(x) -> float32 [B, embed_dim]``,
``embed_dim``, ``dropout_layer`` and ``head`` (see :class:`Classifier` and :class:`Segmenter`).
"""

from __future__ import annotations

from forgetting.models.base import (
    Classifier,
    Segmenter,
    count_parameters,
    dropout_modules,
    has_dropout,
    mc_dropout,
)
from forgetting.models.classification import MLP, VGG, VGG_CONFIGS, BasicBlock, DenseNet, ResNet, SmallCNN
from forgetting.models.factory import (
    ModelRef,
    build_from_ref,
    check_model_for,
    embeddings_of,
    import_object,
    is_import_path,
    model_label,
    register_model,
    validate_model_ref,
)
from forgetting.models.registry import (
    MODELS,
    ModelSpec,
    Option,
    build_model,
    get_spec,
    list_models,
    model_info,
    validate_options,
)
from forgetting.models.segmentation import DeconvNet, UNet

__all__ = [
    "MLP",
    "MODELS",
    "VGG",
    "VGG_CONFIGS",
    "BasicBlock",
    "Classifier",
    "DeconvNet",
    "DenseNet",
    "ModelRef",
    "ModelSpec",
    "Option",
    "ResNet",
    "Segmenter",
    "SmallCNN",
    "UNet",
    "build_from_ref",
    "build_model",
    "check_model_for",
    "count_parameters",
    "dropout_modules",
    "embeddings_of",
    "get_spec",
    "has_dropout",
    "import_object",
    "is_import_path",
    "list_models",
    "mc_dropout",
    "model_info",
    "model_label",
    "register_model",
    "validate_model_ref",
    "validate_options",
]
