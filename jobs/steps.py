"""Steps the verbs, the main job and sweeps share: open the inputs (encodings, models, what
earlier runs found), run one study, hand its result to the recorder. Each returns the run id
and the study's typed result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from analysis.defaults import (
    DEFAULT_ESTIMATORS,
    DEFAULT_K,
    DEFAULT_THRESHOLD,
    GENERATED_PAIRS,
    GENERATED_SCORED,
    REGULARISATION_EPOCHS,
)
from analysis.studies.sectors import (
    SectorCounts,
    SupportSet,
    choose_support_set,
    count_sectors,
)
from jobs.verdicts import CLAIMS_FILE, claims_file
from latentatlas.encode import Encoding, open_encoding
from latentatlas.model_store import load_model, load_vae
from latentatlas.report import quiet
from latentatlas.tracking import Recorder, refuse_non_finite_metrics

if TYPE_CHECKING:  # the studies that run models import torch: only the steps that use them
    from analysis.studies.latent_space import LatentSpaceStats
    from analysis.studies.maps import Relocation


# A verb's convenience at its edge: the information gain of the encoding's latest `stats`
# run. A study never looks it up: its steps hand the gain on (jobs/kinds).
LATEST = "latest"


def information_gain_of(recorder: Recorder, enc: Encoding) -> np.ndarray | None:
    """The information gain of the encoding's latest `stats` run, if any; says which run it
    took."""
    run = recorder.latest_run("stats", encoding=str(enc.path))
    table = run and recorder.table(run.info.run_id, "information_gain.json")
    if not table:
        return None
    print(f"note: {enc.path.name}'s sector variables ranked by the information gain of its "
          f"latest stats run, {run.info.run_id}")
    order = np.argsort(table["variable"])
    return np.asarray(table["information_gain"], dtype=np.float64)[order]


def gain_for(recorder: Recorder, enc: Encoding, gain) -> np.ndarray | None:
    """`gain` as given (an array, or None: rank by var(mu)), or the latest run's (LATEST)."""
    return information_gain_of(recorder, enc) if isinstance(gain, str) and gain == LATEST \
        else gain


def variance_points(recorder: Recorder) -> list[tuple[float, float, str]]:
    """(mse, delta_var, label) of every `stats` run of the experiment."""
    return [(r.data.metrics["variance_loss/mse_recon"],
             r.data.metrics["variance_loss/delta_var_recon"], r.info.run_id[:6])
            for r in recorder.runs_of("stats") if "variance_loss/mse_recon" in r.data.metrics]


def stats(recorder: Recorder, encoding: str, *, actors: int | None = None,
          use_gpu: bool = False, seed: int = 0,
          gain_rows: int | None = None,
          progress: Callable[[str], None] = quiet) -> tuple[str, LatentSpaceStats]:
    """Latent statistics of an encoding, in a child run of its model's run."""
    from analysis.studies.latent_space import measure_latent_space

    enc = open_encoding(encoding)
    progress(f"{enc.meta.rows} codes of {enc.latent_dim} variables ({enc.meta.dataset}:"
             f"{enc.meta.split}); loading {enc.meta.model_uri}")
    model, spec = load_model(enc.meta.model_uri)  # a VAE or a generator: what decodes
    progress("one pass over codes and images: latent and pixel moments, ablations")
    result = measure_latent_space(enc, model, spec, actors=actors, use_gpu=use_gpu, seed=seed,
                                  gain_rows=gain_rows)
    progress("recording the run")
    run_id = recorder.record(result.record(variance_points(recorder)), enc.meta.model_run_id)
    return run_id, result


def sectors(recorder: Recorder, encoding: str, *, k: int = DEFAULT_K,
            threshold: float = DEFAULT_THRESHOLD, seed: int = 0, gain=LATEST,
            parent_run_id: str | None = None) -> tuple[str, SectorCounts]:
    """Sectors of the k variables of highest `gain` (LATEST: the latest stats run's)."""
    enc = open_encoding(encoding)
    result = count_sectors(enc, gain_for(recorder, enc, gain), k, threshold)
    return recorder.record(result.record(seed), parent_run_id or enc.meta.model_run_id), result


def support_set(recorder: Recorder, encoding: str, *, size: int | None = None,
                exclude: str | None = None, k: int = DEFAULT_K,
                threshold: float = DEFAULT_THRESHOLD, seed: int = 0, gain=LATEST,
                among: str = "all",
                parent_run_id: str | None = None) -> tuple[str, SupportSet]:
    """A support set of the sectors of `gain` (as `sectors`), among all rows or only the
    rows a relocation fits on (`among="fit"`: not its held-out rows)."""
    enc = open_encoding(encoding)
    sectors_ = count_sectors(enc, gain_for(recorder, enc, gain), k, threshold)
    result = choose_support_set(sectors_, size, exclude, seed, among)
    return recorder.record(result.record(), parent_run_id or enc.meta.model_run_id), result


def relocate(recorder: Recorder, source: str, target: str, *, estimators=DEFAULT_ESTIMATORS,
             fit: str | None = None, indices=None, pairs: int = GENERATED_PAIRS,
             random_rows: int | None = None, seed: int = 0,
             lam: float = 1e-4, l2: float | None = None, scored_on: str | None = None,
             scored_images: int = GENERATED_SCORED, actors: int = 1,
             use_gpu: bool = False, extra_maps: dict | None = None, name: str = "relocate",
             gain=LATEST, support=None, parent_run_id: str | None = None,
             progress: Callable[[str], None] = quiet) -> tuple[str, Relocation]:
    """`relocate_codes` between two encodings and their models (both decode; a generated
    fit also samples the generator and encodes with the VAE); fit, l2 and scored_on None:
    the authors' recipe for the pair (analysis.studies.maps.authors_recipe). A support fit
    chooses its support set by the sectors of `gain` (LATEST: the latest stats run's), or
    fits on `support` (analysis.studies.maps.GivenSupport: rows chosen by a support-set
    step)."""
    from analysis.studies.maps import relocate_codes, resolve_fit

    src, tgt = open_encoding(source), open_encoding(target)
    fit = resolve_fit(src, tgt, fit)  # before loading models: a fit that cannot work is refused
    score = gain_for(recorder, src, gain) if fit == "support" and support is None else None
    result = relocate_codes(src, tgt, load_model(src.meta.model_uri),
                            load_model(tgt.meta.model_uri), estimators=estimators, fit=fit,
                            indices=indices, pairs=pairs, random_rows=random_rows, seed=seed,
                            lam=lam, l2=l2, scored_on=scored_on,
                            scored_images=scored_images, score=score,
                            support=support,
                            actors=actors, use_gpu=use_gpu, extra_maps=extra_maps,
                            progress=progress)
    progress("recording the run")
    return recorder.record(result.record(name), parent_run_id), result


def regularisation_plans(dataset: str, data_path: str | None, limit: int | None,
                         epochs: int) -> dict[str, dict]:
    """label -> experiment config of the seed's sampling pictures: 784-256-64-16-3 VAEs with
    and without posterior sampling, trained as the seed does (plain ELBO, BCE + KL; without
    sampling the KL keeps only its quadratic penalty on mu), and a 2-D VAE traced through
    its first epoch."""
    base = {"seed": 0, "data": {"name": dataset, "path": data_path, "limit": limit},
            "kl": {"policy": "elbo"},
            "train": {"epochs": epochs, "batch_size": 128, "cpus_per_worker": 0.5}}
    model = {"name": "dense_vae", "hidden": [256, 64, 16]}
    return {
        "3d-sampling": {**base, "name": "reg-3d-sampling",
                        "model": {**model, "latent_dim": 3, "sample_posterior": True}},
        "3d-no-sampling": {**base, "name": "reg-3d-no-sampling",
                           "model": {**model, "latent_dim": 3, "sample_posterior": False}},
        # One epoch is what the picture shows; trace it at 40 moments.
        "2d-trace": {**base, "name": "reg-2d-trace",
                     "model": {**model, "latent_dim": 2},
                     "train": {**base["train"], "epochs": 1, "trace_points": 40}},
    }


def regularisation(recorder: Recorder, dataset: str = "fashion-mnist", *,
                   data_path: str | None = None, limit: int | None = None,
                   epochs: int = REGULARISATION_EPOCHS, points: int = 5000,
                   classifier: str | None = None,
                   parent_run_id: str | None = None) -> tuple[str, dict, dict[str, str]]:
    """The three trainings as children of one `regularisation` run; the 3-D models' first
    `points` test codes encoded under ./encodings/regularisation-<run id>/ and measured
    against as many prior draws (with a `classifier` URI, their FID against the same test
    images too). Returns the run id, its regularity/* metrics per model, and the train run
    ids."""
    from concurrent.futures import ThreadPoolExecutor

    from analysis.studies.regularity import measure_regularity
    from latentatlas import features, fid_stats, quality
    from latentatlas.config import validate
    from latentatlas.data import load_split
    from latentatlas.encode.pipeline import encode
    from latentatlas.record import Record
    from latentatlas.train.runner import train

    configs = {label: validate(raw, f"regularisation {label}") for label, raw
               in regularisation_plans(dataset, data_path, limit, epochs).items()}
    rows = min(points, limit or points)
    images = load_split(dataset, "test", data_path, rows).images if classifier else None
    fid, params = None, {}
    if classifier:  # one reference of the test images, for both 3-D models
        extractor = features.classifier_extractor(classifier, tracking_uri=recorder.uri,
                                                 input_shape=images.shape[1:])
        fid = extractor, fid_stats.reference_of(extractor, images, fid_stats.described_images(
            dataset, "test", len(images)))
        params = quality.fid_params([extractor], len(images), fid[1].described)
    with recorder.run("regularisation", "regularisation", parent_run_id) as run_id:
        with ThreadPoolExecutor(len(configs)) as pool:
            futures = {label: pool.submit(train, cfg, tracking_uri=recorder.uri,
                                          experiment=recorder.experiment,
                                          parent_run_id=run_id)
                       for label, cfg in configs.items()}
            trained = {label: f.result() for label, f in futures.items()}
        metrics = {}
        for label in ("3d-sampling", "3d-no-sampling"):
            out = trained[label]
            enc = encode(out.model_uri, dataset, "test",
                         Path("encodings") / f"regularisation-{run_id[:8]}" / label,
                         data_path=data_path, limit=rows, actors=1)
            measured = measure_regularity(enc, *load_vae(out.model_uri), fid=fid)
            recorder.write(out.run_id, measured.record())
            suffix = label.removeprefix("3d-").replace("-", "_")
            metrics.update({f"{k}_{suffix}": v for k, v in measured.metrics.items()})
        recorder.write(run_id, Record("regularisation", "regularisation", params=params,
                                      metrics=metrics))
    return run_id, metrics, {label: out.run_id for label, out in trained.items()}



def generative_range(recorder: Recorder, generator: str, data: tuple[str, str],
                     support_from: str, *, recoder: str | None = None,
                     refine=None, data_path: str | None = None, limit: int | None = None,
                     real_images: int | None = None, samples: int = 2000, k: int = DEFAULT_K,
                     threshold: float = DEFAULT_THRESHOLD, size: int | None = None,
                     exclude: str | None = None, quantile: float = 0.95, seed: int = 0,
                     actors: int | None = None, use_gpu: bool = False, gain=LATEST,
                     parent_run_id: str | None = None, name: str = "range"):
    """The generative range of `generator` (an MLflow model or module:function; a VAE uses
    its own encoder) on a dataset split, with sectors and support set of `support_from` (a
    VAE's encoding of the same split); `real_images`: invert only the first N real images
    (and the support set)."""
    from analysis.generative_range import inversions
    from analysis.studies.generative_range import first_guess_of, measure_range
    from latentatlas.data import load_split
    from latentatlas.errors import UserError
    from latentatlas.inversion import NO_REFINEMENT
    from latentatlas.models import VAE, Recoder, inverts

    model, spec = load_model(generator, role="--generator")
    if isinstance(model, Recoder):
        raise UserError(f"--generator {generator}: a recoder; give the generator it inverts, "
                        "and the recoder as --recoder")
    inverter = None
    if recoder:
        rec, rspec = load_model(recoder, role="--recoder")
        if not inverts(rec, model):
            raise UserError(f"--recoder {recoder}: not a recoder of the generator's "
                            f"{model.latent_dim}-d codes")
        inverter = (rec, rspec, recoder)
    refine = refine or NO_REFINEMENT
    # the mean code alone is refused here, before any data is read
    inversions(first_guess_of(model, inverter), refine.steps, f"--generator {generator}")
    enc = open_encoding(support_from)
    reference, _ = load_model(enc.meta.model_uri, role="--support-from's model")
    if not isinstance(reference, VAE):
        raise UserError(f"--support-from {support_from}: a VAE's encoding is needed (its "
                        "encoder places generated samples in its sectors)")
    real = load_split(data[0], data[1], data_path, limit)
    sectors = count_sectors(enc, gain_for(recorder, enc, gain), k, threshold)
    result = measure_range(model, spec, generator, real, sectors, reference, recoder=inverter,
                           refine=refine, samples=samples, real_images=real_images,
                           support_size=size, exclude=exclude, quantile=quantile, seed=seed,
                           actors=actors, use_gpu=use_gpu)
    owner = generator.split("/")[1] if generator.startswith("runs:/") else None
    return recorder.record(result.record(name), parent_run_id or owner), result


def extractors_for(dataset: str | None, names: list[str] | None,
                   inception_weights: str | None, tracking_uri: str | None, input_shape,
                   one_for: tuple[str, str | None] = ("", None)) -> list:
    """The named feature extractors (default: the dataset's classifier, and Inception when
    its weights file is given), resolved and pinned; `one_for` (option, file): a statistics
    file, which is of one feature space."""
    from latentatlas.errors import UserError
    from latentatlas.features import classifier_name, resolve_extractor

    option, path = one_for
    if not (names or dataset):
        raise UserError(f"{option} {path}: name the feature space of the statistics with "
                        "--extractor (classifier-<dataset>[:version] or inception)")
    names = list(dict.fromkeys(names or [classifier_name(dataset),
                                         *(["inception"] if inception_weights else [])]))
    if path and len(names) != 1:
        raise UserError(f"{option} {path}: a statistics file is of one feature space; name "
                        f"one --extractor (here: {', '.join(names)})")
    return [resolve_extractor(n, inception_weights=inception_weights, tracking_uri=tracking_uri,
                              input_shape=input_shape) for n in names]


def sample_quality(recorder: Recorder, model_uri: str | None, data: tuple[str, str] | None,
                   *, images_path: str | None = None, ref_stats: str | None = None,
                   save_ref_stats: str | None = None, extractors: list[str] | None = None,
                   inception_weights: str | None = None, second_stage: str | None = None,
                   gmm_components: int = 100, samples: int = 10000,
                   data_path: str | None = None, limit: int | None = None, seed: int = 0,
                   actors: int | None = None, use_gpu: bool = False,
                   parent_run_id: str | None = None, name: str = "fid"):
    """FID / KID / variance loss of `model_uri`'s samples from each sampler (prior, GMM, a
    second stage raw and renormalised: the authors' one scale, a scale per variable), or of
    the images at `images_path`, against a dataset split (`data`) or the statistics of
    `ref_stats` (one extractor); `save_ref_stats`: write the split's statistics there too."""
    from analysis.studies.sample_quality import measure_images, measure_quality
    from latentatlas import fid_stats
    from latentatlas.data import load_split
    from latentatlas.data.image_files import read_images

    out = save_ref_stats and fid_stats.check_writable(save_ref_stats)  # before any work
    model = spec = images = None
    if model_uri:
        model, spec = load_model(model_uri)
        shape = tuple(spec["input_shape"])
    else:
        images = read_images(images_path)
        shape = images.shape[1:]
    real = None if ref_stats else load_split(data[0], data[1], data_path, limit)
    chosen = extractors_for(data and data[0], extractors, inception_weights, recorder.uri,
                            shape if real is None else real.shape,
                            one_for=("--ref-stats", ref_stats) if ref_stats else
                            ("--save-ref-stats", save_ref_stats))
    side = {chosen[0].name: fid_stats.read_reference(ref_stats, chosen[0])} if ref_stats else real
    where = {"actors": actors, "use_gpu": use_gpu}
    if model is not None:
        stage2 = None
        if second_stage:
            stage2 = (*load_model(second_stage, role="--second-stage"), second_stage)
        result = measure_quality(model, spec, model_uri, chosen, side, second_stage=stage2,
                                 gmm_components=gmm_components, samples=samples, seed=seed,
                                 **where)
        owner = model_uri.split("/")[1] if model_uri.startswith("runs:/") else None
    else:
        result = measure_images(images, images_path, chosen, side, samples=samples, seed=seed,
                                **where)
        owner = None
    run_id = recorder.record(result.record(name), parent_run_id or owner)
    if out:
        fid_stats.write_reference(result.references[chosen[0].name], out)
    return run_id, result


def reference_stats(recorder: Recorder, data: tuple[str, str], out: str, *,
                    extractors: list[str] | None = None, inception_weights: str | None = None,
                    samples: int = 10000, data_path: str | None = None,
                    limit: int | None = None, actors: int | None = None,
                    use_gpu: bool = False):
    """The statistics (pytorch-fid's `mu`, `sigma`) of a split's first `samples` images in one
    extractor's features, written to `out`; returns the extractor and the reference."""
    from analysis.studies.sample_quality import references_of
    from latentatlas import fid_stats
    from latentatlas.data import load_split

    path = fid_stats.check_writable(out)
    real = load_split(data[0], data[1], data_path, limit)
    (extractor,) = extractors_for(data[0], extractors, inception_weights, recorder.uri,
                                  real.shape, one_for=("--save-ref-stats", out))
    reference = references_of([extractor], real, samples, actors=actors,
                              use_gpu=use_gpu)[extractor.name]
    fid_stats.write_reference(reference, path)
    return extractor, reference


def translate_study(recorder: Recorder, encodings: list[str], *, labels: list[str] | None = None,
                    translators=None, anchors=None, budgets=None, repeats: int = 3,
                    eval_rows: int | None = None, seed: int = 0, gains=None,
                    parent_run_id: str | None = None, name: str = "translate study",
                    progress: Callable[[str], None] = quiet):
    """Every translator on every anchor choice and budget, for every ordered pair of
    `encodings` (their models decode), in one run; sectors ordered by each encoding's
    information gain (`gains`, one per encoding; unset: each one's latest `stats` run's)."""
    from analysis.studies import translators as t

    encs = [open_encoding(path) for path in encodings]
    labels = labels or [enc.path.name for enc in encs]
    if len(set(labels)) != len(labels):  # folder names repeat: number them instead
        labels = [f"{i}:{label}" for i, label in enumerate(labels)]
    progress(f"loading {len(encs)} models")
    models = [load_model(enc.meta.model_uri) for enc in encs]
    result = t.translate_study(
        encs, models, labels, translators=translators or t.TRANSLATORS,
        anchors=anchors or t.ANCHOR_CHOICES,
        budgets=budgets or t.BUDGETS, repeats=repeats, eval_rows=eval_rows,
        scores=[gain_for(recorder, enc, g) for enc, g in zip(encs, gains or [LATEST] * len(encs),
                                                              strict=True)], seed=seed,
        progress=progress)
    progress("recording the run")
    return recorder.record(result.record(name), parent_run_id), result


def sparsity(recorder: Recorder, plan, dataset: str = "fashion-mnist", *,
             data_path: str | None = None, limit: int | None = None, cpus: float = 1.0,
             use_gpu: bool = False, parent_run_id: str | None = None):
    """The sparsity post's experiment (analysis.studies.sparsity) in one `sparsity` run: the
    curves as metric histories, the figures, the final model (loadable as any VAE) and the
    collapse claim judged (claims.json). Returns the run id, the result and the claim."""
    import math

    import torch

    from analysis.claims import architecture, collapse_claim, training_setting
    from analysis.studies.sparsity import measure_sparsity
    from latentatlas.config import DenseVAEConfig
    from latentatlas.data import load_split
    from latentatlas.models import build_model
    from latentatlas.record import Record

    train_split = load_split(dataset, "train", data_path, limit)
    val_split = load_split(dataset, "test", data_path, limit)
    result = measure_sparsity(plan, train_split.images, val_split.images, cpus=cpus,
                              use_gpu=use_gpu)
    model_cfg = DenseVAEConfig(**result.model_config)
    record = result.record()
    record.params.update({"dataset": dataset, "limit": limit})
    record.tags["dataset"] = dataset
    refuse_non_finite_metrics(record)  # before the run opens: no empty run of a NaN
    with recorder.run("sparsity", "sparsity", parent_run_id) as run_id:
        recorder.write(run_id, record)
        setting = training_setting(dataset, architecture(model_cfg, math.prod(train_split.shape)),
                                   "elbo", plan.epochs, result.training_val_mse(), run_id)
        claim = collapse_claim(f"{setting['model']}, variable {result.variable}", setting,
                               result.metrics, run_id)
        model = build_model(model_cfg, train_split.shape)
        model.load_state_dict(result.state_dict)
        with torch.no_grad():
            recorder.log_model(run_id, model, result.model_config, train_split.shape,
                               {"dataset": dataset, "seed": plan.seed})
        recorder.write(run_id, Record("sparsity", "", files={
            CLAIMS_FILE: claims_file([claim])}))
    return run_id, result, claim
