"""The model families, by the name each model's schema declares (config.py `family`)."""

from __future__ import annotations

from latentatlas.train.classifier import CLASSIFIER
from latentatlas.train.family import Family
from latentatlas.train.gan import GAN, RECODER
from latentatlas.train.vae import SECOND_STAGE, VAE

FAMILIES: dict[str, Family] = {f.name: f for f in (VAE, SECOND_STAGE, GAN, RECODER, CLASSIFIER)}
