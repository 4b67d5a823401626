"""ELBO pieces and the KL policies (registry keyed by `kl.policy`): pure torch functions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per sample, summed over latent variables."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=1)


def mu_penalty(mu: torch.Tensor) -> torch.Tensor:
    """The KL's quadratic part alone: what remains when the posterior is not sampled."""
    return 0.5 * mu.pow(2).sum(dim=1)


def per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(dim=1)


def bernoulli_nll(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per sample, summed over pixels (the Keras VAE of the posts)."""
    return per_sample(F.binary_cross_entropy(x_hat, x, reduction="none"))


def gaussian_nll(x: torch.Tensor, x_hat: torch.Tensor, gamma: float) -> torch.Tensor:
    """-log N(x; x_hat, gamma^2 I) per sample: sum((x-x_hat)^2)/(2 gamma^2) + D log gamma + ..."""
    d = x[0].numel()
    return per_sample((x - x_hat).pow(2)) / (2 * gamma**2) + d * (math.log(gamma) + 0.5 * LOG_2PI)


def update_running_mse(mse: float, batch_mse: float) -> float:
    """Asperti & Trentin: the estimate only moves down, smoothed over ~100 minibatches."""
    return min(mse, 0.99 * mse + 0.01 * batch_mse)


class KLPolicy:
    """How reconstruction and KL are weighed; `observe` sees each minibatch's pixel MSE."""

    name = ""

    def __init__(self, beta: float = 1.0):
        self.beta = beta

    def reconstruction(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return bernoulli_nll(x, x_hat)

    def loss(self, x: torch.Tensor, x_hat: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        return (self.reconstruction(x, x_hat) + self.kl_weight * kl).mean()

    @property
    def kl_weight(self) -> float:
        return self.beta

    @property
    def gamma(self) -> float | None:
        return None

    def observe(self, batch_mse: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ElboPolicy(KLPolicy):
    """Plain ELBO: Bernoulli likelihood, KL weight 1."""

    name = "elbo"

    @property
    def kl_weight(self) -> float:
        return 1.0


class BetaPolicy(KLPolicy):
    """Bernoulli likelihood, fixed KL weight `beta`."""

    name = "beta"


class BalancedPolicy(KLPolicy):
    """Gaussian likelihood with gamma = sqrt(running MSE), fed in rather than learned."""

    name = "balanced"

    def __init__(self, beta: float = 1.0, mse: float = 1.0):
        super().__init__(beta)
        self.mse = mse

    @property
    def gamma(self) -> float:
        return math.sqrt(self.mse)

    def reconstruction(self, x, x_hat):
        return gaussian_nll(x, x_hat, self.gamma)

    def observe(self, batch_mse: float) -> None:
        self.mse = update_running_mse(self.mse, batch_mse)

    def state_dict(self) -> dict:
        return {"mse": self.mse}

    def load_state_dict(self, state: dict) -> None:
        self.mse = float(state["mse"])


class SplitPolicy(BalancedPolicy):
    """Split-VAE's loss: 0.5 * sum((x - x_hat)^2) / gamma + beta * KL, where gamma is the
    running MSE itself (not its square root, and no log-gamma term)."""

    name = "split"

    @property
    def gamma(self) -> float:
        return self.mse

    def reconstruction(self, x, x_hat):
        return 0.5 * per_sample((x - x_hat).pow(2)) / self.mse


KL_POLICIES: dict[str, type[KLPolicy]] = {
    p.name: p for p in (ElboPolicy, BetaPolicy, BalancedPolicy, SplitPolicy)
}


def authors_kl_weight(image_side: int, latent_dim: int) -> float:
    """BalancingVAE's KL weight (`computed_gamma.py`: `loss1 = k*kl_loss1 + gen_loss1`):
    k = (2 * image side / latent_dim)^2."""
    return (2 * image_side / latent_dim) ** 2


def make_policy(name: str, beta: float | str = 1.0, input_shape=None,
                latent_dim: int | None = None) -> KLPolicy:
    """The policy `name` with KL weight `beta`; beta `authors` is BalancingVAE's k for an
    image of `input_shape` (C, H, W) and `latent_dim` variables."""
    if beta == "authors":
        beta = authors_kl_weight(input_shape[-1], latent_dim)
    return KL_POLICIES[name](beta=beta)
