"""A StyleGAN2 generator (config-e/f "skip" architecture) in plain PyTorch whose state dict
has exactly the keys and shapes of rosinality/stylegan2-pytorch's `model.Generator` (noise
and blur-kernel buffers included), so that the `g_ema` entry of that repository's checkpoints
loads strictly; its forward pass follows that repository's native (non-CUDA) operations, so
both compute the same images up to float rounding. Written from the math, not copied.

Codes are w: `mapping(z)` is the style MLP, `synthesis(w)` uses the one w for every layer
and the stored noise buffers, so an image is a deterministic function of its w."""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

BLUR_KERNEL = (1.0, 3.0, 3.0, 1.0)  # the only kernel the published checkpoints use
LR_MLP = 0.01  # the mapping's learning-rate multiplier: its weights are stored divided by it
SQRT2 = math.sqrt(2.0)  # keeps unit variance through a leaky ReLU (He gain)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative crops), FIR-filter with a 2-D kernel and
    keep every `down`-th sample, channel by channel (the same padding on both axes)."""
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n * c, 1, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])
    x = F.pad(x.reshape(n * c, 1, h * up, w * up), [pad[0], pad[1], pad[0], pad[1]])
    # conv2d correlates: the flipped kernel makes it the convolution upfirdn2d is defined by
    x = F.conv2d(x, torch.flip(kernel, [0, 1])[None, None])[:, :, ::down, ::down]
    return x.reshape(n, c, x.shape[2], x.shape[3])


def bias_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.ndim - 2)), 0.2) * SQRT2


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """A linear layer with equalised learning rate: weights stored at unit scale (over
    `lr_mul`) and scaled at run time by He's constant."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return bias_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class FIR(nn.Module):
    """The [1, 3, 3, 1] low-pass after a 2x upsampling (zero insertion here when `up` is 2,
    by the transposed conv before it otherwise): gain 4 restores the mean the zeros took."""

    def __init__(self, up: int, pad: tuple[int, int]):
        super().__init__()
        k = torch.tensor(BLUR_KERNEL)
        self.register_buffer("kernel", torch.outer(k, k) / k.sum() ** 2 * 4)
        self.up, self.pad = up, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.up, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's convolution with per-sample weights: the style (an affine map of w)
    scales the input channels, demodulation normalises each output channel; one grouped
    convolution serves the batch. Upsampling is a stride-2 transposed conv then the blur."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        self.scale, self.padding = 1 / math.sqrt(in_channel * kernel_size**2), kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size,
                                               kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)  # styles start at 1
        if upsample:  # pads that take the transposed conv's 2h + k - 2 samples back to 2h
            p = len(BLUR_KERNEL) - 2 - (kernel_size - 1)
            self.blur = FIR(up=1, pad=((p + 1) // 2 + 1, p // 2 + 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, cin, h, wd = x.shape
        k, cout = self.kernel_size, self.out_channel
        style = self.modulation(w).view(b, 1, cin, 1, 1)
        weight = self.scale * self.weight * style  # (b, cout, cin, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(
                b, cout, 1, 1, 1)
        x = x.reshape(1, b * cin, h, wd)
        if self.upsample:  # a transposed conv takes its weight as (in, out) per group
            weight = weight.transpose(1, 2).reshape(b * cin, cout, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.view(b, cout, out.shape[2], out.shape[3]))
        out = F.conv2d(x, weight.reshape(b * cout, cin, k, k), padding=self.padding, groups=b)
        return out.view(b, cout, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class BiasLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_leaky_relu(x, self.bias)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, style_dim: int,
                 upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = BiasLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    """A 1x1 modulated conv to RGB (no demodulation: colours keep their scale), added to the
    upsampled RGB of the resolution below (the skip architecture)."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = FIR(up=2, pad=(2, 1))
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        return out if skip is None else out + self.upsample(skip)


def channels_at(resolution: int, channel_multiplier: int) -> int:
    # rosinality's table: 512 up to 32x32, then 2^14 * multiplier / resolution
    return 512 if resolution <= 32 else 2**14 * channel_multiplier // resolution


class StyleGAN2Generator(nn.Module):
    """rosinality's `Generator(size, style_dim, n_mlp, channel_multiplier)` (its default blur
    kernel and lr_mlp); attribute names are theirs so the state dicts match key for key."""

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8,
                 channel_multiplier: int = 2):
        super().__init__()
        log_size = size.bit_length() - 1
        if size != 2**log_size or not 8 <= size <= 1024:
            raise ValueError(f"stylegan2: size {size} is not a power of two in 8..1024")
        self.size, self.style_dim, self.log_size = size, style_dim, log_size
        self.num_layers = (log_size - 2) * 2 + 1  # one conv at 4x4, two per resolution above
        self.n_latent = log_size * 2 - 2  # their w+ rows: a to_rgb shares one with the next conv
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=LR_MLP, activate=True) for _ in range(n_mlp)])
        ch = channels_at(4, channel_multiplier)
        self.input = ConstantInput(ch)
        self.conv1 = StyledConv(ch, ch, style_dim)
        self.to_rgb1 = ToRGB(ch, style_dim, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        for i in range(3, log_size + 1):
            out = channels_at(2**i, channel_multiplier)
            self.convs.extend([StyledConv(ch, out, style_dim, upsample=True),
                               StyledConv(out, out, style_dim)])
            self.to_rgbs.append(ToRGB(out, style_dim))
            ch = out
        # Fixed noise: checkpoints carry it, and images are then functions of w alone.
        self.noises = nn.Module()
        for i in range(self.num_layers):
            side = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, side, side))

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, style_dim) -> w (N, style_dim)."""
        return self.style(z)

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        """w (N, style_dim) -> images (N, 3, size, size), nominally in [-1, 1] (not clamped:
        neither are theirs)."""
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        x = self.input.input.repeat(w.shape[0], 1, 1, 1)
        x = self.conv1(x, w, noise[0])
        skip = self.to_rgb1(x, w)
        for i, (up, conv, to_rgb) in enumerate(zip(self.convs[::2], self.convs[1::2],
                                                   self.to_rgbs, strict=True)):
            x = conv(up(x, w, noise[2 * i + 1]), w, noise[2 * i + 2])
            skip = to_rgb(x, w, skip)
        return skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z))


def infer_config(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """The constructor arguments of a rosinality Generator state dict (a checkpoint's
    `g_ema`): n_mlp counts the `style.<i>.weight` layers, style_dim is the input width of
    the first modulation, size is 2^(number of to_rgbs + 2), channel_multiplier comes from
    the width of the last to_rgb (it changes nothing below 64x64: 2 is reported there).
    Every key and shape is then checked against that configuration."""
    if "g_ema" in state_dict:
        raise ValueError("stylegan2: this is a whole checkpoint; pass its 'g_ema' entry")
    needed = ["conv1.conv.modulation.weight", "to_rgbs.0.conv.weight"]
    missing = [k for k in needed if k not in state_dict]
    if missing:
        raise ValueError(f"stylegan2: not a rosinality StyleGAN2 generator state dict "
                         f"(no {', '.join(missing)})")
    n_mlp = sum(bool(re.fullmatch(r"style\.\d+\.weight", k)) for k in state_dict)
    n_rgbs = 1 + max(int(m[1]) for k in state_dict
                     if (m := re.fullmatch(r"to_rgbs\.(\d+)\.conv\.weight", k)))
    modulation = state_dict["conv1.conv.modulation.weight"]
    last_rgb = state_dict[f"to_rgbs.{n_rgbs - 1}.conv.weight"]  # (1, 3, channels, 1, 1)
    size = 2 ** min(n_rgbs + 2, 11)
    multiplier = last_rgb.shape[2] * size // 2**14 if last_rgb.ndim == 5 and size >= 64 else 2
    if n_rgbs > 8 or modulation.ndim != 2 or last_rgb.ndim != 5 or multiplier < 1:
        raise ValueError(f"stylegan2: no rosinality configuration has {n_rgbs} to_rgbs, a "
                         f"modulation of shape {tuple(modulation.shape)} and a last to_rgb "
                         f"of shape {tuple(last_rgb.shape)}")
    config = dict(size=size, channel_multiplier=multiplier, style_dim=modulation.shape[1],
                  n_mlp=n_mlp)
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        expected = {k: tuple(v.shape) for k, v in StyleGAN2Generator(**config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    wrong = sorted(set(expected) ^ set(got)) + sorted(
        k for k in set(expected) & set(got) if expected[k] != got[k])
    if wrong:
        raise ValueError(f"stylegan2: the state dict does not match Generator({config}): "
                         f"{len(wrong)} keys missing, unexpected or of another shape, e.g. "
                         f"{', '.join(wrong[:5])}")
    return config


class StyleGAN2W(nn.Module):
    """A pretrained StyleGAN2 as the analyses use a generator, in its W space (the seed's):
    codes(z) = the mapping's w, pulled toward the checkpoint's `latent_avg` by `truncation`
    (1: none); decode(w) = the synthesis of w on every layer with the checkpoint's fixed
    noise, in [0, 1], its central square of `crop` of the side cut out and resized (with
    antialiasing) to the study's images, averaged to grey for one-channel data."""

    style_based = True  # its codes are w, the mapping network's output

    def __init__(self, generator: StyleGAN2Generator, latent_avg: torch.Tensor,
                 image_shape: tuple[int, int, int], crop: float = 1.0,
                 truncation: float = 1.0):
        super().__init__()
        self.generator = generator
        self.register_buffer("latent_avg", latent_avg.reshape(-1).float())
        self.latent_dim = self.noise_dim = generator.style_dim
        self.image_shape, self.crop, self.truncation = tuple(image_shape), crop, truncation

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        w = self.generator.mapping(z)
        return self.latent_avg + self.truncation * (w - self.latent_avg)

    def decode(self, w: torch.Tensor) -> torch.Tensor:
        images = (self.generator.synthesis(w).clamp(-1, 1) + 1) / 2
        side = images.shape[-1]
        keep = max(1, round(side * self.crop))
        start = (side - keep) // 2
        images = images[..., start:start + keep, start:start + keep]
        c, h, w_ = self.image_shape
        if images.shape[-2:] != (h, w_):
            images = F.interpolate(images, size=(h, w_), mode="bilinear", align_corners=False,
                                   antialias=True).clamp(0, 1)
        return images.mean(dim=1, keepdim=True) if c == 1 else images
