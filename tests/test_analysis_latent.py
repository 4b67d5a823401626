"""Pure latent-space functions against numpy references and closed forms."""

import numpy as np
import pytest
import torch

from analysis.information import ablation_errors, information_gain, ranking, traversal
from analysis.latent import latent_stats, summary, zero_variables
from analysis.moments import Moments, merge_all
from analysis.variance import variance_loss


def test_streaming_moments_equal_numpy_on_the_concatenation():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (1001, 5)) * np.array([1, 10, 1e-3, 1e3, 0])
    cuts = [0, 1, 7, 8, 300, 301, 1001]  # uneven, including single rows
    merged = merge_all(Moments.of(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True))
    assert merged.n == 1001
    np.testing.assert_allclose(merged.mean, x.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.var, x.var(axis=0), rtol=1e-10, atol=1e-12)
    assert Moments.of(x[:0]).merge(merged) == merged


def test_active_and_inactive_counts_on_codes_with_known_variances():
    rng = np.random.default_rng(1)
    n = 200_000
    std = np.array([1.0, 0.5, 0.3, 0.15, 0.05, 0.0])  # var 1, .25, .09, .0225, .0025, 0
    mu = rng.standard_normal((n, 6)) * std
    sigma2 = np.array([0.01, 0.5, 0.97, 0.2, 0.99, 1.0])
    stats = latent_stats(Moments.of(mu), np.full((n, 6), sigma2).sum(axis=0))
    np.testing.assert_allclose(stats["var_mu"], std**2, rtol=0.02, atol=1e-4)
    assert stats["active"].tolist() == [True, True, True, True, False, False]  # > 0.01
    # inactive: var < 0.05 (vars 3, 4, 5) or mean sigma^2 > 0.95 (vars 2, 4, 5)
    assert stats["inactive"].tolist() == [False, False, True, True, True, True]
    # the authors' two counts apart (vars 3, 4, 5; vars 2, 4, 5) and their union
    assert summary(stats) == {"latent/active_units": 4, "latent/inactive": 4,
                              "latent/inactive_var_mu": 3, "latent/inactive_sigma2": 3,
                              "latent/stationary_mean": pytest.approx(
                                  float(np.mean(std**2 + sigma2)), rel=0.01),
                              "latent/stationary_min": pytest.approx(
                                  float(np.min(std**2 + sigma2)), rel=0.01),
                              "latent/stationary_max": pytest.approx(
                                  float(np.max(std**2 + sigma2)), rel=0.01),
                              "latent/variables": 6}


def test_zero_variables_leaves_the_input_alone():
    z = np.ones((2, 3))
    out = zero_variables(z, np.array([False, True, False]))
    assert out.tolist() == [[1, 0, 1], [1, 0, 1]] and z.sum() == 6


def test_information_gain_of_a_linear_decoder_has_a_closed_form():
    # decode(z) = z @ W: zeroing z_i changes every item by z_i * W_i, so the gain is
    # mean_n(z_ni^2) * |W_i|^2 / pixels when the data equal the full reconstruction.
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 6, generator=g)
    W[2] = 0  # the decoder ignores variable 2
    z = torch.randn(50, 4, generator=g)
    decode = lambda t: t @ W  # noqa: E731
    x = decode(z)
    sums = ablation_errors(decode, z, x)
    gain = information_gain(sums, len(z))
    want = (z.pow(2).mean(0) * W.pow(2).sum(1) / 6).double().numpy()
    np.testing.assert_allclose(gain, want, rtol=1e-5)
    assert gain[2] == 0.0 and sums[0] == 0.0
    assert ranking(gain)[-1] == 2


def test_batches_of_ablation_errors_add_up():
    W = torch.randn(3, 5)
    z, x = torch.randn(40, 3), torch.randn(40, 5)
    decode = lambda t: torch.sigmoid(t @ W)  # noqa: E731
    whole = ablation_errors(decode, z, x)
    parts = ablation_errors(decode, z[:13], x[:13]) + ablation_errors(decode, z[13:], x[13:])
    np.testing.assert_allclose(parts, whole, rtol=1e-5)


def test_variance_loss_of_the_mean_image_equals_the_data_variance():
    rng = np.random.default_rng(2)
    x = rng.random((500, 12))
    x_hat = np.broadcast_to(x.mean(axis=0), x.shape)  # the blurriest possible decoder
    out = variance_loss(Moments.of(x), Moments.of(x_hat), float(((x - x_hat) ** 2).sum()),
                        Moments.of(x))
    assert out["variance_loss/mse_recon"] == pytest.approx(x.var(axis=0).mean())
    assert out["variance_loss/delta_var_recon"] == pytest.approx(x.var(axis=0).mean())
    assert out["variance_loss/delta_var_gen"] == 0.0


def test_traversal_sweeps_one_variable_per_row():
    base = torch.tensor([0.5, -1.0, 2.0])
    out = traversal(lambda z: z[:, None, None, :], base, [2, 0], [-1.0, 0.0, 1.0])
    assert out.shape == (6, 1, 1, 3)
    assert out[:3, 0, 0, 2].tolist() == [-1.0, 0.0, 1.0] and out[:3, 0, 0, 0].tolist() == [0.5] * 3
    assert out[3:, 0, 0, 0].tolist() == [-1.0, 0.0, 1.0] and out[3:, 0, 0, 2].tolist() == [2.0] * 3


def test_the_zero_out_baseline_takes_as_many_of_the_least_informative_active_variables():
    from analysis.latent import least_informative_active

    gain = np.array([0.5, -0.1, 0.0, 0.2, 9.0, 0.01])
    inactive = np.array([False, True, False, True, False, False])
    # two inactive (1, 3): the two lowest-gain active ones are 2 (0.0) and 5 (0.01)
    assert np.flatnonzero(least_informative_active(gain, inactive)).tolist() == [2, 5]
    assert not least_informative_active(gain, np.zeros(6, bool)).any()  # none inactive
    assert least_informative_active(gain, np.ones(6, bool)).sum() == 0  # no active left
