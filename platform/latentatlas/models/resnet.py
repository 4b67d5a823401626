"""The seed's own first stages: the ResNet VAE of BalancingVAE (Dai & Wipf's `Resnet`:
residual blocks with BatchNorm, one scale per power of two, a residual dense block before
the codes; decoder from 2x2 up) and Split-VAE (the same decoder emitting two images and a
mask). Images whose side is not a power of two (28) are padded to the next one (32), as
the authors pad MNIST, and the output is cropped back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentatlas.models.vae import VAE, CenterCrop

ACTIVATIONS = {"swish": nn.SiLU, "relu": nn.ReLU}


def padded_side(side: int) -> int:
    return 1 << max(2, (side - 1).bit_length())  # the next power of two, at least 4


class ResBlock(nn.Module):
    """`depth` x (BatchNorm, activation, 3x3 conv) plus a 3x3 conv shortcut."""

    def __init__(self, cin: int, cout: int, act, depth: int = 2):
        super().__init__()
        layers, prev = [], cin
        for _ in range(depth):
            layers += [nn.BatchNorm2d(prev), act(), nn.Conv2d(prev, cout, 3, padding=1)]
            prev = cout
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class ResDense(nn.Module):
    """`depth` x (activation, dense) plus a dense shortcut."""

    def __init__(self, din: int, dout: int, act, depth: int = 2):
        super().__init__()
        layers, prev = [], din
        for _ in range(depth):
            layers += [act(), nn.Linear(prev, dout)]
            prev = dout
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Linear(din, dout)

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class Pad(nn.Module):
    def __init__(self, side: int):
        super().__init__()
        self.side = side

    def forward(self, x):
        dh, dw = self.side - x.shape[-2], self.side - x.shape[-1]
        return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


class ResNetVAE(VAE):
    """Encoder: conv, then per scale a residual block and a stride-2 conv doubling the width
    (`scales` scales from `base` channels), global average, a residual dense block of
    `fc`, the codes. Decoder: dense to 2x2, then per doubling of the side a transposed
    conv and a residual block, widths mirrored; a conv to `out_channels` maps, sigmoid."""

    def __init__(self, input_shape, latent_dim, base: int = 16, scales: int = 3,
                 fc: int = 512, activation: str = "swish", out_channels: int | None = None):
        super().__init__(input_shape, latent_dim)
        c, h, w = input_shape
        side = padded_side(max(h, w))
        act = ACTIVATIONS[activation]
        enc, dim = [Pad(side), nn.Conv2d(c, base, 3, padding=1)], base
        for i in range(scales):
            enc.append(ResBlock(dim, dim, act))
            if i < scales - 1:
                enc.append(nn.Conv2d(dim, dim * 2, 3, stride=2, padding=1))
                dim *= 2
        self.encoder = nn.Sequential(*enc, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     ResDense(dim, fc, act))
        self.mu, self.logvar = nn.Linear(fc, latent_dim), nn.Linear(fc, latent_dim)
        # decoder widths from 2x2 up to the padded side, base at full size (the authors')
        widths, s, d = [], 2, base
        while s <= side:
            widths.append(d)
            s, d = s * 2, min(d * 2, 1024)
        widths.reverse()
        dec = [nn.Linear(latent_dim, 4 * widths[0]), nn.Unflatten(1, (widths[0], 2, 2))]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            dec += [nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1),
                    ResBlock(b, b, act)]
        dec += [nn.Conv2d(widths[-1], out_channels or c, 3, padding=1), nn.Sigmoid(),
                CenterCrop(h, w)]
        self.decoder = nn.Sequential(*dec)


class SplitVAE(ResNetVAE):
    """Split-VAE: the decoder emits 2C + 1 maps in [0, 1], the first the mask m, then two
    images x1 and x2; the output is m * x1 + (1 - m) * x2."""

    def __init__(self, input_shape, latent_dim, base=16, scales=3, fc=512,
                 activation="swish"):
        super().__init__(input_shape, latent_dim, base, scales, fc, activation,
                         out_channels=2 * input_shape[0] + 1)

    def parts(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(m, x1, x2) for codes z."""
        maps, c = self.decoder(z), self.input_shape[0]
        return maps[:, :1], maps[:, 1:1 + c], maps[:, 1 + c:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        m, x1, x2 = self.parts(z)
        return m * x1 + (1 - m) * x2
