"""The seed's own first stages: the ResNet VAE (padded to a power of two and cropped back) and
Split-VAE (mask and two images; its loss by hand), trained by the spine's objective and
encoded like any VAE."""

import math

import mlflow
import numpy as np
import pytest
import torch

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


def test_split_vae_trains_with_ray_train_ddp_pictures_its_parts_and_encodes(
        ray_session, mlflow_store, workdir, idx_folder):
    """Two Ray Train workers (DDP over the ResNet encoder/decoder with BatchNorm), the spine's
    records and the split pictures per epoch; the logged model encodes like any VAE."""
    from latentatlas.train.runner import single_worker, train

    cfg = validate({"name": "split", "data": {"name": "mnist", "path": str(idx_folder)},
                    "model": {"name": "split_vae", "base": 4, "scales": 2, "fc": 16,
                              "latent_dim": 4},
                    "kl": {"policy": "split", "beta": 8},
                    "train": {"epochs": 2, "batch_size": 16, "num_workers": 2,
                              "cpus_per_worker": 0.5}}, "test")
    assert not single_worker(cfg)
    out = train(cfg)
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(out.run_id, "val/mse")] == [1, 2]
    assert math.isfinite(out.metrics["val/mse"]) and out.metrics["train/gamma"] < 1
    files = {f.path for f in client.list_artifacts(out.run_id, "split")}
    assert files == {"split/epoch_001.png", "split/epoch_002.png"}
    picture = mlflow.artifacts.load_image(f"runs:/{out.run_id}/split/epoch_002.png")
    assert picture.size == (8 * 29 + 1, 5 * 29 + 1)  # originals, m, x1, x2, the mix
    enc = encode(out.model_uri, "mnist", "test", workdir / "split.enc",
                 data_path=str(idx_folder))
    rows = enc.arrays(["mu", "logvar"])
    assert enc.meta.family == "vae" and rows["mu"].shape == (32, 4)
