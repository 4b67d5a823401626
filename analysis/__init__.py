"""Latent-space science: pure functions over numpy/torch arrays, plus thin Ray Data wrappers
(`analysis.pipelines`) that map them over encoded shards and reduce."""
