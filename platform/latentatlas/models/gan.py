"""Generators with their discriminators (DCGAN; a small style-based generator with a W
space) and the recoder that inverts them. Every generator offers what the analyses use of
a decoder: `latent_dim`, `decode(code) -> images in [0, 1]` and `sample_codes(n, gen)`;
its codes are z for the DCGAN and w for the style generator (the seed's W space)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def base_size(size: int, upsamplings: int, what: str) -> int:
    if size % 2**upsamplings:
        raise ValueError(f"{what}: image side {size} is not divisible by 2^{upsamplings} "
                         f"({upsamplings} upsamplings)")
    return size // 2**upsamplings


class GAN(nn.Module):
    """A generator and its discriminator in one module (one state dict, one spec); the two
    are separate submodules so that each can be wrapped for data-parallel training."""

    def __init__(self, input_shape, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = generator.latent_dim  # the size of the codes `decode` takes
        self.noise_dim = generator.noise_dim
        # Its codes are a mapping network's w, not its noise (StyleGAN's W).
        self.style_based = bool(getattr(generator, "style_based", False))

    def sample_noise(self, n: int, generator: torch.Generator | None = None,
                     device="cpu") -> torch.Tensor:
        """z ~ N(0, I), drawn on the CPU so a seeded stream is the same on every device."""
        return torch.randn(n, self.noise_dim, generator=generator).to(device)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Noise -> the space `decode` works in (z itself for the DCGAN, w for style_gan)."""
        return self.generator.codes(z)

    def sample_codes(self, n: int, generator: torch.Generator | None = None,
                     device="cpu") -> torch.Tensor:
        return self.codes(self.sample_noise(n, generator, device))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(code)


class DCGenerator(nn.Module):
    """Radford et al.: a linear layer to a small feature map, then stride-2 transposed
    convolutions with BatchNorm up to the image."""

    def __init__(self, input_shape, latent_dim: int, channels: list[int]):
        super().__init__()
        c, h, w = input_shape
        ups = len(channels)
        bh, bw = base_size(h, ups, "dcgan"), base_size(w, ups, "dcgan")
        self.latent_dim = self.noise_dim = latent_dim
        g = [nn.Linear(latent_dim, channels[0] * bh * bw), nn.BatchNorm1d(channels[0] * bh * bw),
             nn.ReLU(), nn.Unflatten(1, (channels[0], bh, bw))]
        outs = [*channels[1:], c]
        for i, (a, b) in enumerate(zip(channels, outs, strict=True)):
            g.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            g += [nn.BatchNorm2d(b), nn.ReLU()] if i < ups - 1 else [nn.Sigmoid()]
        self.net = nn.Sequential(*g)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def strided_discriminator(input_shape, channels: list[int], layer) -> nn.Sequential:
    """Downsampling blocks (`layer(cin, cout)`, each halving the side) over `channels`, then
    one logit. No BatchNorm: real and fake images can share one forward pass (and one DDP
    reduction) without mixing their statistics."""
    c, h, w = input_shape
    d, prev = [], c
    for ch in channels:
        d += layer(prev, ch)
        prev = ch
        h, w = h // 2, w // 2
    return nn.Sequential(*d, nn.Flatten(), nn.Linear(prev * h * w, 1))


def DCGAN(input_shape, latent_dim: int, channels: list[int]) -> GAN:  # noqa: N802 (a model)
    """DCGAN; its discriminator mirrors the generator with strided convs and LeakyReLU."""
    return GAN(input_shape, DCGenerator(input_shape, latent_dim, channels),
               strided_discriminator(input_shape, list(reversed(channels)), lambda a, b: [
                   nn.Conv2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]))


class ModulatedConv(nn.Module):
    """StyleGAN2's convolution: the style (an affine map of w) scales the input channels of
    the weights; demodulation rescales each output channel to unit expected variance."""

    def __init__(self, cin: int, cout: int, kernel: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.affine = nn.Linear(w_dim, cin)
        nn.init.ones_(self.affine.bias)  # styles start at 1: the plain convolution
        self.demodulate, self.padding = demodulate, kernel // 2
        self.scale = 1 / math.sqrt(cin * kernel * kernel)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # Scaling the input by the style and the output by the demodulation factor equals
        # convolving with per-sample weights (StyleGAN2's non-fused path) and lets one
        # shared-weight convolution serve the batch: far faster than a grouped one on CPUs.
        style = self.affine(w)  # (n, cin)
        weight = self.scale * self.weight
        out = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            # sum over (cin, k, k) of (weight * style)^2, per sample and output channel
            power = style.pow(2) @ weight.pow(2).sum(dim=(2, 3)).T  # (n, cout)
            out = out * torch.rsqrt(power + 1e-8)[:, :, None, None]
        return out + self.bias[None, :, None, None]


class StyleLayer(nn.Module):
    """Modulated 3x3 conv, per-pixel noise with a learned strength, LeakyReLU."""

    def __init__(self, cin: int, cout: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv(cin, cout, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))

    def forward(self, x, w, noise: torch.Tensor | None):
        x = self.conv(x, w)
        if noise is not None:
            x = x + self.noise_strength * noise
        return F.leaky_relu(x, 0.2)


class StyleGenerator(nn.Module):
    """A small style-based generator: mapping MLP z -> w (the W space), synthesis from a
    learned constant through modulated/demodulated convs with noise inputs and one RGB output
    per resolution, summed with upsampling (StyleGAN2's skip generator); a tracked mean of w
    for the truncation trick. `decode(w)` is deterministic (no noise): the analyses need one
    image per code. `forward(z)` in training mode draws noise and tracks the mean of w."""

    style_based = True  # its codes are w, the mapping network's output

    def __init__(self, input_shape, latent_dim: int, noise_dim: int, mapping_layers: int,
                 channels: list[int], w_avg_beta: float = 0.995):
        super().__init__()
        c, h, w = input_shape
        ups = len(channels) - 1
        bh, bw = base_size(h, ups, "style_gan"), base_size(w, ups, "style_gan")
        self.latent_dim, self.noise_dim, self.w_avg_beta = latent_dim, noise_dim, w_avg_beta
        layers, prev = [], noise_dim
        for _ in range(mapping_layers):
            layers += [nn.Linear(prev, latent_dim), nn.LeakyReLU(0.2)]
            prev = latent_dim
        self.mapping = nn.Sequential(*layers)
        self.register_buffer("w_avg", torch.zeros(latent_dim))
        self.const = nn.Parameter(torch.randn(channels[0], bh, bw))
        self.blocks, self.to_rgb = nn.ModuleList(), nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            # The base resolution has one layer on the constant, the others two each.
            widths = [(prev, ch)] if i == 0 else [(prev, ch), (ch, ch)]
            self.blocks.append(nn.ModuleList(StyleLayer(a, b, latent_dim) for a, b in widths))
            self.to_rgb.append(ModulatedConv(ch, c, 1, latent_dim, demodulate=False))
            prev = ch

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        # Pixel norm on z: the mapping sees points on a sphere, as in StyleGAN.
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        return self.mapping(z)

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """The truncation trick: w pulled towards the tracked mean (psi = 1: unchanged)."""
        return self.w_avg + psi * (w - self.w_avg)

    def synthesis(self, w: torch.Tensor, noise: bool) -> torch.Tensor:
        x = self.const[None].expand(len(w), *self.const.shape)
        rgb = None
        for i, (layers, to_rgb) in enumerate(zip(self.blocks, self.to_rgb, strict=True)):
            if i:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            for layer in layers:
                x = layer(x, w, torch.randn_like(x[:, :1]) if noise else None)
            y = to_rgb(x, w)
            rgb = y if rgb is None else rgb + y
        return torch.sigmoid(rgb)

    def decode(self, w: torch.Tensor) -> torch.Tensor:
        return self.synthesis(w, noise=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.codes(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(dim=0), 1 - self.w_avg_beta)
        return self.synthesis(w, noise=self.training)


def StyleGAN(input_shape, latent_dim: int, noise_dim: int, mapping_layers: int,  # noqa: N802
             channels: list[int], w_avg_beta: float = 0.995) -> GAN:
    """The style generator with a residual-free strided discriminator of the same widths."""
    return GAN(input_shape,
               StyleGenerator(input_shape, latent_dim, noise_dim, mapping_layers, channels,
                              w_avg_beta),
               strided_discriminator(input_shape, list(reversed(channels[1:])), lambda a, b: [
                   nn.Conv2d(a, b, 3, padding=1), nn.LeakyReLU(0.2),
                   nn.Conv2d(b, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]))


class Recoder(nn.Module):
    """The seed's recoder: a conv encoder from generated images back to their codes (z of a
    DCGAN, w of a style generator), trained only on freshly generated pairs."""

    def __init__(self, input_shape, latent_dim: int, channels: list[int], hidden: int):
        super().__init__()
        self.input_shape, self.latent_dim = tuple(input_shape), latent_dim
        c, h, w = self.input_shape
        layers, prev = [], c
        for ch in channels:
            layers += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), nn.BatchNorm2d(ch),
                       nn.LeakyReLU(0.2)]
            prev = ch
            h, w = (h + 1) // 2, (w + 1) // 2
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(prev * h * w, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
