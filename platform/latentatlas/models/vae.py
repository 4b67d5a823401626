"""Gaussian-encoder VAEs with sigmoid decoders: dense (configurable widths) and convolutional."""

from __future__ import annotations

import math

import torch
from torch import nn


class VAE(nn.Module):
    """encode(x) -> (mu, log sigma^2); decode(z) -> x_hat in [0, 1]."""

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int,
                 sample_posterior: bool = True):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.sample_posterior = sample_posterior

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @property
    def noise_dim(self) -> int:
        return self.latent_dim

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Prior noise -> codes: the prior is N(0, I) itself (a GAN maps its noise)."""
        return z

    def sample_codes(self, n: int, generator: torch.Generator | None = None,
                     device="cpu") -> torch.Tensor:
        """Prior samples, drawn on the CPU (the same stream on every device)."""
        return torch.randn(n, self.latent_dim, generator=generator).to(device)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.sample_posterior else mu
        return self.decode(z), mu, logvar


def mlp(widths: list[int]) -> list[nn.Module]:
    layers = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return layers


class DenseVAE(VAE):
    """784-256-64-32-16 is `hidden: [256, 64, 32], latent_dim: 16` on 28x28 images."""

    def __init__(self, input_shape, latent_dim, hidden, sample_posterior=True):
        super().__init__(input_shape, latent_dim, sample_posterior)
        d = math.prod(input_shape)
        widths = [d, *hidden]
        self.encoder = nn.Sequential(nn.Flatten(), *mlp(widths))
        self.mu = nn.Linear(widths[-1], latent_dim)
        self.logvar = nn.Linear(widths[-1], latent_dim)
        back = [latent_dim, *reversed(hidden)]
        self.decoder = nn.Sequential(*mlp(back), nn.Linear(back[-1], d), nn.Sigmoid(),
                                     nn.Unflatten(1, tuple(input_shape)))


class CenterCrop(nn.Module):
    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width

    def forward(self, x):
        top = (x.shape[-2] - self.height) // 2
        left = (x.shape[-1] - self.width) // 2
        return x[..., top:top + self.height, left:left + self.width]


class ConvVAE(VAE):
    """Stride-2 conv encoder, mirrored transposed-conv decoder cropped to the input size."""

    def __init__(self, input_shape, latent_dim, channels, hidden, sample_posterior=True):
        super().__init__(input_shape, latent_dim, sample_posterior)
        c, h, w = input_shape
        enc, prev = [], c
        for ch in channels:
            enc += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), nn.BatchNorm2d(ch), nn.ReLU()]
            prev = ch
        for _ in channels:
            h, w = (h + 1) // 2, (w + 1) // 2
        self.feature_shape = (prev, h, w)
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(prev * h * w, hidden),
                                     nn.ReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)
        dec = [nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, prev * h * w),
               nn.ReLU(), nn.Unflatten(1, self.feature_shape)]
        outs = [*reversed(channels[:-1]), c]
        for i, ch in enumerate(outs):
            dec.append(nn.ConvTranspose2d(prev, ch, 3, stride=2, padding=1, output_padding=1))
            if i < len(outs) - 1:
                dec += [nn.BatchNorm2d(ch), nn.ReLU()]
            prev = ch
        dec += [nn.Sigmoid(), CenterCrop(*input_shape[1:])]
        self.decoder = nn.Sequential(*dec)


class DenseStack(nn.Module):
    """`depth` ReLU layers of `width`, the input concatenated to the last one's output (the
    skip of Dai & Wipf's second stage): (N, d) -> (N, width + d)."""

    def __init__(self, d: int, width: int, depth: int):
        super().__init__()
        self.layers = nn.Sequential(*mlp([d] + [width] * depth))

    def forward(self, x):
        return torch.cat([self.layers(x), x], dim=1)


class SecondStageVAE(VAE):
    """Dai & Wipf's second stage: a dense VAE on a first stage's codes (vectors, not images),
    with a linear (unbounded) output; trained with the Gaussian likelihood of KL balancing."""

    def __init__(self, input_shape, latent_dim, width, depth):
        super().__init__(input_shape, latent_dim)
        (d,) = input_shape
        self.encoder = DenseStack(d, width, depth)
        self.mu = nn.Linear(width + d, latent_dim)
        self.logvar = nn.Linear(width + d, latent_dim)
        self.decoder = nn.Sequential(DenseStack(latent_dim, width, depth),
                                     nn.Linear(width + latent_dim, d))
