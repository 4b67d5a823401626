"""The seed's own first stages: the ResNet VAE (padded to a power of two and cropped back) and
Split-VAE (mask and two images; its loss by hand), trained by the spine's objective and
encoded like any VAE."""

import math

import mlflow
import numpy as np
import pytest
import torch
from conftest import images_over_steps

from latentatlas.config import validate
from latentatlas.encode.pipeline import encode
from latentatlas.losses import gaussian_kl, make_policy
from latentatlas.models import ResNetVAE, SplitVAE
from latentatlas.models.resnet import Pad, padded_side


@pytest.mark.parametrize("shape, scales", [((1, 28, 28), 3), ((3, 32, 32), 3),
                                           ((3, 64, 64), 4)])
def test_resnet_vae_shapes_and_padding(shape, scales):
    torch.manual_seed(0)
    model = ResNetVAE(shape, 8, base=4, scales=scales, fc=16).eval()
    x = torch.rand(2, *shape)
    x_hat, mu, logvar = model(x)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (2, 8)
    assert ((x_hat >= 0) & (x_hat <= 1)).all()
    side = padded_side(shape[1])
    assert side == {28: 32, 32: 32, 64: 64}[shape[1]]
    # the decoder works at the padded side; the crop takes its centre back to the image size
    assert model.decoder[:-1](mu).shape[-1] == side
    padded = Pad(side)(x)
    top = (side - shape[1]) // 2
    torch.testing.assert_close(padded[..., top:top + shape[1], top:top + shape[2]], x)
    assert padded.sum() == pytest.approx(x.sum().item(), rel=1e-6)  # zeros around


def test_split_vae_mixes_two_images_with_its_mask():
    torch.manual_seed(0)
    model = SplitVAE((3, 32, 32), 8, base=4, scales=2, fc=16).eval()
    z = torch.randn(5, 8)
    maps = model.decoder(z)
    assert maps.shape == (5, 7, 32, 32)  # 2 * channels + 1
    m, x1, x2 = maps[:, :1], maps[:, 1:4], maps[:, 4:]
    torch.testing.assert_close(model.decode(z), m * x1 + (1 - m) * x2)
    parts = model.parts(z)
    for got, want in zip(parts, (m, x1, x2), strict=True):
        torch.testing.assert_close(got, want)


def test_split_policy_by_hand():
    policy = make_policy("split", beta=8.0)
    policy.observe(0.5)  # running MSE: min(1, 0.99 + 0.005)
    assert policy.gamma == pytest.approx(0.995)
    torch.manual_seed(0)
    x, x_hat = torch.rand(4, 1, 6, 6), torch.rand(4, 1, 6, 6)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    kl = gaussian_kl(mu, logvar)
    by_hand = np.mean([0.5 * ((x[i] - x_hat[i]) ** 2).sum().item() / 0.995 + 8 * kl[i].item()
                       for i in range(4)])
    assert policy.loss(x, x_hat, kl).item() == pytest.approx(by_hand, rel=1e-5)
    restored = make_policy("split", beta=8.0)
    restored.load_state_dict(policy.state_dict())
    assert restored.gamma == policy.gamma


@pytest.mark.slow
def test_split_vae_trains_with_ray_train_ddp_pictures_its_parts_and_encodes(
        ray_session, mlflow_store, workdir, idx_folder):
    """Two Ray Train workers (DDP over the ResNet encoder/decoder with BatchNorm), the spine's
    records and the split pictures per epoch; the logged model encodes like any VAE."""
    from latentatlas.train.runner import train

    cfg = validate({"name": "split", "data": {"name": "mnist", "path": str(idx_folder)},
                    "model": {"name": "split_vae", "base": 4, "scales": 2, "fc": 16,
                              "latent_dim": 4},
                    "kl": {"policy": "split", "beta": 8},
                    "train": {"epochs": 2, "batch_size": 16, "num_workers": 2,
                              "cpus_per_worker": 0.5}}, "test")
    assert not cfg.train.single_worker
    out = train(cfg)
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(out.run_id, "val/mse")] == [1, 2]
    assert math.isfinite(out.metrics["val/mse"]) and out.metrics["train/gamma"] < 1
    # its parts, reconstructions and samples over epochs, in the run's image panel
    assert images_over_steps(client, out.run_id) == {
        "split": [1, 2], "reconstructions": [1, 2], "samples": [1, 2]}
    (last,) = [f.path for f in client.list_artifacts(out.run_id, "images")
               if f.path.startswith("images/split+step+2+") and f.path.endswith(".png")]
    picture = mlflow.artifacts.load_image(f"runs:/{out.run_id}/{last}")
    # originals, m, x1, x2, the mix: 5 rows of 29 pixels, 3x to be readable, named at left
    assert picture.size[1] == 3 * (5 * 29 + 1) and picture.size[0] > 3 * (8 * 29 + 1)
    enc = encode(out.model_uri, "mnist", "test", workdir / "split.enc",
                 data_path=str(idx_folder))
    rows = enc.arrays(["mu", "logvar"])
    assert enc.meta.family == "vae" and rows["mu"].shape == (32, 4)


@pytest.mark.slow
def test_a_ddp_step_of_split_vae_equals_one_process_on_both_shards(ray_session, tmp_path,
                                                                  idx_folder):
    """One optimiser step of the VAE objective on two Ray Train workers (DDP, gloo) leaves
    both workers with the same parameters and the same running-MSE gamma, and they are the
    parameters one process reaches by stepping once on the loss averaged over the two shards
    (each shard's forward in its own BatchNorm batch and with its rank's noise, as DDP does:
    BatchNorm here is per worker, not synchronised)."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from latentatlas.data import load_split
    from latentatlas.train.common import epoch_batches
    from latentatlas.train.vae import VAEObjective, vae_terms

    cfg = validate({"name": "split-ddp", "seed": 3,
                    "data": {"name": "mnist", "path": str(idx_folder)},
                    "model": {"name": "split_vae", "base": 4, "scales": 2, "fc": 16,
                              "latent_dim": 4},
                    "kl": {"policy": "split", "beta": 8},
                    "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3}}, "test")
    images = load_split("mnist", "train", str(idx_folder), limit=32).images
    val = load_split("mnist", "test", str(idx_folder), limit=8).images
    out = tmp_path / "ranks"
    out.mkdir()

    def one_step(config):  # defined here so Ray pickles it by value
        import ray.train
        import ray.train.torch

        from latentatlas.config import ExperimentConfig
        from latentatlas.train.common import unwrap
        from latentatlas.train.vae import VAEObjective

        ctx = ray.train.get_context()
        rank, world = ctx.get_world_rank(), ctx.get_world_size()
        exp = ExperimentConfig.model_validate(config["experiment"])
        torch.manual_seed(exp.seed)  # as the spine seeds model initialisation
        objective = VAEObjective(exp, {"train": config["train"], "val": config["val"]},
                                 torch.device("cpu"), rank, world)
        objective.prepare(None, 0, wrap=ray.train.torch.prepare_model)
        torch.manual_seed(exp.seed * 1_000_003 + rank)  # the spine's noise seed, epoch 0
        objective.train_epoch(0)
        torch.save({"params": dict(unwrap(objective.model).named_parameters()),
                    "gamma": objective.policy.gamma}, f"{config['out']}/rank{rank}.pt")

    TorchTrainer(one_step, train_loop_config={
        "experiment": cfg.model_dump(), "train": images, "val": val, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
    ).fit()
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(len(epoch_batches(32, 0, cfg.seed, r, 2, 16)) == 1 for r in (0, 1))  # 1 step

    torch.manual_seed(cfg.seed)
    reference = VAEObjective(cfg, {"train": images, "val": val}, torch.device("cpu"), 0, 1)
    reference.prepare(None, 0, wrap=lambda m: m)
    model = reference.model
    start = {k: p.detach().clone() for k, p in model.named_parameters()}
    model.train()
    losses, mses = [], []
    for r in (0, 1):
        torch.manual_seed(cfg.seed * 1_000_003 + r)
        (idx,) = epoch_batches(32, 0, cfg.seed, r, 2, 16)
        x = torch.from_numpy(images[np.sort(idx)]).float() / 255
        loss, mse, _ = vae_terms(model, x, reference.policy)
        losses.append(loss)
        mses.append(mse.item())
    reference.optimizer.zero_grad()
    (sum(losses) / 2).backward()  # DDP averages the two workers' gradients
    reference.optimizer.step()
    reference.policy.observe(sum(mses) / 2)

    # Adam's first step moves a coordinate by lr * g / (|g| + eps), eps = 1e-8: by lr * sign(g)
    # to within lr * 1e-4 wherever |g| > 1e-4, whatever the last bits of g; where g is ~0
    # (a conv bias before BatchNorm has a zero gradient up to rounding) only |step| <= lr
    # holds, on any path.
    lr, compared = cfg.train.lr, 0
    for key, p in model.named_parameters():
        a, b = ranks[0]["params"][key], ranks[1]["params"][key]
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # DDP: the same update on each
        clear = p.grad.abs() > 1e-4
        torch.testing.assert_close(a[clear], p.detach()[clear], rtol=0, atol=1e-3 * lr,
                                   msg=key)
        assert (a - start[key]).abs().max() <= lr * (1 + 1e-3), key
        compared += int(clear.sum())
    assert compared > 0.5 * sum(p.numel() for p in model.parameters())
    assert ranks[0]["gamma"] == ranks[1]["gamma"] == pytest.approx(reference.policy.gamma,
                                                                  rel=1e-6)
