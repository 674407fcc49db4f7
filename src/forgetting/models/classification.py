"""Classification models: MLP, a small CNN, CIFAR-style ResNet, VGG and DenseNet.

ResNet-18, VGG-16 and DenseNet-121 are the three architectures of the authors' code (olivesgatech/gauss);
``small-cnn`` and ``mlp`` are this project's small models for CPU-sized experiments and follow no paper.

All take ``float32 [B, C, H, W]`` in ``[0, 1]`` and return logits ``float32 [B, num_classes]``; see
:class:`forgetting.models.base.Classifier` for the ``embed`` / ``dropout_layer`` / ``head`` contract.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from forgetting.exceptions import ConfigError
from forgetting.models.base import Classifier, he_init

__all__ = ["MLP", "VGG", "VGG_CONFIGS", "BasicBlock", "DenseNet", "ResNet", "SmallCNN"]


class MLP(Classifier):
    """Fully connected network on flattened images of a fixed size.

    Input ``float32 [B, in_channels, image_size, image_size]``; ``features`` = the last hidden layer's ReLU
    activations ``[B, hidden[-1]]`` (the flattened input ``[B, C*H*W]`` when ``hidden`` is empty).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        image_size: int = 28,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        layers: list[nn.Module] = [nn.Flatten()]
        width = self.in_channels * self.image_size * self.image_size
        for units in hidden:
            layers += [nn.Linear(width, int(units)), nn.ReLU(inplace=True)]
            width = int(units)
        self.body = nn.Sequential(*layers)
        he_init(self.body)
        self._init_head(width, num_classes, dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if tuple(x.shape[1:]) != expected:
            raise ConfigError(
                f"mlp was built for inputs [B, {expected[0]}, {expected[1]}, {expected[2]}] "
                f"(in_channels={self.in_channels}, image_size={self.image_size}) but got shape "
                f"{tuple(x.shape)}; rebuild it with matching in_channels and image_size options"
            )
        return self.body(x)


class SmallCNN(Classifier):
    """A small CNN in the style of Keras' ``mnist_cnn`` example, any input size >= 4 (in no paper).

    ``conv3x3(w) -> ReLU -> conv3x3(w) -> ReLU -> maxpool2 -> conv3x3(2w) -> ReLU -> conv3x3(2w) -> ReLU ->
    maxpool2 -> adaptive avg pool to 4x4 -> flatten [B, 32w] -> Linear(32w, embed_dim) -> ReLU`` gives the
    features ``[B, embed_dim]``; then dropout (default p=0.25) and the linear head. Convolutions are padded
    ("same"), so a 28x28 input gives a 7x7 map before the adaptive pooling.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        width: int = 32,
        dropout: float = 0.25,
        embed_dim: int = 128,
    ) -> None:
        super().__init__()
        w = int(width)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * w * 16, int(embed_dim)),
            nn.ReLU(inplace=True),
        )
        he_init(self.body)  # see he_init: the default init leaves small-data rounds at chance
        self._init_head(embed_dim, num_classes, dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``.

    ``[B, in_planes, H, W]`` -> ``[B, planes, ceil(H/stride), ceil(W/stride)]``; the shortcut is a 1x1
    strided conv + BN when the shape changes, the identity otherwise.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(Classifier):
    """CIFAR-style ResNet: 3x3 stem conv (no max-pool), four stages of :class:`BasicBlock`.

    Stage widths ``w, 2w, 4w, 8w`` with strides ``1, 2, 2, 2``; global average pooling gives the features
    ``[B, 8w]``; then dropout (default off) and the linear head. ``blocks=(2, 2, 2, 2)`` is ResNet-18,
    ``(3, 4, 6, 3)`` ResNet-34. Works on 28x28 grayscale (final map 4x4) and 32x32 RGB.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        w = int(width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        in_planes = w
        for i, n_blocks in enumerate(blocks):
            planes = w * 2**i
            stride = 1 if i == 0 else 2
            stage: list[nn.Module] = []
            for j in range(int(n_blocks)):
                stage.append(BasicBlock(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self._init_head(in_planes, num_classes, dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))


#: Channel configurations of the batch-norm VGGs at width 64; ``"M"`` is a 2x2 max-pool.
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class _MaxPoolIfFits(nn.MaxPool2d):
    """2x2 max-pool that is skipped (identity) when the map is already smaller than 2 on either side.

    This is what lets the five-pool VGGs run on 28x28 inputs (28 -> 14 -> 7 -> 3 -> 1, last pool skipped).
    The test uses static shapes only, so it costs no host sync.
    """

    def __init__(self) -> None:
        super().__init__(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 2:
            return x
        return super().forward(x)


class VGG(Classifier):
    """CIFAR-style VGG with batch norm: ``conv3x3 -> BN -> ReLU`` blocks and 2x2 max-pools.

    Channel counts are the configuration's scaled by ``width / 64`` (at least 1). Max-pools are skipped once
    the map is smaller than 2x2. Global average pooling gives the features ``[B, 8 * width]`` (the last
    block's channels); then dropout (default off) and the linear head.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        config: Sequence[int | str] = VGG_CONFIGS["vgg11"],
        width: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = int(in_channels)
        for item in config:
            if item == "M":
                layers.append(_MaxPoolIfFits())
                continue
            out = max(1, round(int(item) * int(width) / 64))
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out)]
            layers.append(nn.ReLU(inplace=True))
            channels = out
        self.body = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self._init_head(channels, num_classes, dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))


class _DenseLayer(nn.Module):
    """DenseNet-BC bottleneck: ``BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k)``, concatenated to its input.

    ``[B, C, H, W]`` -> ``[B, C + k, H, W]``.
    """

    def __init__(self, in_planes: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_planes, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x), x], dim=1)


class _AvgPoolIfFits(nn.AvgPool2d):
    """2x2 average pool, skipped (identity) once the map is smaller than 2 on either side (static shapes)."""

    def __init__(self) -> None:
        super().__init__(kernel_size=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 2:
            return x
        return super().forward(x)


class DenseNet(Classifier):
    """CIFAR-style DenseNet-BC (Huang et al. 2017): 3x3 stem conv to ``2k`` channels (no 7x7 conv, no
    max-pool), four dense blocks of :class:`_DenseLayer` bottlenecks, and between blocks a transition
    ``BN-ReLU-conv1x1`` that halves the channels (compression 0.5) followed by a 2x2 average pool.

    ``blocks=(6, 12, 24, 16)`` with growth rate ``k = width = 32`` is DenseNet-121 (6,956,298 parameters
    for 3-channel inputs and 10 classes, as the common CIFAR implementation). ``width`` is the growth rate
    and scales every layer. After the last block: BN, ReLU and global average pooling give the features
    ``[B, C_final]`` (1024 at ``k = 32``); then dropout (default off) and the linear head. Works on 28x28
    grayscale (28 -> 14 -> 7 -> 3) and 32x32 RGB (32 -> 16 -> 8 -> 4); pools are skipped on maps below 2x2.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        blocks: Sequence[int] = (6, 12, 24, 16),
        width: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        k = int(width)
        planes = 2 * k
        layers: list[nn.Module] = [nn.Conv2d(in_channels, planes, 3, padding=1, bias=False)]
        for i, n_layers in enumerate(blocks):
            for _ in range(int(n_layers)):
                layers.append(_DenseLayer(planes, k))
                planes += k
            if i < len(blocks) - 1:
                out = planes // 2
                layers += [
                    nn.BatchNorm2d(planes),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(planes, out, 1, bias=False),
                    _AvgPoolIfFits(),
                ]
                planes = out
        layers += [nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self._init_head(planes, num_classes, dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))
