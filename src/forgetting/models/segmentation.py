"""Segmentation models: U-Net and a DeconvNet-style encoder-decoder, both for any input size.

Both take ``float32 [B, C, H, W]`` in ``[0, 1]`` (e.g. ``255 x 701`` seismic sections) and return per-pixel
logits ``float32 [B, num_classes, H, W]``; see :class:`forgetting.models.base.Segmenter` for the padding,
``dropout_layer``, ``head`` and ``embed`` contract.
"""

from __future__ import annotations

import torch
from torch import nn

from forgetting.models.base import Segmenter

__all__ = ["DeconvNet", "UNet"]


def _kaiming_init(module: nn.Module) -> None:
    """He initialisation of every (transposed) conv, so activations keep their scale through the depth."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class _DoubleConv(nn.Sequential):
    """``(conv3x3 -> BN -> ReLU) x 2``: ``[B, in_ch, H, W]`` -> ``[B, out_ch, H, W]``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(*_conv_bn_relu(in_ch, out_ch), *_conv_bn_relu(out_ch, out_ch))


class _Up(nn.Module):
    """U-Net decoder step: upsample ``[B, ch, h, w]`` x2 to ``ch // 2`` channels, concat skip, double conv.

    ``upsample="bilinear"``: bilinear x2 then a 1x1 conv; ``"transpose"``: a 2x2 stride-2 transposed conv.
    Output ``[B, ch // 2, 2h, 2w]``.
    """

    def __init__(self, ch: int, upsample: str) -> None:
        super().__init__()
        self.up: nn.Module
        if upsample == "bilinear":
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(ch, ch // 2, 1, bias=False),
            )
        else:
            self.up = nn.ConvTranspose2d(ch, ch // 2, 2, stride=2, bias=False)
        self.conv = _DoubleConv(ch, ch // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(Segmenter):
    """U-Net (Ronneberger et al., 2015) with batch norm, ``depth`` poolings and ``base`` channels at level 0.

    Encoder level ``i`` has ``base * 2**i`` channels; the bottleneck (level ``depth``) has
    ``embed_dim = base * 2**depth`` channels, at ``1 / 2**depth`` of the (padded) input resolution. The
    decoder mirrors it with skip connections; upsampling is ``"bilinear"`` (x2 + 1x1 conv, the default) or
    ``"transpose"`` (2x2 transposed conv). ``forward`` = crop(head(dropout_layer(decoder output))).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        base: int = 16,
        depth: int = 4,
        upsample: str = "bilinear",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        base, depth = int(base), int(depth)
        self.depth = depth
        self.multiple = 2**depth
        self.num_classes = int(num_classes)
        self.embed_dim = base * 2**depth
        self.inc = _DoubleConv(in_channels, base)
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _DoubleConv(base * 2**i, base * 2 ** (i + 1)))
            for i in range(depth)
        )
        self.ups = nn.ModuleList(_Up(base * 2 ** (i + 1), upsample) for i in reversed(range(depth)))
        _kaiming_init(self)  # before the head, which keeps PyTorch's default initialisation
        self.dropout_layer = nn.Dropout2d(p=float(dropout))
        self.head = nn.Conv2d(base, self.num_classes, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Padded input -> the feature map of every level, ``[B, base * 2**i, H / 2**i, W / 2**i]``."""
        feats = [self.inc(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> the decoder output ``[B, base, H', W']`` at the padded resolution
        (what ``dropout_layer`` and ``head`` act on; crop to ``[..., :H, :W]``)."""
        feats = self._encode(self._pad(x))
        y = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1]), strict=True):
            y = up(y, skip)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> logits ``[B, num_classes, H, W]``."""
        h, w = x.shape[-2:]
        return self.head(self.dropout_layer(self.decode(x)))[..., :h, :w]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> ``float32 [B, embed_dim]``: global average of the bottleneck."""
        return self._encode(self._pad(x))[-1].float().mean(dim=(-2, -1))


class DeconvNet(Segmenter):
    """DeconvNet-style encoder-decoder (Noh et al., 2015) with max-pooling indices and max-unpooling.

    Encoder block ``i < depth``: ``(conv3x3 -> BN -> ReLU) x 2`` to ``base * 2**i`` channels, then a 2x2
    max-pool that keeps its indices. Bottleneck (the fully convolutional "fc6/fc7" analogue):
    ``conv-BN-ReLU`` to ``2c`` then back to ``c = base * 2**(depth-1)`` channels, ``embed_dim = c``. Decoder
    block ``i``: max-unpool with the stored indices, then ``(conv3x3 -> BN -> ReLU) x 2`` down to the
    channels of block ``i - 1`` (``base`` for block 0). ``forward`` = crop(head(dropout_layer(decoder out))).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        base: int = 16,
        depth: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        base, depth = int(base), int(depth)
        self.depth = depth
        self.multiple = 2**depth
        self.num_classes = int(num_classes)
        widths = [base * 2**i for i in range(depth)]
        self.embed_dim = widths[-1]
        self.encoders = nn.ModuleList(
            _DoubleConv(in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth)
        )
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.bottleneck = nn.Sequential(
            *_conv_bn_relu(widths[-1], 2 * widths[-1]), *_conv_bn_relu(2 * widths[-1], widths[-1])
        )
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        self.decoders = nn.ModuleList(
            nn.Sequential(
                *_conv_bn_relu(widths[i], widths[i]), *_conv_bn_relu(widths[i], widths[max(i - 1, 0)])
            )
            for i in reversed(range(depth))
        )
        _kaiming_init(self)  # before the head, which keeps PyTorch's default initialisation
        self.dropout_layer = nn.Dropout2d(p=float(dropout))
        self.head = nn.Conv2d(base, self.num_classes, 1)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Size]]]:
        """Padded input -> (bottleneck ``[B, embed_dim, H / 2**depth, W / 2**depth]``, pooling state).

        The state holds, per block, the pooling indices (``int64``) and the pre-pool size for unpooling.
        """
        state: list[tuple[torch.Tensor, torch.Size]] = []
        y = x
        for encoder in self.encoders:
            y = encoder(y)
            size = y.shape
            y, indices = self.pool(y)
            state.append((indices, size))
        return self.bottleneck(y), state

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> the decoder output ``[B, base, H', W']`` at the padded resolution
        (what ``dropout_layer`` and ``head`` act on; crop to ``[..., :H, :W]``)."""
        y, state = self._encode(self._pad(x))
        for decoder, (indices, size) in zip(self.decoders, reversed(state), strict=True):
            y = decoder(self.unpool(y, indices, output_size=size))
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> logits ``[B, num_classes, H, W]``."""
        h, w = x.shape[-2:]
        return self.head(self.dropout_layer(self.decode(x)))[..., :h, :w]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> ``float32 [B, embed_dim]``: global average of the bottleneck."""
        return self._encode(self._pad(x))[0].float().mean(dim=(-2, -1))
