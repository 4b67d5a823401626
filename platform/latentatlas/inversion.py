"""Gradient inversion of a generator: per image, the code whose decoding is closest to it
(Lipton & Tripathi 2017; optimisation in W for a style generator). Pure torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def per_image(loss: torch.Tensor) -> torch.Tensor:
    return loss.flatten(1).mean(dim=1)


INVERSION_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": lambda x_hat, x: per_image((x_hat - x).pow(2)),
    "l1": lambda x_hat, x: per_image((x_hat - x).abs()),
    "bce": lambda x_hat, x: per_image(F.binary_cross_entropy(
        x_hat.clamp(1e-6, 1 - 1e-6), x, reduction="none")),
}


@dataclass(frozen=True)
class Refinement:
    """Gradient inversion after the recoder's guess: 0 steps keeps the guess."""

    steps: int = 0
    lr: float = 0.05
    loss: str = "mse"

    def __post_init__(self):
        from latentatlas.errors import UserError

        if self.steps < 0 or self.lr <= 0:
            raise UserError(f"--refine {self.steps} --refine-lr {self.lr}: steps must be >= 0 "
                            "and the learning rate > 0")
        if self.loss not in INVERSION_LOSSES:
            raise UserError(f"--refine-loss {self.loss!r}: one of "
                            f"{', '.join(INVERSION_LOSSES)}")


NO_REFINEMENT = Refinement()


def invert_by_gradient(decode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       start: torch.Tensor, steps: int, lr: float = 0.05,
                       loss: str = "mse") -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on the codes for `steps` steps from `start`, minimising the per-image `loss`
    between decode(code) and x. The objective is a sum over images and Adam's update is per
    coordinate, so each image's code is what it would be alone: results do not depend on
    how images are batched. Returns (codes, per-image pixel MSE of their decodings)."""
    distance = INVERSION_LOSSES[loss]
    code = start.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([code], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            distance(decode(code), x).sum().backward()
            optimizer.step()
    with torch.no_grad():
        return code.detach(), per_image((decode(code) - x).pow(2))


def starting_codes(model, n: int, device) -> torch.Tensor:
    """Where inversion starts without a recoder: the mean code (the tracked mean of w for a
    style generator; 0, the mean of z, otherwise)."""
    mean = getattr(getattr(model, "generator", None), "w_avg", None)
    if mean is None:
        mean = torch.zeros(model.latent_dim, device=device)
    return mean.to(device).expand(n, -1).clone()
