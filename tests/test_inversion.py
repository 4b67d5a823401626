"""Gradient inversion: it recovers a generator's own codes (Lipton & Tripathi), it does not
depend on how images are batched, and bad settings are one clear line."""

import pytest
import torch

from latentatlas.config import validate
from latentatlas.errors import UserError
from latentatlas.inversion import Refinement, invert_by_gradient, starting_codes
from latentatlas.models import build_model


def generator(name="dcgan", **model):
    torch.manual_seed(0)
    cfg = validate({"model": {"name": name, "latent_dim": 8, **model}}, "test").model
    return build_model(cfg, (1, 28, 28)).eval().requires_grad_(False)


def test_gradient_inversion_recovers_a_generators_own_codes():
    gan = generator(channels=[32, 16])
    z = torch.randn(6, 8)
    x = gan.decode(z)
    start = z + 0.5 * torch.randn(6, 8)
    _, before = invert_by_gradient(gan.decode, x, start, 0)
    codes, after = invert_by_gradient(gan.decode, x, start, 200, lr=0.05)
    torch.testing.assert_close(before, (gan.decode(start) - x).pow(2).flatten(1).mean(1))
    assert after.max() < 1e-4 * before.min()
    assert (codes - z).pow(2).mean() < 1e-3 * (start - z).pow(2).mean()


def test_each_image_is_inverted_as_if_alone():
    # (with a smooth loss: under l1, Adam amplifies float noise of other batch shapes)
    gan = generator("style_gan", noise_dim=8, channels=[16, 8, 8])
    x = gan.decode(gan.sample_codes(6, torch.Generator().manual_seed(1)))
    start = starting_codes(gan, 6, "cpu")
    torch.testing.assert_close(start, gan.generator.w_avg.expand(6, -1))
    # Same batch shape, same position, another companion image: the same kernels run on
    # the same numbers for image 0, so its code and error are bitwise the same.
    a = invert_by_gradient(gan.decode, x[[0, 1]], start[:2], 30)
    b = invert_by_gradient(gan.decode, x[[0, 3]], start[:2], 30)
    assert torch.equal(a[0][0], b[0][0]) and torch.equal(a[1][0], b[1][0])
    assert not torch.equal(a[0][1], b[0][1])  # the companions did move differently
    # Other batch shapes pick other kernels (float noise Adam amplifies): what the descents
    # share is each image's error, within 10% of what its 30 steps gained.
    _, before = invert_by_gradient(gan.decode, x, start, 0)
    _, err = invert_by_gradient(gan.decode, x, start, 30)
    apart_err = torch.cat([invert_by_gradient(gan.decode, x[i:i + 2], start[i:i + 2], 30)[1]
                           for i in (0, 2, 4)])
    gained = before - apart_err
    assert (gained > 0).all()
    assert ((err - apart_err).abs() <= 0.1 * gained).all(), (err, apart_err, before)


def test_refinement_settings_are_checked():
    with pytest.raises(UserError, match="--refine-loss 'huber'"):
        Refinement(10, 0.05, "huber")
    with pytest.raises(UserError, match="steps must be >= 0"):
        Refinement(-1)
