"""LatentAtlas: distributed experiments on the latent spaces of generative models."""

import os as _os

__version__ = "0.1.0"

# Process-wide defaults that Ray and MLflow read when they are imported, so they are set
# here, before either is: no telemetry, and no log deduplication (it would merge the epoch
# lines of concurrent trainings, which differ only in their numbers).
for _key, _value in {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
                     "RAY_DEDUP_LOGS": "0"}.items():
    _os.environ.setdefault(_key, _value)

# The notebook API: `import latentatlas as la; la.stats("encodings/s1")`. The studies live
# above this engine (analysis.notebook); the package's namespace forwards those names to
# them on first use, so `import latentatlas` stays light and no engine module imports the
# science.
NOTEBOOK = ("open_encoding", "load_model", "stats", "sectors", "support_set", "relocate",
            "generative_range", "sample_quality", "latent_statistics", "sector_ids",
            "information_gain", "fit_linear_map", "record_result")


def __getattr__(name: str):
    if name in NOTEBOOK:
        from importlib import import_module

        # recording is the engine's (latentatlas.tracking); the studies are the science's
        home = "latentatlas.tracking" if name == "record_result" else "analysis.notebook"
        return getattr(import_module(home), name)
    raise AttributeError(f"module 'latentatlas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *NOTEBOOK])
