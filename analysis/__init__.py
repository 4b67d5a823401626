"""Latent-space science: pure functions over numpy/torch arrays, thin Ray Data wrappers
(`analysis.passes`, `analysis.pairs`, `analysis.relocation`) that map them over encoded
shards and reduce, and the studies (`analysis.studies`) that return typed results."""

__all__ = ["studies"]
