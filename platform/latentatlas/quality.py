"""Sample quality as the platform records it: samplers' images scored (FID, KID, the variance
loss of the samples) against a reference in each feature space, and the metric names and
params of those scores."""

from __future__ import annotations

import numpy as np

from latentatlas.features import (
    Extractor,
    decoded,
    image_features,
    mean_pixel_variance,
    uint8_pixel_variance,
)
from latentatlas.fid_stats import checked_features
from latentatlas.frechet import Reference, compare


def fid_params(extractors: list[Extractor], samples: int, reference: str) -> dict[str, object]:
    """What an FID depends on beside the images, as run params: per extractor its source,
    weights digest and resize; the generated images per sampler; the reference; that
    generated images are scored as 8-bit images."""
    params = {"fid/extractors": ",".join(e.name for e in extractors), "fid/samples": samples,
              "fid/reference": reference, "fid/generated_as": "uint8 (round(255 x))"}
    for e in extractors:
        params |= {f"fid/{e.name}/source": e.source, f"fid/{e.name}/weights_sha256": e.digest,
                   f"fid/{e.name}/features": e.features, f"fid/{e.name}/resize": e.resize,
                   f"fid/{e.name}/antialias": e.antialias}
    return params


def score_images(extractor: Extractor, reference: Reference, images: np.ndarray,
                 what: str = "--images", seed: int = 0, **where) -> dict[str, float]:
    """FID, KID and variance loss of uint8 `images` (N, C, H, W) against the reference."""
    fake = checked_features(image_features(extractor.shared, len(images), images=images,
                                           **where), what)
    return scored(reference, fake, uint8_pixel_variance(images), seed)


def scored(reference: Reference, fake: np.ndarray, pixel_variance: float,
           seed: int) -> dict[str, float]:
    out = compare(reference, fake, seed)
    if reference.pixel_variance is not None:
        out["delta_var_gen"] = reference.pixel_variance - pixel_variance
    return out


def score_samplers(extractor: Extractor, reference: Reference, model, spec: dict,
                   samplers: dict[str, np.ndarray], seed: int = 0, **where) -> dict[str, dict]:
    """Per sampler (name -> codes the model decodes): FID, KID (mean, std) against the
    reference in the extractor's space, and the variance loss of its samples (mean pixel
    variance of the real images minus that of the samples), each where the reference allows.
    `model` and its logged `spec`; `where`: actors, use_gpu, here (as `image_features`)."""
    from latentatlas.models import share_model

    shared = share_model(model, spec)
    scores = {}
    for name, codes in samplers.items():
        fake = image_features(extractor.shared, len(codes), model=shared,
                              codes=np.asarray(codes, np.float32), **where)
        scores[name] = scored(reference, checked_features(fake, f"sampler {name}"),
                              mean_pixel_variance(decoded(model, codes)), seed)
    return scores


# The generated side's sampler whose metric keys carry no suffix.
UNSUFFIXED = ("prior", "images")


def quality_metrics(extractor: str, scores: dict[str, dict]) -> dict[str, float]:
    """Metric keys: `fid/<extractor>`, `kid/<extractor>`, `kid_std/<extractor>` and
    `variance_loss/delta_var_gen` for the prior (or the images scored); other samplers append
    `/<sampler>`; a score the reference cannot give (KID from a statistics file) is absent."""
    names = {"fid": f"fid/{extractor}", "kid_mean": f"kid/{extractor}",
             "kid_std": f"kid_std/{extractor}", "delta_var_gen": "variance_loss/delta_var_gen"}
    out = {}
    for sampler, s in scores.items():
        tail = "" if sampler in UNSUFFIXED else f"/{sampler}"
        out.update({f"{names[k]}{tail}": v for k, v in s.items()})
    return out
