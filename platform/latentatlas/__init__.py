"""LatentAtlas: distributed experiments on the latent spaces of generative models."""

import os as _os

__version__ = "0.1.0"

# Process-wide defaults that Ray and MLflow read when they are imported, so they are set
# here, before either is: no telemetry, and no log deduplication (it would merge the epoch
# lines of concurrent trainings, which differ only in their numbers).
for _key, _value in {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
                     "RAY_DEDUP_LOGS": "0"}.items():
    _os.environ.setdefault(_key, _value)
