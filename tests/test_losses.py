import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from latentatlas.losses import (
    KL_POLICIES,
    bernoulli_nll,
    gaussian_kl,
    gaussian_nll,
    make_policy,
    mu_penalty,
    update_running_mse,
)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), ref)


def test_kl_by_hand_and_the_mu_penalty():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(4.0)]])
    # 0.5*(1 + 1 - 0 - 1) + 0.5*(0 + 4 - ln 4 - 1)
    assert gaussian_kl(mu, logvar).item() == pytest.approx(0.5 + 0.5 * (3 - math.log(4)))
    assert mu_penalty(torch.tensor([[1.0, 2.0]])).item() == pytest.approx(2.5)


def test_bernoulli_nll_by_hand():
    x, x_hat = torch.tensor([[1.0, 0.0, 0.5]]), torch.tensor([[0.8, 0.1, 0.5]])
    want = -(math.log(0.8) + math.log(0.9) + math.log(0.5))
    assert bernoulli_nll(x, x_hat).item() == pytest.approx(want, rel=1e-6)


def test_gaussian_nll_matches_normal_log_prob():
    g = torch.Generator().manual_seed(1)
    x, x_hat = torch.rand(4, 1, 3, 3, generator=g), torch.rand(4, 1, 3, 3, generator=g)
    gamma = 0.3
    ref = -Normal(x_hat, gamma).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_nll(x, x_hat, gamma), ref)


def test_running_mse_rule_of_asperti_and_trentin():
    mse = 1.0
    for batch_mse, want in [(0.5, 0.995), (2.0, 0.995), (0.0, 0.98505)]:
        mse = update_running_mse(mse, batch_mse)
        assert mse == pytest.approx(want)


def test_policies_hand_computed():
    x, x_hat = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])
    kl = torch.tensor([2.0])
    bce = 2 * math.log(2)
    assert make_policy("elbo", beta=5.0).loss(x, x_hat, kl).item() == pytest.approx(bce + 2.0)
    assert make_policy("beta", beta=5.0).loss(x, x_hat, kl).item() == pytest.approx(bce + 10.0)
    balanced = make_policy("balanced")
    balanced.mse = 0.25  # gamma = 0.5: sum(0.25)/(2*0.25) + 2 log 0.5 + log 2pi
    want = 0.5 / 0.5 + 2 * math.log(0.5) + math.log(2 * math.pi) + 2.0
    assert balanced.loss(x, x_hat, kl).item() == pytest.approx(want, rel=1e-6)
    assert balanced.gamma == pytest.approx(0.5)


def test_balanced_state_round_trips_and_others_have_no_gamma():
    p = make_policy("balanced")
    p.observe(0.0)
    q = make_policy("balanced")
    q.load_state_dict(p.state_dict())
    assert q.mse == p.mse == pytest.approx(0.99)
    assert make_policy("elbo").gamma is None and make_policy("beta").gamma is None


def reference_loss(name: str, x, x_hat, kl, beta: float, mse: float) -> torch.Tensor:
    """Each policy's loss from torch.distributions (or, for Split-VAE's, its paper's sum),
    written apart from losses.py: a registered policy without a reference fails below."""
    from torch.distributions import Bernoulli

    bernoulli = -Bernoulli(probs=x_hat).log_prob(x).flatten(1).sum(1)
    gaussian = -Normal(x_hat, math.sqrt(mse)).log_prob(x).flatten(1).sum(1)
    split = 0.5 * (x - x_hat).pow(2).flatten(1).sum(1) / mse
    return {"elbo": bernoulli + kl, "beta": bernoulli + beta * kl,
            "balanced": gaussian + beta * kl, "split": split + beta * kl}[name].mean()


@pytest.mark.parametrize("name", sorted(KL_POLICIES))
def test_every_registered_policy_matches_its_reference_after_observing_batches(name):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 1, 4, 4, generator=g).round()
    x_hat = torch.rand(6, 1, 4, 4, generator=g).clamp(0.05, 0.95)
    kl = torch.rand(6, generator=g) * 3
    policy = make_policy(name, beta=2.5)
    for batch_mse in (0.3, 0.2, 0.4):  # the running estimate the gamma policies follow
        policy.observe(batch_mse)
    # from 1.0 by hand: 0.99 + 0.003 = 0.993; 0.98307 + 0.002 = 0.98507;
    # 0.9752193 + 0.004 = 0.9792193
    mse = 0.9792193
    torch.testing.assert_close(policy.loss(x, x_hat, kl),
                               reference_loss(name, x, x_hat, kl, 2.5, mse))
    restored = make_policy(name, beta=2.5)
    restored.load_state_dict(policy.state_dict())
    torch.testing.assert_close(restored.loss(x, x_hat, kl), policy.loss(x, x_hat, kl))


def test_authors_kl_weight_is_balancingvaes_k():
    """computed_gamma.py: k = (2 * img_dim / latent_dim)^2, 4 for CelebA 64 with latent 64 and
    1 for CIFAR-10 (32) with latent 64; the policy's loss weighs the KL by it."""
    celeba = make_policy("balanced", "authors", (3, 64, 64), 64)
    assert celeba.kl_weight == 4.0
    assert make_policy("balanced", "authors", (3, 32, 32), 64).kl_weight == 1.0
    x = torch.zeros(2, 3, 64, 64)
    kl = torch.tensor([1.0, 3.0])
    plain = make_policy("balanced")
    assert (celeba.loss(x, x, kl) - plain.loss(x, x, kl)).item() == pytest.approx(3 * 2.0)


def test_authors_kl_weight_only_where_it_means_something():
    from pydantic import ValidationError

    from latentatlas.config import ExperimentConfig

    cfg = ExperimentConfig.model_validate({"kl": {"policy": "balanced", "beta": "authors"}})
    assert cfg.kl.beta == "authors"
    for bad, why in [({"policy": "elbo", "beta": "authors"}, "no KL weight"),
                     ({"policy": "beta", "beta": 0}, "must be positive"),
                     ({"policy": "beta", "beta": "k"}, "authors")]:
        with pytest.raises(ValidationError, match=why):
            ExperimentConfig.model_validate({"kl": bad})
