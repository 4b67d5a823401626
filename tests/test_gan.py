"""Generators, discriminators, recoders: losses against closed forms and torch references,
the style generator's pieces, and real Ray Train runs recorded in a real MLflow store."""

import math

import mlflow
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import images_over_steps, make_idx_dataset, run_cli_module

from jobs import encode as encode_verb
from jobs import invert_train
from latentatlas import environment, model_store, tracking
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
    # Training forwards track the mean of w: three on the same batch, whose mean code is m,
    # shrink w_avg's distance to m by beta each, so it is m + beta^3 (before - m).
    before, z = g.w_avg.clone(), torch.randn(8, 5)
    m = g.codes(z).mean(0)
    for _ in range(3):
        g.train()(z)
    beta = 0.995  # the default
    torch.testing.assert_close(g.w_avg, m + beta ** 3 * (before - m))
    assert (g.w_avg - before).abs().max() > 100 * 1e-5  # it did move, beyond the tolerance
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


@pytest.mark.slow
def test_gan_and_recoder_train_resume_exactly_and_log(ray_session, mlflow_store, tmp_path,
                                                      capsys):
    """A DCGAN trained 2 epochs straight, and 1 + 1 with --resume: same weights and optimizer
    state. Its metrics, per-epoch sample grids and model are in MLflow; a recoder trained on
    it recovers its codes far better than the best constant guess (0, of error E[z^2] = 1)."""
    from concurrent.futures import ThreadPoolExecutor

    data = make_idx_dataset(tmp_path / "idx", n_train=256, n_test=64)
    with ThreadPoolExecutor(1) as pool:  # the straight run and the first part side by side
        straight_future = pool.submit(train, gan_config(data, "straight", cpus_per_worker=1))
        first = train(gan_config(data, "resumed", epochs=1, cpus_per_worker=1))
        straight = straight_future.result()
    client = mlflow.MlflowClient()
    for key in ("gan/d_loss", "gan/g_loss", "gan/d_real", "gan/d_fake", "gan/r1", "val/d_real"):
        history = client.get_metric_history(straight.run_id, key)
        assert [m.step for m in history] == [1, 2], key
        assert all(math.isfinite(m.value) for m in history), key
    # the fixed-noise samples over epochs, in the run's image panel
    assert images_over_steps(client, straight.run_id) == {"samples": [1, 2]}
    assert "samples.png" in {a.path for a in client.list_artifacts(straight.run_id)}
    gan, spec = model_store.load_model(straight.model_uri)
    assert spec["model"]["name"] == "dcgan" and gan.decode(gan.sample_codes(3)).shape == (
        3, 1, 28, 28)
    with pytest.raises(UserError, match="dcgan has no encoder"):
        model_store.load_vae(straight.model_uri)

    resumed = train(gan_config(data, "resumed", cpus_per_worker=1), resume_run_id=first.run_id)
    a, b = load_checkpoint(straight.checkpoint_path), load_checkpoint(resumed.checkpoint_path)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6)
    assert b["opt_d"]["state"][0]["step"] == a["opt_d"]["state"][0]["step"] == 16

    # The recoder through its own verb, as a user trains one (in this process: the verbs'
    # command lines run as subprocesses in test_cli and test_generative_range).
    capsys.readouterr()
    assert invert_train.main(["--generator", straight.model_uri,
                              "--tracking-uri", environment.resolve_tracking_uri(),
                              "--experiment", "test", "--set", "seed=1",
                              "--set", "model.channels=[16, 32]", "--set", "model.hidden=64",
                              "--set", "invert.steps_per_epoch=60",
                              "--set", "invert.holdout=256", "--set", "train.epochs=2",
                              "--set", "train.batch_size=64", "--set", "train.lr=0.002"]) == 0
    rec_id = capsys.readouterr().out.split("MLflow run id: ")[1].split()[0]
    rec_uri = f"runs:/{rec_id}/model"
    latent = [m.value for m in client.get_metric_history(rec_id, "inversion/latent_mse")]
    pixel = client.get_metric_history(rec_id, "inversion/pixel_mse")
    assert len(latent) == len(pixel) == 2 and latent[1] < latent[0] < 0.8
    recoder, rspec = model_store.load_model(rec_uri)
    assert rspec["generator"] == straight.model_uri and rspec["model"]["latent_dim"] == 8
    assert "regenerations.png" in {a.path for a in client.list_artifacts(rec_id)}
    # the logged recoder is the one that was scored: recompute its held-out error here
    codes = gan.sample_codes(512, torch.Generator().manual_seed(99))
    with torch.no_grad():
        err = (recoder(gan.decode(codes)) - codes).pow(2).mean().item()
    assert err == pytest.approx(latent[-1], rel=0.25)

    check_gan_encodings_and_type3_relocation(data, straight.model_uri, rec_uri, tmp_path)


def check_gan_encodings_and_type3_relocation(data, gan_uri, recoder_uri, tmp_path):
    """`encode` inverts real images (recoder + gradient refinement) in this process and on
    Ray Data with the same codes; `stats` reads the GAN encoding; `relocate` maps a VAE's
    codes onto the generator's and back (type 3), and the target's own error of the GAN is
    its generator's regeneration error of the held-out images."""
    from analysis.pairs import split_mask
    from jobs import steps
    from latentatlas.data import load_split
    from latentatlas.encode import open_encoding
    from latentatlas.encode.pipeline import encode
    from latentatlas.inversion import Refinement, invert_by_gradient

    uri = environment.resolve_tracking_uri()
    gan_enc = tmp_path / "gan.enc"
    assert encode_verb.main(["--model", gan_uri, "--recoder", recoder_uri, "--refine", "20",
                             "--data", "mnist:test", "--data-path", str(data),
                             "--out", str(gan_enc), "--tracking-uri", uri]) == 0
    enc = open_encoding(gan_enc)
    assert (enc.meta.family, enc.meta.encoder_uri, enc.meta.refine_steps) == (
        "gan", recoder_uri, 20)
    rows = enc.arrays()
    assert "logvar" not in rows and rows["mu"].shape == (64, 8)
    on_ray = encode(gan_uri, "mnist", "test", tmp_path / "gan-ray.enc", data_path=str(data),
                    recoder_uri=recoder_uri, refine=Refinement(20), actors=1, blocks=2)
    ray_rows = on_ray.arrays()
    assert ray_rows["index"].tolist() == rows["index"].tolist()
    np.testing.assert_allclose(ray_rows["guess_mse"], rows["guess_mse"], rtol=1e-4)
    # 20 Adam steps amplify last-bit differences between batch shapes and CPUs' kernels:
    # near a flat direction a code can move (0.016 seen on one AVX-512 machine) without its
    # error moving. What both paths must share is the descent itself: each image's error
    # lands within 10% of what its 20 steps gained, and most codes agree closely.
    gained = rows["guess_mse"] - rows["inversion_mse"]
    assert (gained > 0).all()
    assert (np.abs(ray_rows["inversion_mse"] - rows["inversion_mse"]) <= 0.1 * gained).all()
    assert np.median(np.abs(ray_rows["mu"] - rows["mu"])) < 1e-4
    # The refined codes regenerate the images better than the recoder's guesses alone, and
    # the generator's own samples far better than real images (they are in its range).
    gan, _ = model_store.load_model(gan_uri)
    recoder, _ = model_store.load_model(recoder_uri)
    x = torch.from_numpy(load_split("mnist", "test", str(data)).images / 255.0).float()
    with torch.no_grad():
        guessed = (gan.decode(recoder(x)) - x).pow(2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(rows["guess_mse"], guessed, rtol=1e-4)
    assert rows["inversion_mse"].mean() < rows["guess_mse"].mean()
    own = gan.decode(gan.sample_codes(64, torch.Generator().manual_seed(5))).detach()
    with torch.no_grad():
        start = recoder(own)
    _, own_error = invert_by_gradient(gan.decode, own, start, 20)
    assert own_error.mean() < 0.5 * rows["inversion_mse"].mean()
    with pytest.raises(UserError, match="has no encoder; give --recoder"):
        encode(gan_uri, "mnist", "test", tmp_path / "x.enc", data_path=str(data))

    vae = train(validate({"name": "vae", "seed": 1,
                          "data": {"name": "mnist", "path": str(data)},
                          "model": {"name": "dense_vae", "hidden": [32], "latent_dim": 4},
                          "train": {"epochs": 2, "batch_size": 32}}, "test"))
    vae_enc = encode(vae.model_uri, "mnist", "test", tmp_path / "vae.enc",
                     data_path=str(data)).path
    # stats and relocate as their verbs run them (the steps; the CLI around them is tested
    # elsewhere): on a GAN encoding, sigma^2 is 0 and the prior is the generator's.
    recorder = tracking.Recorder(uri, "test")
    _, gan_stats = steps.stats(recorder, str(gan_enc))
    assert gan_stats.stats["mean_sigma2"].max() == 0
    held = split_mask(rows["index"], "eval")
    client = mlflow.MlflowClient()
    for source, target in ((vae_enc, gan_enc), (gan_enc, vae_enc)):
        run_id, _ = steps.relocate(recorder, str(source), str(target), fit="all",
                                   estimators=["ols"])
        run = client.get_run(run_id)
        metrics = run.data.metrics
        assert all(math.isfinite(metrics[f"relocation/{k}"]) for k in "RLM")
        own = rows["inversion_mse"][held].mean()
        gan_side = "M_target_own" if target == gan_enc else "R"
        assert metrics[f"relocation/{gan_side}"] == pytest.approx(own, rel=1e-4)
        # M by hand: the fitted map (its artifact) applied to the held-out source codes,
        # decoded by the target's decoder (the generator for VAE -> GAN).
        fitted = np.load(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="maps/map_ols_full.npz"))
        source_rows, target_rows = (open_encoding(source).arrays(),
                                    open_encoding(target).arrays())
        decoder = gan if target == gan_enc else model_store.load_model(
            open_encoding(target).meta.model_uri)[0]
        moved = source_rows["mu"][held] @ fitted["A"] + fitted["b"]
        images = target_rows["index"][held]
        x = torch.from_numpy(load_split("mnist", "test", str(data)).images[images] / 255.0)
        with torch.no_grad():
            by_hand = (decoder.decode(torch.from_numpy(moved).float()).double() - x).pow(2)
        assert metrics["relocation/M"] == pytest.approx(by_hand.mean().item(), rel=1e-4)


@pytest.mark.slow
def test_two_worker_style_gan_with_r1_runs_data_parallel(ray_session, mlflow_store,
                                                          tmp_path):
    """The style generator and its discriminator under DDP (two workers), R1 through
    autograd.grad on the real inputs, the tracked mean of w in the checkpoint."""
    data = make_idx_dataset(tmp_path / "idx", n_train=256, n_test=64)
    cfg = validate({"name": "ddp", "seed": 2,
                    "data": {"name": "mnist", "path": str(data), "limit": 256},
                    "model": {"name": "style_gan", "latent_dim": 16, "noise_dim": 8,
                              "mapping_layers": 2, "channels": [16, 8, 8]},
                    "gan": {"r1_gamma": 1.0, "beta1": 0.0, "beta2": 0.99,
                            "truncation_psi": 0.7},
                    "train": {"epochs": 1, "batch_size": 32, "lr": 0.002, "num_workers": 2,
                              "cpus_per_worker": 0.5}}, "test")
    out = train(cfg)
    assert math.isfinite(out.metrics["gan/r1"]) and out.metrics["gan/r1"] > 0
    state = load_checkpoint(out.checkpoint_path)
    # 256 images, 2 ranks of 128, batch 32: 4 steps each
    assert state["opt_g"]["state"][0]["step"] == 4
    assert state["model"]["generator.w_avg"].abs().sum() > 0  # tracked while training
    gan, _ = model_store.load_model(out.model_uri)
    assert gan.decode(gan.sample_codes(2)).shape == (2, 1, 28, 28)
    # A recoder of a few hundred steps recovers w better than the best constant guess (the
    # mean w, whose error is the mean variance of w).
    rec = train(validate({"name": "style-recoder", "seed": 3,
                          "model": {"name": "recoder", "channels": [16, 32], "hidden": 64},
                          "invert": {"generator": out.model_uri, "steps_per_epoch": 300,
                                     "holdout": 512},
                          "train": {"epochs": 1, "batch_size": 64, "lr": 0.002}}, "test"))
    with torch.no_grad():
        w = gan.sample_codes(4096, torch.Generator().manual_seed(0))
    mean_w_error = w.var(dim=0).mean().item()
    assert rec.metrics["inversion/latent_mse"] < 0.5 * mean_w_error


def log_untrained(name: str, model_block: dict, extra: dict | None = None,
                  state_from: dict | None = None) -> str:
    """A model logged the platform's way (spec + state dict); `state_from` builds the weights
    from another config (a checkpoint that does not fit its spec)."""
    cfg = validate({"model": model_block, "invert": {"generator": "x"}}, "test").model
    weights = validate({"model": state_from or model_block, "invert": {"generator": "x"}},
                       "test").model
    model = build_model(weights, (1, 28, 28))
    with mlflow.start_run(run_name=name):
        return model_store.log_model(model, cfg.model_dump(), (1, 28, 28), extra).model_uri


def test_bad_generator_inputs_are_one_clear_line(ray_session, mlflow_store, tmp_path):
    from latentatlas.encode.pipeline import encode

    data = make_idx_dataset(tmp_path / "idx", n_train=128, n_test=32)
    vae = log_untrained("vae", {"name": "dense_vae", "hidden": [8], "latent_dim": 4})
    gan = log_untrained("gan", {"name": "dcgan", "latent_dim": 8, "channels": [16, 8]})
    narrow = log_untrained("rec", {"name": "recoder", "channels": [8], "hidden": 8,
                                   "latent_dim": 5}, {"generator": gan})
    recoder_cfg = validate({"name": "r", "model": {"name": "recoder"},
                            "invert": {"generator": vae}}, "test")
    with pytest.raises(UserError, match="is a dense_vae, not a generator"):
        train(recoder_cfg)
    out = tmp_path / "enc"
    done = run_cli_module(["jobs.encode", "--model", gan, "--recoder", narrow, "--data",
                           "mnist:test", "--data-path", str(data), "--out", str(out),
                           "--tracking-uri", environment.resolve_tracking_uri()], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: --recoder {narrow}: maps (1, 28, 28) images to 5 "
                                   "codes, but the generator makes (1, 28, 28) images from 8 "
                                   "codes")
    assert not out.exists() and not list(tmp_path.glob(".enc.tmp-*"))
    with pytest.raises(UserError, match="a dense_vae, not a recoder"):
        encode(gan, "mnist", "test", out, data_path=str(data), recoder_uri=vae)
    with pytest.raises(UserError, match="has its own encoder"):
        encode(vae, "mnist", "test", out, data_path=str(data), recoder_uri=narrow)
    with pytest.raises(UserError, match=r"model: dcgan: image side 28 is not divisible by 2\^3"):
        train(gan_config(data, "too-deep").model_copy(update={"model": validate(
            {"model": {"name": "dcgan", "channels": [8, 8, 8]}}, "test").model}))
    assert not mlflow.search_runs(filter_string="attributes.run_name = 'too-deep'",
                                  output_format="list")
    missing = log_untrained("style", {"name": "style_gan", "latent_dim": 8, "noise_dim": 8,
                                      "mapping_layers": 3, "channels": [8, 8, 8]},
                            state_from={"name": "style_gan", "latent_dim": 8, "noise_dim": 8,
                                        "mapping_layers": 2, "channels": [8, 8, 8]})
    with pytest.raises(UserError, match=r"the weights do not fit the model .*Missing key"):
        model_store.load_model(missing)


def test_a_diverging_gan_stops_and_a_collapsed_one_is_flagged(ray_session, mlflow_store,
                                                              tmp_path):
    data = make_idx_dataset(tmp_path / "idx", n_train=128, n_test=64)
    with pytest.raises(UserError, match=r"non-finite loss in epoch 1 \(gan/d_loss=nan\)"):
        train(gan_config(data, "diverging", epochs=1, lr=1e30))
    (failed,) = mlflow.search_runs(filter_string="attributes.run_name = 'diverging'",
                                   output_format="list")
    assert failed.info.status == "FAILED"
    # An untrained generator's samples are all alike: the run says so.
    frozen = train(gan_config(data, "frozen", epochs=1, lr=1e-12))
    assert len(frozen.notes) == 1 and "looks collapsed" in frozen.notes[0]
    run = mlflow.get_run(frozen.run_id)
    assert run.data.tags["latentatlas.collapsed"] == frozen.notes[0]
    assert run.data.metrics["gan/sample_pairwise_mse"] < 0.1 * run.data.metrics[
        "gan/real_pairwise_mse"]
