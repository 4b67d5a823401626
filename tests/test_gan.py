"""Generators, discriminators, recoders: losses against closed forms and torch references,
the style generator's pieces, and real Ray Train runs recorded in a real MLflow store."""

import math

import mlflow
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_idx_dataset, run_cli_module

from latentatlas import tracking
from latentatlas.config import validate
from latentatlas.errors import UserError
from latentatlas.models import build_model
from latentatlas.models.gan import ModulatedConv
from latentatlas.train.gan import discriminator_loss, generator_loss, r1_penalty
from latentatlas.train.loop import load_checkpoint
from latentatlas.train.runner import train


def model_cfg(**model):
    return validate({"model": model}, "test").model


def test_adversarial_losses_are_binary_cross_entropy_on_logits():
    torch.manual_seed(0)
    real, fake = torch.randn(50), torch.randn(70)
    expected = (F.binary_cross_entropy_with_logits(real, torch.ones(50))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros(70)))
    torch.testing.assert_close(discriminator_loss(real, fake), expected)
    torch.testing.assert_close(generator_loss(fake),
                               F.binary_cross_entropy_with_logits(fake, torch.ones(70)))
    # D(x) = 1/2 everywhere: log 4 for D, log 2 for G
    assert discriminator_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(
        math.log(4))


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm():
    torch.manual_seed(0)
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    inputs = torch.randn(10, 3, 2, 2, requires_grad=True)
    logits = d(inputs).squeeze(1)
    penalty = r1_penalty(logits[:6], inputs, 6)  # the first 6 rows are "real"
    torch.testing.assert_close(penalty, d[1].weight.pow(2).sum())
    penalty.backward()  # differentiable in the discriminator's weights: d/dw |w|^2 = 2w
    torch.testing.assert_close(d[1].weight.grad, 2 * d[1].weight.detach())


def test_modulated_conv_equals_a_convolution_with_per_sample_demodulated_weights():
    torch.manual_seed(0)
    conv = ModulatedConv(5, 7, 3, w_dim=4)
    x, w = torch.randn(3, 5, 6, 6), torch.randn(3, 4)
    out = conv(x, w)
    style = conv.affine(w)
    for i in range(3):  # StyleGAN2's definition, one sample at a time
        weight = conv.scale * conv.weight * style[i][None, :, None, None]
        weight = weight / weight.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt()
        ref = F.conv2d(x[i:i + 1], weight, padding=1) + conv.bias[None, :, None, None]
        torch.testing.assert_close(out[i:i + 1], ref, rtol=1e-4, atol=1e-5)
    # Demodulation: unit-variance inputs give unit-variance outputs per channel.
    with torch.no_grad():
        big = conv(torch.randn(64, 5, 32, 32), torch.randn(64, 4)) - conv.bias[:, None, None]
    assert big.var(dim=(0, 2, 3)).numpy() == pytest.approx(np.ones(7), rel=0.1)


def test_generators_shapes_codes_truncation_and_the_tracked_mean():
    torch.manual_seed(0)
    for shape, dc, style in [((1, 28, 28), [128, 64], [64, 32, 16]),
                             ((3, 64, 64), [64, 32, 16, 8], [32, 32, 16, 8, 8])]:
        dcgan = build_model(model_cfg(name="dcgan", latent_dim=8, channels=dc), shape).eval()
        z = dcgan.sample_noise(5)
        assert dcgan.decode(z).shape == (5, *shape) and torch.equal(dcgan.codes(z), z)
        gan = build_model(model_cfg(name="style_gan", latent_dim=6, noise_dim=5,
                                    channels=style), shape).eval()
        w = gan.sample_codes(4)
        x = gan.decode(w)
        assert w.shape == (4, 6) and x.shape == (4, *shape)
        assert 0 <= x.min() and x.max() <= 1
        torch.testing.assert_close(gan.decode(w), x)  # decode is deterministic (no noise)
    g = gan.generator
    g.w_avg.copy_(torch.arange(6.0))
    torch.testing.assert_close(g.truncate(w, 0.0), g.w_avg.expand(4, 6))
    torch.testing.assert_close(g.truncate(w, 1.0), w)
    torch.testing.assert_close(g.truncate(w, 0.5), (w + g.w_avg) / 2)
    before, z = g.w_avg.clone(), torch.randn(8, 5)
    g.train()(z)  # training forward: w_avg moves by (1 - beta) towards the batch mean
    torch.testing.assert_close(g.w_avg, before + (1 - g.w_avg_beta) * (
        g.codes(z).mean(0) - before))
    with pytest.raises(ValueError, match="not divisible"):
        build_model(model_cfg(name="dcgan", channels=[8, 8, 8]), (1, 28, 28))


def test_recoder_config_needs_its_generator():
    with pytest.raises(UserError, match="invert.generator"):
        validate({"model": {"name": "recoder"}}, "cfg.yaml")


def gan_config(folder, name="tiny-gan", **train):
    return validate({"name": name, "seed": 4,
                     "data": {"name": "mnist", "path": str(folder), "limit": 256},
                     "model": {"name": "dcgan", "latent_dim": 8, "channels": [32, 16]},
                     "gan": {"r1_gamma": 0.5},
                     "train": {"epochs": 2, "batch_size": 32, "lr": 0.0005, **train}}, "test")


def test_gan_and_recoder_train_resume_exactly_and_log(ray_session, mlflow_store, tmp_path):
    """A DCGAN trained 2 epochs straight, and 1 + 1 with --resume: same weights and optimizer
    state. Its metrics, per-epoch sample grids and model are in MLflow; a recoder trained on
    it recovers its codes far better than the best constant guess (0, of error E[z^2] = 1)."""
    data = make_idx_dataset(tmp_path / "idx", n_train=256, n_test=64)
    straight = train(gan_config(data, "straight"))
    client = mlflow.MlflowClient()
    for key in ("gan/d_loss", "gan/g_loss", "gan/d_real", "gan/d_fake", "gan/r1", "val/d_real"):
        history = client.get_metric_history(straight.run_id, key)
        assert [m.step for m in history] == [1, 2], key
        assert all(math.isfinite(m.value) for m in history), key
    artifacts = {a.path for a in client.list_artifacts(straight.run_id, "samples")}
    assert artifacts == {"samples/epoch_001.png", "samples/epoch_002.png"}
    assert "samples.png" in {a.path for a in client.list_artifacts(straight.run_id)}
    gan, spec = tracking.load_model(straight.model_uri)
    assert spec["model"]["name"] == "dcgan" and gan.decode(gan.sample_codes(3)).shape == (
        3, 1, 28, 28)
    with pytest.raises(UserError, match="dcgan has no encoder"):
        tracking.load_vae(straight.model_uri)

    first = train(gan_config(data, "resumed", epochs=1))
    resumed = train(gan_config(data, "resumed"), resume_run_id=first.run_id)
    a, b = load_checkpoint(straight.checkpoint_path), load_checkpoint(resumed.checkpoint_path)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6)
    assert b["opt_d"]["state"][0]["step"] == a["opt_d"]["state"][0]["step"] == 16

    recoder_cfg = validate({"name": "tiny-recoder", "seed": 1,
                            "model": {"name": "recoder", "channels": [16, 32], "hidden": 64},
                            "invert": {"generator": straight.model_uri, "steps_per_epoch": 60,
                                       "holdout": 256},
                            "train": {"epochs": 2, "batch_size": 64, "lr": 0.002}}, "test")
    rec = train(recoder_cfg)
    latent = [m.value for m in client.get_metric_history(rec.run_id, "inversion/latent_mse")]
    pixel = client.get_metric_history(rec.run_id, "inversion/pixel_mse")
    assert len(latent) == len(pixel) == 2 and latent[1] < latent[0] < 0.8
    recoder, rspec = tracking.load_model(rec.model_uri)
    assert rspec["generator"] == straight.model_uri and rspec["model"]["latent_dim"] == 8
    assert "regenerations.png" in {a.path for a in client.list_artifacts(rec.run_id)}
    # the logged recoder is the one that was scored: recompute its held-out error here
    codes = gan.sample_codes(512, torch.Generator().manual_seed(99))
    with torch.no_grad():
        err = (recoder(gan.decode(codes)) - codes).pow(2).mean().item()
    assert err == pytest.approx(latent[-1], rel=0.25)

    check_gan_encodings_and_type3_relocation(data, straight.model_uri, rec.model_uri, tmp_path)


def check_gan_encodings_and_type3_relocation(data, gan_uri, recoder_uri, tmp_path):
    """`encode` inverts real images (recoder + gradient refinement) in this process and on
    Ray Data with the same codes; `stats` reads the GAN encoding; `relocate` maps a VAE's
    codes onto the generator's and back (type 3), and the target's own error of the GAN is
    its generator's regeneration error of the held-out images."""
    from analysis.pairs import split_mask
    from latentatlas.encode import open_encoding
    from latentatlas.encode.pipeline import encode
    from latentatlas.inversion import Refinement

    uri = tracking.resolve_tracking_uri()
    gan_enc = tmp_path / "gan.enc"
    done = run_cli_module(["jobs.encode", "--model", gan_uri, "--recoder", recoder_uri,
                           "--refine", "20", "--data", "mnist:test", "--data-path", str(data),
                           "--out", str(gan_enc), "--tracking-uri", uri], tmp_path)
    assert done.returncode == 0, done.stderr
    enc = open_encoding(gan_enc)
    assert (enc.meta.family, enc.meta.encoder_uri, enc.meta.refine_steps) == (
        "gan", recoder_uri, 20)
    rows = enc.arrays()
    assert "logvar" not in rows and rows["mu"].shape == (64, 8)
    on_ray = encode(gan_uri, "mnist", "test", tmp_path / "gan-ray.enc", data_path=str(data),
                    recoder_uri=recoder_uri, refine=Refinement(20), actors=1, blocks=2)
    ray_rows = on_ray.arrays()
    np.testing.assert_allclose(ray_rows["mu"], rows["mu"], rtol=1e-4, atol=1e-5)
    # The refined codes regenerate the images better than the recoder's guesses alone.
    guessed = encode(gan_uri, "mnist", "test", tmp_path / "gan-guess.enc",
                     data_path=str(data), recoder_uri=recoder_uri).arrays()
    assert rows["inversion_mse"].mean() < guessed["inversion_mse"].mean()
    with pytest.raises(UserError, match="has no encoder; give --recoder"):
        encode(gan_uri, "mnist", "test", tmp_path / "x.enc", data_path=str(data))

    vae = train(validate({"name": "vae", "seed": 1,
                          "data": {"name": "mnist", "path": str(data)},
                          "model": {"name": "dense_vae", "hidden": [32], "latent_dim": 4},
                          "train": {"epochs": 2, "batch_size": 32}}, "test"))
    vae_enc = tmp_path / "vae.enc"
    done = run_cli_module(["jobs.encode", "--model", vae.model_uri, "--data", "mnist:test",
                           "--data-path", str(data), "--out", str(vae_enc),
                           "--tracking-uri", uri], tmp_path)
    assert done.returncode == 0, done.stderr
    stats = run_cli_module(["jobs.stats", str(gan_enc), "--tracking-uri", uri], tmp_path)
    assert stats.returncode == 0, stats.stderr
    held = split_mask(rows["index"], "eval")
    client = mlflow.MlflowClient()
    for source, target in ((vae_enc, gan_enc), (gan_enc, vae_enc)):
        done = run_cli_module(["jobs.relocate", "--source", str(source), "--target",
                               str(target), "--tracking-uri", uri], tmp_path)
        assert done.returncode == 0, done.stderr
        run = client.search_runs([client.get_experiment_by_name("test").experiment_id],
                                 "tags.`latentatlas.kind` = 'relocate'",
                                 order_by=["attributes.start_time DESC"])[0]
        metrics = run.data.metrics
        assert all(math.isfinite(metrics[f"relocation/{k}"]) for k in "RLM")
        own = rows["inversion_mse"][held].mean()
        gan_side = "M_target_own" if target == gan_enc else "R"
        assert metrics[f"relocation/{gan_side}"] == pytest.approx(own, rel=1e-4)


def test_two_worker_gan_with_r1_runs_data_parallel(ray_session, mlflow_store, tmp_path):
    """Generator and discriminator under DDP, R1 through autograd.grad on the real inputs."""
    data = make_idx_dataset(tmp_path / "idx", n_train=256, n_test=64)
    out = train(gan_config(data, "ddp", epochs=1, num_workers=2, cpus_per_worker=0.5))
    assert math.isfinite(out.metrics["gan/r1"]) and out.metrics["gan/r1"] > 0
    # 256 images, 2 ranks of 128, batch 32: 4 steps each
    assert load_checkpoint(out.checkpoint_path)["opt_g"]["state"][0]["step"] == 4
