"""Bring your own generator: `module.path:function` names a function on the Python path (on a
cluster: shipped with the job's working_dir) that returns a torch module with
`generate(w) -> images in [0, 1]` (N, C, H, W), and optionally `sample_w(n, generator)` (codes
to sample; default N(0, I) of `latent_dim`), `encode(x)` (its own inverter) and
`style_based = True` (its codes are a mapping network's w). A recoder
given the same way is a module mapping images to codes (`encode(x)`, else `forward(x)`).
Weights are the user's business: LatentAtlas imports the user's code but never unpickles
anything."""

from __future__ import annotations

import importlib
import re

import torch
from torch import nn

from latentatlas.errors import UserError

ADDRESS = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_external(address: str) -> bool:
    return bool(ADDRESS.match(address))


class ExternalGenerator(nn.Module):
    """A user's generator behind the interface the analyses use of a decoder."""

    def __init__(self, address: str, module: nn.Module):
        super().__init__()
        self.address, self.user = address, module
        if not callable(getattr(module, "generate", None)):
            raise UserError(f"--generator {address}: the object it returns has no "
                            "generate(w) method")
        latent = getattr(module, "latent_dim", None)
        if latent is None and callable(getattr(module, "sample_w", None)):
            latent = module.sample_w(1, torch.Generator().manual_seed(0)).shape[1]
        if not isinstance(latent, int) or latent < 1:
            raise UserError(f"--generator {address}: give it an integer latent_dim attribute "
                            "or a sample_w(n, generator) method")
        self.latent_dim = self.noise_dim = latent
        # The user says whether its codes are a mapping network's w (a StyleGAN's W): the
        # authors relocate such a space by generated pairs.
        self.style_based = getattr(module, "style_based", False) is True
        with torch.no_grad():
            probe = self.decode(self.sample_codes(2, torch.Generator().manual_seed(0)))
        if probe.ndim != 4 or probe.shape[0] != 2:
            raise UserError(f"--generator {address}: generate(w) returned shape "
                            f"{tuple(probe.shape)}; expected (N, C, H, W) images in [0, 1]")
        self.input_shape = tuple(probe.shape[1:])

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.user.generate(code)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def sample_codes(self, n: int, generator: torch.Generator | None = None,
                     device="cpu") -> torch.Tensor:
        if callable(getattr(self.user, "sample_w", None)):
            return self.user.sample_w(n, generator).to(device)
        return torch.randn(n, self.latent_dim, generator=generator).to(device)

    @property
    def has_encoder(self) -> bool:
        return callable(getattr(self.user, "encode", None))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.user.encode(x)


class ExternalRecoder(nn.Module):
    """A user's image -> code module (its code size is checked against the generator's by
    the caller, on generated images)."""

    def __init__(self, address: str, module: nn.Module):
        super().__init__()
        self.address, self.user = address, module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encode = getattr(self.user, "encode", None)
        return encode(x) if callable(encode) else self.user(x)


def load_external(address: str, device: str | torch.device = "cpu",
                  role: str = "generator") -> ExternalGenerator | ExternalRecoder:
    """The user's module behind `address`, as a generator or (`role` "recoder") a recoder."""
    option = "--recoder" if role == "recoder" else "--generator"
    module_name, _, function = address.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"{option} {address}: cannot import {module_name} ({e}); is it on "
                        "the Python path (or in the job's working_dir)?") from None
    make = getattr(module, function, None)
    if not callable(make):
        raise UserError(f"{option} {address}: {module_name} has no function {function}")
    built = make()
    if not isinstance(built, nn.Module):
        raise UserError(f"{option} {address}: {function}() returned a "
                        f"{type(built).__name__}, not a torch module")
    built = built.to(device).eval()
    return ExternalRecoder(address, built) if role == "recoder" else ExternalGenerator(
        address, built)
