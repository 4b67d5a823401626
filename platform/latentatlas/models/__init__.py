"""Generative models, one registry keyed by `model.name` in configs. Every model decodes:
`decode(code) -> images in [0, 1]` (a VAE's decoder, a GAN's generator)."""

from __future__ import annotations

import torch

from latentatlas.models.classifier import Classifier
from latentatlas.models.external import (
    ExternalGenerator,
    ExternalRecoder,
    is_external,
    load_external,
)
from latentatlas.models.gan import DCGAN, GAN, Recoder, StyleGAN
from latentatlas.models.resnet import ResNetVAE, SplitVAE
from latentatlas.models.vae import VAE, ConvVAE, DenseVAE, SecondStageVAE

MODELS = {
    "dense_vae": lambda cfg, shape: DenseVAE(shape, cfg.latent_dim, list(cfg.hidden),
                                             cfg.sample_posterior),
    "conv_vae": lambda cfg, shape: ConvVAE(shape, cfg.latent_dim, list(cfg.channels),
                                           cfg.hidden, cfg.sample_posterior),
    "resnet_vae": lambda cfg, shape: ResNetVAE(shape, cfg.latent_dim, cfg.base, cfg.scales,
                                               cfg.fc, cfg.activation),
    "split_vae": lambda cfg, shape: SplitVAE(shape, cfg.latent_dim, cfg.base, cfg.scales, cfg.fc,
                                             cfg.activation),
    "dcgan": lambda cfg, shape: DCGAN(shape, cfg.latent_dim, list(cfg.channels)),
    "style_gan": lambda cfg, shape: StyleGAN(shape, cfg.latent_dim, cfg.noise_dim,
                                             cfg.mapping_layers, list(cfg.channels),
                                             cfg.w_avg_beta),
    "recoder": lambda cfg, shape: Recoder(shape, cfg.latent_dim, list(cfg.channels),
                                          cfg.hidden),
    "classifier": lambda cfg, shape: Classifier(shape, cfg.num_classes, list(cfg.channels),
                                                cfg.hidden),
    "second_stage": lambda cfg, shape: SecondStageVAE(shape, cfg.latent_dim or shape[0],
                                                      cfg.width, cfg.depth),
}


def build_model(cfg, input_shape: tuple[int, ...]) -> torch.nn.Module:
    return MODELS[cfg.name](cfg, tuple(input_shape))


def rebuild_model(spec: dict, state: dict, device: str | torch.device = "cpu"):
    """A model from its logged spec (registry name + config, input shape) and state dict;
    a user's generator (spec `external`: module:function) from their code."""
    from pydantic import TypeAdapter

    from latentatlas.config import ModelConfig

    if spec.get("external"):
        return load_external(spec["external"], device, spec.get("role", "generator"))
    if spec.get("pretrained"):
        from latentatlas.models.pretrained import rebuild_pretrained

        return rebuild_pretrained(spec, state, device)
    cfg = TypeAdapter(ModelConfig).validate_python(spec["model"])
    model = build_model(cfg, tuple(spec["input_shape"]))
    model.load_state_dict(state)
    return model.to(device).eval()


def inverts(recoder, generator) -> bool:
    """Whether `recoder` maps the generator's images to codes of the generator's size (a
    user's recoder is probed on two generated images)."""
    if isinstance(recoder, Recoder):
        return (recoder.latent_dim, recoder.input_shape) == (generator.latent_dim,
                                                             tuple(generator.input_shape))
    if isinstance(recoder, ExternalRecoder):
        with torch.no_grad():
            codes = recoder(generator.decode(generator.sample_codes(
                2, torch.Generator().manual_seed(0))))
        return tuple(codes.shape) == (2, generator.latent_dim)
    return False


def share_model(model: torch.nn.Module, spec: dict) -> dict:
    """What workers rebuild a loaded model from: its spec and CPU weights. Actors then need
    neither MLflow (seconds to import and download) nor the model store."""
    if spec.get("external"):  # the user's code builds it, weights and all
        return {"spec": spec, "state": {}}
    return {"spec": spec, "state": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


__all__ = ["DCGAN", "GAN", "MODELS", "VAE", "Classifier", "ExternalGenerator", "ExternalRecoder",
           "Recoder", "ResNetVAE", "SecondStageVAE", "SplitVAE", "StyleGAN", "build_model",
           "inverts", "is_external", "load_external", "rebuild_model", "share_model"]
