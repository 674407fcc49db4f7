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
    "ModelSpec",
    "Option",
    "ResNet",
    "Segmenter",
    "SmallCNN",
    "UNet",
    "build_model",
    "count_parameters",
    "dropout_modules",
    "get_spec",
    "has_dropout",
    "list_models",
    "mc_dropout",
    "model_info",
    "validate_options",
]
