"""Generative models, one registry keyed by `model.name` in configs."""

from latentatlas.models.vae import MODELS, VAE, build_model, rebuild_vae

__all__ = ["MODELS", "VAE", "build_model", "rebuild_vae"]
