"""The studies as Python functions, for notebooks: `import latentatlas as la`, then
`la.stats("encodings/s1")`, `la.sectors(...)`, `la.relocate(a, b)` and so on. Each takes
encodings and models by address (a directory, `runs:/...`, `models:/...`, a pretrained
folder, `module:function`) or as opened objects, runs the study in this process (Ray Data
only where the input is large, as the verbs do), and returns the study's typed result, the
one a study step records. Nothing is recorded unless asked: `la.record_result(result)`
(latentatlas.tracking.record_result, the engine's) logs it to MLflow as the verb would.
Encodings are opened and models loaded once per process (by address), so a second call
costs what its work costs.

The array functions beneath them are here too: `latent_statistics`, `sector_ids`,
`information_gain`, `fit_linear_map`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from analysis.defaults import DEFAULT_ESTIMATORS, DEFAULT_K, DEFAULT_THRESHOLD
from analysis.information import information_gain
from analysis.latent import latent_stats
from analysis.linear_maps import fit_linear_map
from analysis.moments import Moments
from analysis.sectors import sector_ids

__all__ = ["open_encoding", "load_model", "stats", "sectors", "support_set", "relocate",
           "generative_range", "sample_quality", "latent_statistics", "sector_ids",
           "information_gain", "fit_linear_map"]


@lru_cache(maxsize=64)
def _encoding(path: str):
    from latentatlas.encode import open_encoding as opened

    return opened(path)


def open_encoding(encoding):
    """An encoding by its directory (opened once per process), or as it is."""
    return _encoding(str(Path(encoding).resolve())) if isinstance(encoding, str | Path) \
        else encoding


@lru_cache(maxsize=16)
def load_model(address: str, tracking_uri: str | None = None):
    """(model, spec) of a model address, loaded and checked once per process; `runs:/` and
    `models:/` resolve in `tracking_uri` ($MLFLOW_TRACKING_URI or sqlite:///mlflow.db)."""
    from latentatlas.environment import resolve_tracking_uri
    from latentatlas.model_store import load_model as loaded

    return loaded(address, tracking_uri=resolve_tracking_uri(tracking_uri))


def _model_of(enc, model):
    return load_model(enc.meta.model_uri) if model is None else (
        load_model(model) if isinstance(model, str) else model)


def latent_statistics(mu: np.ndarray, logvar: np.ndarray) -> dict[str, np.ndarray]:
    """Per variable, from posterior means and log-variances (n, d): mean_mu, var_mu,
    mean_sigma2, stationary (var(mu) + mean(sigma^2)), active (Burda: var(mu) > 0.01) and
    inactive (var(mu) < 0.05 or mean(sigma^2) > 0.95), as the stats study computes them."""
    return latent_stats(Moments.of(mu), np.exp(np.asarray(logvar, np.float64)).sum(axis=0))


def stats(encoding, model=None, *, seed: int = 0, gain_rows: int | None = None,
          actors: int | None = None, use_gpu: bool = False):
    """The latent statistics of an encoding (`latentatlas stats`): variance loss, sparsity,
    stationarity, information gain, zeroing the inactive. `model`: the encoding's own by
    default. Returns analysis.studies.latent_space.LatentSpaceStats."""
    from analysis.studies.latent_space import measure_latent_space

    enc = open_encoding(encoding)
    return measure_latent_space(enc, *_model_of(enc, model), actors=actors, use_gpu=use_gpu,
                                seed=seed, gain_rows=gain_rows)


def sectors(encoding, gain=None, *, k: int = DEFAULT_K, threshold: float = DEFAULT_THRESHOLD):
    """Sectors of the k most informative active variables (`latentatlas sectors`); `gain`:
    an information gain per variable, or a `stats` result (its gain); None: by var(mu).
    Returns analysis.studies.sectors.SectorCounts."""
    from analysis.studies.sectors import count_sectors

    gain = getattr(gain, "gain", gain)
    return count_sectors(open_encoding(encoding), None if gain is None else np.asarray(gain),
                         k, threshold)


def support_set(sectors, *, size: int | None = None, exclude: str | None = None,
                seed: int = 0, among: str = "all"):
    """One member per non-empty sector, filled to `size` (`latentatlas support-set`).
    Returns analysis.studies.sectors.SupportSet."""
    from analysis.studies.sectors import choose_support_set

    return choose_support_set(sectors, size, exclude, seed, among)


def relocate(source, target, *, fit: str | None = None, support=None, indices=None,
             estimators=DEFAULT_ESTIMATORS, pairs: int | None = None,
             rows: int | None = None, seed: int = 0, lam: float = 1e-4,
             l2: float | None = None, scored_on: str | None = None,
             scored_images: int | None = None, gain=None, actors: int = 1,
             use_gpu: bool = False):
    """Linear maps from `source`'s latent space to `target`'s (`latentatlas relocate`), the
    authors' recipe for the pair unless told otherwise; `support`: a support-set result to
    fit on (its sectors' size sweep beside), else one is chosen by `gain` (a gain or a
    `stats` result; None: var(mu)). Returns analysis.studies.maps.Relocation."""
    from analysis.defaults import GENERATED_PAIRS, GENERATED_SCORED
    from analysis.studies.maps import GivenSupport, relocate_codes, resolve_fit

    src, tgt = open_encoding(source), open_encoding(target)
    fit = resolve_fit(src, tgt, fit)
    gain = getattr(gain, "gain", gain)
    given = None
    if support is not None and fit == "support":
        s = support.sectors
        ranked = None if s.ordering == "var_mu" else gain
        # the size sweep draws from the support set's own sectors: in the source's space,
        # ranked as they were (a gain-ranked set needs that gain)
        given = GivenSupport(np.asarray(support.index),
                             None if ranked is None else np.asarray(ranked), s.k_requested,
                             s.threshold, support.seed,
                             sweep=s.encoding.path == src.path and (
                                 s.ordering == "var_mu" or ranked is not None))
    return relocate_codes(src, tgt, _model_of(src, None), _model_of(tgt, None),
                          estimators=estimators, fit=fit, indices=indices,
                          pairs=pairs or GENERATED_PAIRS, random_rows=rows, seed=seed,
                          lam=lam, l2=l2, scored_on=scored_on,
                          scored_images=scored_images or GENERATED_SCORED,
                          score=None if gain is None else np.asarray(gain), support=given,
                          actors=actors, use_gpu=use_gpu)


def generative_range(generator, sectors, *, recoder=None, samples: int = 2000,
                     real_images: int | None = None, size: int | None = None,
                     seed: int = 0, refine_steps: int = 0):
    """What part of the data a generator reaches (`latentatlas range`): its own samples,
    the real images of `sectors`' encoding (a VAE's) and their support set, regenerated
    through `recoder` (an address or (model, spec)), else the generator's own encoder, then
    `refine_steps` of gradient ascent. Returns analysis.studies.generative_range.
    GenerativeRange."""
    from analysis.studies.generative_range import measure_range
    from latentatlas.inversion import NO_REFINEMENT, Refinement

    address = generator if isinstance(generator, str) else "(given)"
    model, spec = load_model(generator) if isinstance(generator, str) else generator
    inverter = None
    if recoder is not None:
        inverter = (*(load_model(recoder) if isinstance(recoder, str) else recoder),
                    recoder if isinstance(recoder, str) else "(given)")
    enc = sectors.encoding
    reference, _ = _model_of(enc, None)
    refine = Refinement(steps=refine_steps) if refine_steps else NO_REFINEMENT
    return measure_range(model, spec, address, enc.meta.load_split(), sectors, reference,
                         recoder=inverter, refine=refine, samples=samples,
                         real_images=real_images, support_size=size, seed=seed)


def sample_quality(model, extractor: str, data: str, *, data_path: str | None = None,
                   inception_weights: str | None = None, samples: int = 10000,
                   gmm_components: int = 100, second_stage=None, seed: int = 0):
    """FID and KID of a model's samples in one feature space (`latentatlas fid`):
    `extractor` a registered classifier (`classifier-<dataset>[:version]`) or `inception`
    (with its local `inception_weights`); `data`: the real images, `dataset:split`.
    Returns analysis.studies.sample_quality.SampleQuality."""
    from analysis.studies.sample_quality import measure_quality
    from latentatlas.data import load_split
    from latentatlas.environment import resolve_tracking_uri
    from latentatlas.features import resolve_extractor

    address = model if isinstance(model, str) else "(given)"
    model, spec = load_model(model) if isinstance(model, str) else model
    extractors = [resolve_extractor(extractor, inception_weights=inception_weights,
                                    tracking_uri=resolve_tracking_uri(None),
                                    input_shape=spec.get("input_shape"))]
    dataset, _, split = data.partition(":")
    stage2 = None
    if second_stage is not None:
        stage2 = (*(load_model(second_stage) if isinstance(second_stage, str)
                    else second_stage), str(second_stage))
    return measure_quality(model, spec, address, extractors,
                           load_split(dataset, split or "test", data_path),
                           second_stage=stage2, gmm_components=gmm_components,
                           samples=samples, seed=seed)
