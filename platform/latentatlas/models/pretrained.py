"""Latent spaces a researcher already has, from local files only (never the network):

- `diffusers:FOLDER`: the autoencoder of latent diffusion (diffusers' `AutoencoderKL`, a
  folder of `config.json` and safetensors weights) as a VAE like the platform's own. The
  study's images are resized to the model's `sample_size`, brought to its channels (grey ->
  RGB, and back by the mean) and range ([-1, 1]), decoded images resized back. Codes are
  the latent tensor (C, H/f, W/f) with the model's scaling (and shift, where its config has
  one) applied as diffusers' pipelines do, z = (mean - shift) * scale, flattened (C, H, W).
- `stylegan2:FILE.pt`: a StyleGAN2 checkpoint in rosinality's layout (`{"g_ema":
  state_dict, "latent_avg": w}`, loaded with weights_only) as a generator in its W space
  (latentatlas.models.stylegan2). `crop=F` keeps the central square of F of the side before
  the resize to the study's images; `truncation=PSI` pulls sampled w toward latent_avg.

Options follow a `?`, joined by `&`: `image=CxHxW` (the images it takes and gives back),
and the model's own above. An encoding or a study records the address with its `image=`
(the data's), so every later step rebuilds the same model."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from latentatlas.errors import UserError
from latentatlas.models.vae import VAE

IMAGE = re.compile(r"^(\d+)x(\d+)x(\d+)$")


def unit_fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError
    return value


# prefix -> what it names and the options it takes besides image= (name -> parser)
KINDS = {"diffusers:": ("FOLDER", {}),
         "stylegan2:": ("FILE.pt", {"crop": unit_fraction, "truncation": float})}


def is_pretrained(address: str) -> bool:
    return address.startswith(tuple(KINDS))


def parse(address: str) -> tuple[str, Path, dict]:
    """(prefix, path, options) of a pretrained address; `image` a (C, H, W) tuple."""
    prefix = next(k for k in KINDS if address.startswith(k))
    path, _, query = address.removeprefix(prefix).partition("?")
    what, parsers = KINDS[prefix]
    form = (f"expected {prefix}{what}[?image=CxHxW"
            + "".join(f"&{k}=..." for k in parsers) + "]")
    options = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        try:
            if key == "image":
                options[key] = tuple(int(g) for g in IMAGE.match(value).groups())
            else:
                options[key] = parsers[key](value)
        except (AttributeError, KeyError, ValueError):
            raise UserError(f"{address}: {item!r}: {form}") from None
    return prefix, Path(path).expanduser().resolve(), options


def address_of(prefix: str, path: Path, options: dict) -> str:
    shown = {**options, "image": "x".join(map(str, options["image"]))} \
        if "image" in options else options
    query = "&".join(f"{k}={v}" for k, v in sorted(shown.items()))
    return f"{prefix}{path}" + (f"?{query}" if query else "")


def with_image(address: str, shape) -> str:
    """The address that says its images: `shape` added unless it says them already."""
    prefix, path, options = parse(address)
    return address_of(prefix, path, {"image": tuple(shape), **options})


def load_pretrained(address: str, device: str | torch.device = "cpu", role: str = "--model"):
    """(model, spec) of a pretrained address."""
    prefix, path, options = parse(address)
    load = load_diffusers if prefix == "diffusers:" else load_stylegan2
    return load(path, options, device, f"{role} {address}")


def rebuild_pretrained(spec: dict, state: dict, device: str | torch.device = "cpu"):
    """The model a spec and state dict describe (an actor's copy: no file needed)."""
    rebuild = rebuild_diffusers if spec["pretrained"].startswith("diffusers:") else \
        rebuild_stylegan2
    return rebuild(spec, state).to(device).eval()


class DiffusersAutoencoder(VAE):
    """A diffusers AutoencoderKL behind the VAE interface: encode(x in [0, 1]) -> (mu,
    log sigma^2) of the scaled latent, flattened; decode(z) -> images in [0, 1]."""

    def __init__(self, autoencoder, image_shape: tuple[int, int, int]):
        cfg = autoencoder.config
        size = int(cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0])
        side = size // 2 ** (len(cfg.block_out_channels) - 1)  # one halving per block but one
        latent_shape = (int(cfg.latent_channels), side, side)
        super().__init__(image_shape, math.prod(latent_shape), sample_posterior=True)
        self.size, self.latent_shape, self.autoencoder = size, latent_shape, autoencoder
        self.scale = float(cfg.scaling_factor)
        self.shift = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.channels = int(cfg.in_channels)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] of the study -> the model's size, channels and [-1, 1]."""
        if x.shape[1] != self.channels:
            x = x.mean(dim=1, keepdim=True).expand(-1, self.channels, -1, -1)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x * 2 - 1

    def from_model(self, y: torch.Tensor) -> torch.Tensor:
        y = ((y + 1) / 2).clamp(0, 1)
        c, h, w = self.input_shape
        if y.shape[-2:] != (h, w):
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False,
                              antialias=True).clamp(0, 1)
        return y.mean(dim=1, keepdim=True) if c != y.shape[1] else y

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.autoencoder.encode(self.to_model(x)).latent_dist
        mu = (dist.mean - self.shift) * self.scale
        # the scaled latent's variance is the posterior's times scale^2
        logvar = dist.logvar + 2 * math.log(self.scale)
        return mu.flatten(1), logvar.flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        latent = z.reshape(len(z), *self.latent_shape) / self.scale + self.shift
        return self.from_model(self.autoencoder.decode(latent).sample)


def load_diffusers(folder: Path, options: dict, device, where: str):
    """The autoencoder of a `diffusers:` address and its spec (as a logged model's): checked
    (a config of a supported class, weights that load, finite) before use."""
    config = folder / "config.json"
    if not config.is_file():
        raise UserError(f"{where}: no config.json in {folder} (a diffusers model folder, as "
                        "save_pretrained writes it)")
    try:
        cls = json.loads(config.read_text()).get("_class_name")
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: {config} is not valid JSON ({e})") from None
    if cls != "AutoencoderKL":
        raise UserError(f"{where}: a {cls or 'model of no _class_name'}; LatentAtlas loads "
                        "diffusers' AutoencoderKL")
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise UserError(f"{where}: diffusers is not installed (pip install diffusers)") \
            from None
    try:
        autoencoder = AutoencoderKL.from_pretrained(folder, local_files_only=True,
                                                    torch_dtype=torch.float32)
    except Exception as e:  # OSError, a safetensors error, ValueError on shapes, ...
        text = " ".join(str(e).split())[:300]
        raise UserError(f"{where}: its weights do not load ({type(e).__name__}: {text})") \
            from None
    from latentatlas.model_store import non_finite_tensor

    if bad := non_finite_tensor(autoencoder.state_dict()):
        raise UserError(f"{where}: non-finite weights ({bad})")
    cfg = autoencoder.config
    image = options.get("image") or (int(cfg.in_channels), int(cfg.sample_size),
                                     int(cfg.sample_size))
    model = DiffusersAutoencoder(autoencoder, image).to(device).eval()
    spec = {"pretrained": address_of("diffusers:", folder, {**options, "image": image}),
            "role": "vae",
            "model": {"name": "diffusers AutoencoderKL", "folder": str(folder),
                      "latent_shape": list(model.latent_shape), "scaling_factor": model.scale,
                      "shift_factor": model.shift, "sample_size": model.size},
            "config": {k: v for k, v in dict(cfg).items() if not k.startswith("_")},
            "input_shape": list(image)}
    return model, spec


def rebuild_diffusers(spec: dict, state: dict):
    from diffusers import AutoencoderKL

    autoencoder = AutoencoderKL.from_config(spec["config"])
    model = DiffusersAutoencoder(autoencoder, tuple(spec["input_shape"]))
    model.load_state_dict(state)
    return model


def load_stylegan2(path: Path, options: dict, device, where: str):
    """A rosinality-layout StyleGAN2 checkpoint as a generator in W (a GAN without its
    discriminator), checked: never unpickled code, every key and shape, finite weights."""
    from latentatlas.model_store import non_finite_tensor
    from latentatlas.models.gan import GAN
    from latentatlas.models.stylegan2 import StyleGAN2Generator, StyleGAN2W, infer_config

    if path.suffix == ".pkl":
        raise UserError(f"{where}: an NVlabs pickle runs the code it holds when unpickled, so "
                        "it is never opened; convert it to rosinality's layout ({'g_ema': "
                        "state_dict, 'latent_avg': w}, e.g. stylegan2-pytorch's "
                        "convert_weight.py) and give the .pt")
    if not path.is_file():
        raise UserError(f"{where}: no such checkpoint file")
    try:
        # weights_only: tensors and plain containers, never code
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError, EOFError, ...
        raise UserError(f"{where}: not a checkpoint of tensors "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if not isinstance(checkpoint, dict) or "g_ema" not in checkpoint:
        keys = sorted(checkpoint)[:6] if isinstance(checkpoint, dict) else type(checkpoint)
        raise UserError(f"{where}: no 'g_ema' in the checkpoint (has {keys}); expected "
                        "rosinality's layout {'g_ema': state_dict, 'latent_avg': w}")
    state = checkpoint["g_ema"]
    try:
        config = infer_config(state)
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None
    if bad := non_finite_tensor(state):
        raise UserError(f"{where}: non-finite weights ({bad})")
    generator = StyleGAN2Generator(**config)
    generator.load_state_dict(state)
    latent_avg = checkpoint.get("latent_avg")
    average = "the checkpoint's latent_avg"
    if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != config["style_dim"]:
        with torch.no_grad():  # as rosinality's mean_latent: w of 4096 draws
            latent_avg = generator.mapping(torch.randn(
                4096, config["style_dim"], generator=torch.Generator().manual_seed(0))).mean(0)
        average = "the mean w of 4096 draws (the checkpoint has no latent_avg)"
    image = options.get("image") or (3, config["size"], config["size"])
    crop, truncation = options.get("crop", 1.0), options.get("truncation", 1.0)
    model = GAN(image, StyleGAN2W(generator, latent_avg, image, crop, truncation), None)
    spec = {"pretrained": address_of("stylegan2:", path, {**options, "image": image}),
            "role": "generator", "config": config,
            "model": {"name": "stylegan2 W", **config, "crop": crop, "truncation": truncation,
                      "latent_avg": average},
            "input_shape": list(image)}
    return model.to(device).eval(), spec


def rebuild_stylegan2(spec: dict, state: dict):
    from latentatlas.models.gan import GAN
    from latentatlas.models.stylegan2 import StyleGAN2Generator, StyleGAN2W

    m, image = spec["model"], tuple(spec["input_shape"])
    generator = StyleGAN2Generator(**spec["config"])
    model = GAN(image, StyleGAN2W(generator, torch.zeros(generator.style_dim), image,
                                  m["crop"], m["truncation"]), None)
    model.load_state_dict(state)
    return model
