"""Pretrained autoencoders: diffusers' AutoencoderKL from a local folder (`diffusers:FOLDER`),
a VAE like the platform's own to every analysis. The models are tiny ones built from a config
and saved with `save_pretrained` here (nothing is downloaded)."""

import json

import mlflow
import pytest
import torch
import torch.nn.functional as F
from conftest import make_idx_dataset

from latentatlas.model_store import load_model, log_model
from latentatlas.models import build_model, rebuild_model, share_model

SCALE, SHIFT = 0.5, 0.1


def tiny_autoencoder(folder, latent_channels=2):
    """Two blocks (f = 2), 16x16 images, a scaling and a shift as latent diffusion's have."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    ae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels,
                       down_block_types=("DownEncoderBlock2D",) * 2,
                       up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, sample_size=16,
                       scaling_factor=SCALE, shift_factor=SHIFT)
    ae.save_pretrained(folder)
    return ae.eval()


def diffusers_input(x):
    """What a pipeline feeds the autoencoder: RGB at its sample size, in [-1, 1]."""
    rgb = x.expand(-1, 3, -1, -1)
    return F.interpolate(rgb, size=(16, 16), mode="bilinear", align_corners=False,
                         antialias=True) * 2 - 1


def test_codes_and_images_are_diffusers_own_calls(tmp_path):
    ae = tiny_autoencoder(tmp_path / "ae")
    model, spec = load_model(f"diffusers:{tmp_path / 'ae'}?image=1x28x28")
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        dist = ae.encode(diffusers_input(x)).latent_dist
        # the latent scaled and shifted as diffusers' pipelines do, flattened (C, H/f, W/f)
        assert mu.shape == (5, 2 * 8 * 8) and model.latent_dim == 128
        torch.testing.assert_close(mu, ((dist.mean - SHIFT) * SCALE).flatten(1))
        torch.testing.assert_close(logvar.exp(), (dist.var * SCALE ** 2).flatten(1))
        # decoding undoes the scaling: the autoencoder's own image of its posterior mean,
        # back in [0, 1] at the study's size and channels
        own = ((ae.decode(dist.mean).sample + 1) / 2).clamp(0, 1)
        own = F.interpolate(own, size=(28, 28), mode="bilinear", align_corners=False,
                            antialias=True).clamp(0, 1).mean(dim=1, keepdim=True)
        torch.testing.assert_close(model.decode(mu), own)
        # an actor's copy, rebuilt from the spec and the weights alone, is the same model
        rebuilt = rebuild_model(spec, share_model(model, spec)["state"])
        torch.testing.assert_close(rebuilt.encode(x)[0], mu)
    assert spec["pretrained"] == f"diffusers:{(tmp_path / 'ae').resolve()}?image=1x28x28"
    assert spec["model"]["latent_shape"] == [2, 8, 8]


def test_its_encoding_verifies_measures_and_relocates_to_a_platform_vae(workdir, capsys):
    """The verbs on it as on any VAE: encode (the encoding records the address with the
    data's image shape), verify, stats, and a relocation to a platform VAE and back."""
    from jobs import encode, relocate, stats, verify
    from latentatlas.config import DenseVAEConfig
    from latentatlas.encode import open_encoding

    uri = f"sqlite:///{workdir}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("pretrained")
    data = make_idx_dataset(workdir / "idx", n_train=16, n_test=300)
    tiny_autoencoder(workdir / "ae")
    cfg = DenseVAEConfig(hidden=[16], latent_dim=4)
    torch.manual_seed(0)
    with mlflow.start_run() as run:
        log_model(build_model(cfg, (1, 28, 28)), cfg.model_dump(), (1, 28, 28))
    common = ["--tracking-uri", uri, "--experiment", "pretrained"]
    for model, out in ((f"diffusers:{workdir / 'ae'}", "enc-ae"),
                       (f"runs:/{run.info.run_id}/model", "enc-vae")):
        assert encode.main(["--model", model, "--data", "mnist:test", "--data-path", str(data),
                            "--out", out, *common]) == 0
    enc = open_encoding(workdir / "enc-ae")
    assert enc.meta.model_uri == f"diffusers:{(workdir / 'ae').resolve()}?image=1x28x28"
    assert (enc.meta.rows, enc.latent_dim) == (300, 128)
    assert verify.main(["enc-ae", "--write-manifest"]) == 0
    assert verify.main(["enc-ae"]) == 0
    assert stats.main(["enc-ae", *common]) == 0
    for source, target in (("enc-ae", "enc-vae"), ("enc-vae", "enc-ae")):
        assert relocate.main(["--source", source, "--target", target, "--fit", "all",
                              *common]) == 0
    out = capsys.readouterr().out
    assert "M_target_own" in out and "inactive" in out


@pytest.mark.parametrize("damage, says", [
    ("no_config", "no config.json in"),
    ("other_class", "a UNet2DModel; LatentAtlas loads diffusers' AutoencoderKL"),
    ("other_shape", "its weights do not load"),
    ("truncated", "its weights do not load"),
    ("bad_address", "'size=64': expected diffusers:FOLDER[?image=CxHxW]"),
    ("other_images", "images are (1, 28, 28) but the model expects (3, 64, 64)"),
])
def test_a_bad_folder_is_one_line_and_writes_nothing(workdir, capsys, damage, says):
    from jobs import encode

    folder = workdir / "ae"
    tiny_autoencoder(folder)
    address = f"diffusers:{folder}"
    config = json.loads((folder / "config.json").read_text())
    weights = folder / "diffusion_pytorch_model.safetensors"
    if damage == "no_config":
        (folder / "config.json").unlink()
    elif damage == "other_class":
        (folder / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DModel"}))
    elif damage == "other_shape":  # weights of a 2-channel latent under a 3-channel config
        (folder / "config.json").write_text(json.dumps({**config, "latent_channels": 3}))
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "bad_address":
        address += "?size=64"
    else:
        address += "?image=3x64x64"
    data = make_idx_dataset(workdir / "idx", n_train=8, n_test=8)
    code = encode.main(["--model", address, "--data", "mnist:test", "--data-path", str(data),
                        "--out", "enc", "--tracking-uri", f"sqlite:///{workdir}/mlflow.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[0].startswith("error: ") and says in err[0], err
    assert not (workdir / "enc").exists()


# ---- StyleGAN2 in W (rosinality's checkpoint layout) --------------------------------------

def tiny_stylegan2(path, size=8):
    """A random StyleGAN2 of rosinality's layout at 8x8 (512 channels, as theirs), a
    16-d W, saved as their checkpoints are."""
    from latentatlas.models.stylegan2 import StyleGAN2Generator

    torch.manual_seed(0)
    g = StyleGAN2Generator(size, style_dim=16, n_mlp=2, channel_multiplier=1).eval()
    with torch.no_grad():
        latent_avg = g.mapping(torch.randn(512, 16)).mean(0)
    torch.save({"g_ema": g.state_dict(), "latent_avg": latent_avg}, path)
    return g, latent_avg


def test_a_stylegan2_checkpoint_is_a_generator_in_w(tmp_path):
    g, avg = tiny_stylegan2(tmp_path / "g.pt")
    model, spec = load_model(f"stylegan2:{tmp_path / 'g.pt'}?image=1x28x28&crop=0.5"
                             "&truncation=0.7")
    assert (model.latent_dim, model.input_shape) == (16, (1, 28, 28))
    assert spec["model"]["latent_avg"] == "the checkpoint's latent_avg"
    with torch.no_grad():
        w = model.sample_codes(3, torch.Generator().manual_seed(5))
        z = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(w, avg + 0.7 * (g.mapping(z) - avg))
        # the central half of the 8x8 image (rows and columns 2:6), in [0, 1], resized and
        # averaged to grey
        own = ((g.synthesis(w).clamp(-1, 1) + 1) / 2)[..., 2:6, 2:6]
        own = F.interpolate(own, size=(28, 28), mode="bilinear", align_corners=False,
                            antialias=True).clamp(0, 1).mean(dim=1, keepdim=True)
        torch.testing.assert_close(model.decode(w), own)
        rebuilt = rebuild_model(spec, share_model(model, spec)["state"])
        torch.testing.assert_close(rebuilt.decode(w), own)
        torch.testing.assert_close(rebuilt.sample_codes(3, torch.Generator().manual_seed(5)), w)


@pytest.mark.slow
def test_the_range_verb_measures_it_by_gradient_ascent(workdir, capsys):
    """`range` on the checkpoint as on the platform's own GANs: without a recoder, gradient
    steps from the mean code, against a platform VAE's encoding of the same images (its W
    recoder trains in the CelebA study's test, tests/test_seed_celeba.py)."""
    from jobs import encode
    from jobs import range as range_verb
    from latentatlas.config import DenseVAEConfig

    uri = f"sqlite:///{workdir}/mlflow.db"
    common = ["--tracking-uri", uri, "--experiment", "stylegan2"]
    tiny_stylegan2(workdir / "g.pt")
    data = make_idx_dataset(workdir / "idx", n_train=16, n_test=200)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("stylegan2")
    cfg = DenseVAEConfig(hidden=[16], latent_dim=4)
    torch.manual_seed(0)
    vae = build_model(cfg, (1, 28, 28))
    with torch.no_grad():
        vae.mu.weight *= 30  # spread codes, active variables, as a trained VAE's
    with mlflow.start_run() as run:
        log_model(vae, cfg.model_dump(), (1, 28, 28))
    assert encode.main(["--model", f"runs:/{run.info.run_id}/model", "--data", "mnist:test",
                        "--data-path", str(data), "--out", "enc-vae", *common]) == 0
    assert range_verb.main(["--generator", f"stylegan2:{workdir / 'g.pt'}?image=1x28x28",
                            "--refine", "2", "--data", "mnist:test", "--data-path", str(data),
                            "--support-from", "enc-vae", "--samples", "16", "--real-images",
                            "20", "--threshold", "0.01", "--k", "2", *common]) == 0
    assert "gradient ascent" in capsys.readouterr().out


class Planted:
    """Unpickling this writes a file: proof that a refused pickle was never opened."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("damage, says", [
    ("pickle", "an NVlabs pickle runs the code it holds when unpickled, so it is never "
               "opened"),
    ("no_g_ema", "no 'g_ema' in the checkpoint"),
    ("truncated", "not a checkpoint of tensors"),
    ("other_shape", "the state dict does not match Generator"),
    ("missing", "no such checkpoint file"),
])
def test_a_bad_checkpoint_is_one_line_and_never_runs_code(workdir, capsys, damage, says):
    import pickle

    from jobs import encode

    path = workdir / "g.pt"
    g, avg = tiny_stylegan2(path)
    state = g.state_dict()
    if damage == "pickle":
        path = workdir / "network-snapshot.pkl"
        path.write_bytes(pickle.dumps({"G_ema": Planted(workdir / "ran")}))
    elif damage == "no_g_ema":
        torch.save({"g": state}, path)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif damage == "other_shape":
        state["conv1.conv.weight"] = state["conv1.conv.weight"][:, :8]
        torch.save({"g_ema": state, "latent_avg": avg}, path)
    else:
        path = workdir / "absent.pt"
    data = make_idx_dataset(workdir / "idx", n_train=8, n_test=8)
    code = encode.main(["--model", f"stylegan2:{path}", "--data", "mnist:test", "--data-path",
                        str(data), "--refine", "2", "--out", "enc",
                        "--tracking-uri", f"sqlite:///{workdir}/mlflow.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[0].startswith("error: ") and says in err[0], err
    assert not (workdir / "enc").exists() and not (workdir / "ran").exists()
