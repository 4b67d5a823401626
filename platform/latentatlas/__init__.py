"""LatentAtlas: distributed experiments on the latent spaces of generative models."""

__version__ = "0.1.0"
