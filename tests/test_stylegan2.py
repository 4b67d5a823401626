"""The StyleGAN2 generator against rosinality/stylegan2-pytorch at commit bef283a, whose
checkpoints it must load and whose images it must reproduce.

The fixtures were made once from that repository's own code (its model.py, with op/'s CUDA
extension loading removed so that its native CPU ops run), torch 2.13 on a CPU:
- data/stylegan2_keys.json: `[key, shape]` of `Generator(64, 512, 8, channel_multiplier=2)`
  and `Generator(128, 512, 8, channel_multiplier=1)` state dicts, in their order;
- data/stylegan2_reference.npz: `torch.manual_seed(0)`, `g = Generator(64, 512, 8,
  channel_multiplier=1)`, its state set by `deterministic_state` below (the same rule
  applied to their module), `z = torch.randn(2, 512, generator=manual_seed(2024))`,
  `w = g.style(z)`, `images = g([w], input_is_latent=True, randomize_noise=False)[0]`;
  all float32 (images span about [-0.8, 0.8])."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentatlas.models.stylegan2 import StyleGAN2Generator, infer_config

DATA = Path(__file__).parent / "data"
KEYS = json.loads((DATA / "stylegan2_keys.json").read_text())
# Float32 through 8 mapping layers and 14 modulated convs (sums of up to 4608 terms): another
# summation order (thread count, SIMD width of the CPU kernels) moves each layer by a few
# units in the last place (~1e-7 relative), and demodulation keeps activations O(1) so that
# does not grow much. Measured against the fixture (made with AVX-512 kernels, 2 threads):
# 0 with the same settings, at most 1.4e-6 of the largest value with OMP_NUM_THREADS=1 and
# ATEN_CPU_CAPABILITY=default. 1e-4 of it leaves a 70x margin, while a real mistake (a pad
# off by one, a gain, a missing noise) moves the outputs by 1e-2 or more.
RTOL_OF_MAX = 1e-4


def shapes(state: dict[str, torch.Tensor]) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in state.items()]


def theirs(config: dict) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(shape)) for k, shape in config["keys"]]


def meta_state(config: dict) -> dict[str, torch.Tensor]:
    """A state dict of their shapes without the memory (infer_config reads shapes only)."""
    return {k: torch.empty(shape, device="meta") for k, shape in theirs(config)}


def deterministic_state(model: StyleGAN2Generator) -> dict[str, torch.Tensor]:
    """Key i (sorted) of a parameter: N(0, 1) from seed i, times 0.2, except the mapping's
    weights, stored divided by its lr multiplier 0.01 (so times 100: at 0.2 the signal would
    fade through 8 layers and z would not matter); noise buffers: N(0, 1) from seed 10000+i;
    the blur kernels stay as built (fixed in both)."""
    params = dict(model.named_parameters())
    state = model.state_dict()
    for i, key in enumerate(sorted(state)):
        if key in params:
            t = torch.randn(state[key].shape, generator=torch.Generator().manual_seed(i))
            mapping = key.startswith("style.") and key.endswith(".weight")
            state[key] = t * 100 if mapping else t * 0.2
        elif key.startswith("noises."):
            state[key] = torch.randn(state[key].shape,
                                     generator=torch.Generator().manual_seed(10_000 + i))
    return state


def assert_close_to(ours: torch.Tensor, reference: np.ndarray):
    reference = torch.from_numpy(reference)
    assert ours.shape == reference.shape
    bound = RTOL_OF_MAX * reference.abs().max().item()
    assert (ours - reference).abs().max().item() <= bound


@pytest.fixture(scope="module")
def reference_model() -> StyleGAN2Generator:
    model = StyleGAN2Generator(64, 512, 8, channel_multiplier=1)
    model.load_state_dict(deterministic_state(model), strict=True)
    return model.eval()


@pytest.mark.parametrize("config", KEYS["configs"], ids=["64-cm2", "128-cm1"])
def test_state_dict_keys_and_shapes_are_rosinalitys(config):
    with torch.device("meta"):
        ours = shapes(StyleGAN2Generator(**config["args"]).state_dict())
    assert len(ours) == len(theirs(config))
    assert set(ours) == set(theirs(config))


@pytest.mark.parametrize("config", KEYS["configs"], ids=["64-cm2", "128-cm1"])
def test_infer_config_reads_the_constructor_arguments_from_shapes(config):
    assert infer_config(meta_state(config)) == config["args"]


def test_infer_config_refuses_other_layouts():
    state = meta_state(KEYS["configs"][0])
    without_noise = {k: v for k, v in state.items() if k != "noises.noise_3"}
    with pytest.raises(ValueError, match="noises.noise_3"):
        infer_config(without_noise)
    narrower = {**state, "to_rgbs.1.bias": torch.empty(1, 4, 1, 1, device="meta")}
    with pytest.raises(ValueError, match="to_rgbs.1.bias"):
        infer_config(narrower)
    with pytest.raises(ValueError, match="not a rosinality StyleGAN2"):
        infer_config({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)})
    with pytest.raises(ValueError, match="'g_ema'"):
        infer_config({"g_ema": state, "latent_avg": torch.zeros(512)})


def test_mapping_and_synthesis_reproduce_rosinalitys_outputs(reference_model):
    ref = np.load(DATA / "stylegan2_reference.npz")
    with torch.no_grad():
        w = reference_model.mapping(torch.from_numpy(ref["z"]))
        images = reference_model.synthesis(torch.from_numpy(ref["w"]))
    assert_close_to(w, ref["w"])
    assert_close_to(images, ref["images"])
    assert images.shape == (2, 3, 64, 64) and reference_model.n_latent == 10


def test_a_checkpoint_round_trips_through_weights_only_load(reference_model, tmp_path):
    with torch.no_grad():
        w_mean = reference_model.mapping(torch.randn(64, 512)).mean(0)
    state = reference_model.state_dict()
    torch.save({"g_ema": state, "latent_avg": w_mean}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    config = infer_config(ckpt["g_ema"])
    assert config == dict(size=64, channel_multiplier=1, style_dim=512, n_mlp=8)
    loaded = StyleGAN2Generator(**config)
    loaded.load_state_dict(ckpt["g_ema"], strict=True)
    # every parameter and buffer (noise, blur kernels) comes back bit for bit
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    assert torch.equal(ckpt["latent_avg"], w_mean)
