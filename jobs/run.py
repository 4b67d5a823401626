"""`latentatlas run`: the main job. On the embedded default (local Ray, sqlite MLflow,
Fashion-MNIST) it trains the models and runs every analysis the platform has, then prints
what it measured beside the seed's claims."""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from latentatlas.command import common_parser, guarded
from latentatlas.report import Progress, print_steps

CONFIGS = Path(__file__).resolve().parent / "configs"
GAIN_ROWS = 2000  # information gain over the first 2000 test items keeps the job short
# The DCGAN and its recoder at a size that fits the job's 10 minutes on 2 cores (measured:
# bench/RESULTS.md); the job says it is reduced.
GAN_IMAGES, GAN_EPOCHS = 20000, 2
RECODER_EPOCHS, RECODER_STEPS = 2, 150
REFINE_STEPS = 10
RANGE_SAMPLES = 2000  # the generators' own samples in the generative range
# FID / KID: the classifier extractor, a second stage of dense-s0 at a reduced width (the
# authors use 2048-4096; jobs/configs/fmnist_second_stage.yaml has 1024), the GMM sampler.
CLASSIFIER_EPOCHS = 2
STAGE2_WIDTH, STAGE2_EPOCHS = 256, 5
FID_SAMPLES, GMM_COMPONENTS = 10000, 100
# The translator study over the job's four encodings at a reduced grid (the verb's default:
# budgets 0.25d-4d x 3 repeats, every held-out row).
TRANSLATE_BUDGETS, TRANSLATE_REPEATS, TRANSLATE_EVAL_ROWS = (0.25, 1.0, 4.0), 2, 250


@dataclass
class MainJob:
    """What the steps share: the parent MLflow run, trained models, and the report."""

    args: argparse.Namespace
    dataset: str
    recorder: object  # latentatlas.tracking.Recorder
    parent_run_id: str
    step: Progress = field(default_factory=lambda: Progress("main"))
    models: dict[str, object] = field(default_factory=dict)  # label -> TrainOutcome
    encodings: dict[str, object] = field(default_factory=dict)  # label -> Encoding
    settings: dict[str, str] = field(default_factory=dict)  # label -> how it was trained
    stats: dict[str, object] = field(default_factory=dict)  # label -> LatentSpaceStats
    summary: list[dict] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)
    # Ray Data pipelines run one at a time: on a small cluster, concurrent actor pools can
    # hold every CPU while each waits for a CPU for its read/write tasks.
    data_lock: threading.Lock = field(default_factory=threading.Lock)

    def train(self, cfg):
        """A training in a child run of the job's parent run."""
        from latentatlas.train.runner import train

        return train(cfg, tracking_uri=self.args.tracking_uri, experiment=self.args.experiment,
                     parent_run_id=self.parent_run_id)

    @property
    def encoding_root(self) -> Path:
        return Path("encodings") / f"main-{self.parent_run_id[:8]}"


def pair_setting(job: MainJob, a: str, b: str) -> str:
    first, second = job.settings[a], job.settings[b]
    return first if first == second else f"{first} -> {second}"


def pick_dataset(requested: str | None, data_path: str | None = None) -> str:
    """Fashion-MNIST when Debian's package is there; scikit-learn digits as a last resort."""
    from latentatlas.data import load_split
    from latentatlas.errors import UserError

    if requested:
        return requested
    try:
        load_split("fashion-mnist", "test", data_path, limit=1)
        return "fashion-mnist"
    except UserError as e:
        print(f"note: {e}; falling back to scikit-learn digits", flush=True)
        return "digits"


def training_plan(job: MainJob) -> list[tuple[str, str, list[str]]]:
    """(label, config file, overrides): two trainings of the seed's dense VAE in the seed's
    own setting (BCE + KL, as the Keras VAE of the posts, 10 epochs) and a conv VAE with
    KL balancing."""
    a = job.args
    # Half a CPU each: the three trainings run at once on two cores, hiding start-up.
    common = [f"data.name={job.dataset}", "train.cpus_per_worker=0.5"]
    if a.data_path:
        common.append(f"data.path={a.data_path}")
    if a.limit:
        common.append(f"data.limit={a.limit}")
    dense_epochs = a.epochs or 10
    conv_epochs = a.epochs or 2
    dense = [*common, "kl.policy=elbo", f"train.epochs={dense_epochs}"]
    return [
        ("dense-s0", "fmnist_dense.yaml", [*dense, "seed=0", "name=main-dense-s0"]),
        ("dense-s1", "fmnist_dense.yaml", [*dense, "seed=1", "name=main-dense-s1"]),
        ("conv-s0", "fmnist_conv.yaml", [*common, "seed=0", f"train.epochs={conv_epochs}",
                                         "model.channels=[16, 32, 64]", "model.hidden=128",
                                         "name=main-conv-s0"]),
    ]


def train_and_measure(job: MainJob, label: str, config: str, overrides: list[str]):
    """One model's pipeline: train, encode the test split, measure the latent space."""
    from analysis.claims import setting
    from jobs import steps
    from latentatlas.config import load_config
    from latentatlas.encode.pipeline import encode

    a = job.args
    cfg = load_config(CONFIGS / config, overrides)
    job.step(f"training {label}: {cfg.model.name}, latent {cfg.model.latent_dim}, "
             f"{cfg.kl.policy}, {cfg.train.epochs} epochs")
    model = job.train(cfg)
    job.step(f"trained {label}: val/mse={model.metrics['val/mse']:.4f} run {model.run_id}")
    with job.data_lock:
        enc = encode(model.model_uri, job.dataset, "test", job.encoding_root / label,
                     limit=a.limit, data_path=a.data_path, tracking_uri=a.tracking_uri,
                     actors=1)
        stats_run, measured = steps.stats(job.recorder, str(enc.path), actors=1,
                                          gain_rows=GAIN_ROWS)
    m = measured.metrics
    job.step(f"stats {label}: {m['latent/inactive']} of {enc.latent_dim} inactive, "
             f"delta_var {m['variance_loss/delta_var_recon']:.4f} vs "
             f"mse(z=mu) {m['variance_loss/mse_recon']:.4f}")
    return label, setting(job.dataset, cfg.model.name, cfg.kl.policy, cfg.train.epochs), \
        model, enc, stats_run, measured


def record_model(job: MainJob, label, trained_as, model, enc, stats_run, measured) -> None:
    from analysis.claims import stats_claims

    job.models[label], job.encodings[label] = model, enc
    job.settings[label], job.stats[label] = trained_as, measured
    # val/mse decodes sampled codes; stats' mse_recon decodes the posterior mean.
    job.summary.append({"step": f"train {label}", "run_id": model.run_id,
                        "val mse(z~q)": model.metrics.get("val/mse"),
                        "val/kl": model.metrics.get("val/kl")})
    m = measured.metrics
    job.summary.append({"step": f"stats {label}", "run_id": stats_run,
                        **{k.split("/")[1]: v for k, v in m.items()}})
    job.claims += stats_claims(label, trained_as, m, enc.latent_dim,
                               measured.stats["stationary"], conv="conv" in label)


def pipeline(job: MainJob) -> None:
    """All models train at once; each is encoded and measured as it finishes, and the
    analyses that need only the dense models run while the conv VAE still trains."""
    from concurrent.futures import ThreadPoolExecutor

    plan = training_plan(job)
    with ThreadPoolExecutor(len(plan) + 1) as pool:
        futures = {p[0]: pool.submit(train_and_measure, job, *p) for p in plan}
        classifier = pool.submit(train_classifier, job)
        for label in ("dense-s0", "dense-s1"):
            record_model(job, *futures[label].result())
        with job.data_lock:
            relocation(job, "type 1", "dense-s0", "dense-s1")
            support_sets(job)
        record_model(job, *futures["conv-s0"].result())
        job.models["classifier"] = out = classifier.result()
        job.summary.append({"step": "train classifier", "run_id": out.run_id,
                            "val_accuracy": out.metrics["val/accuracy"],
                            "registered": out.registered})
    relocation(job, "type 2", "dense-s0", "conv-s0")


def train_classifier(job: MainJob):
    """The feature network of the job's FIDs (`classifier-<dataset>`), trained beside the
    VAEs; each job registers a new version and pins it."""
    from latentatlas.config import load_config

    a = job.args
    cfg = load_config(CONFIGS / "fmnist_classifier.yaml", [
        f"data.name={job.dataset}", "train.cpus_per_worker=0.5", "name=main-classifier",
        f"train.epochs={a.epochs or CLASSIFIER_EPOCHS}",
        *([f"data.path={a.data_path}"] if a.data_path else []),
        *([f"data.limit={a.limit}"] if a.limit else [])])
    job.step(f"training the FID classifier: {cfg.train.epochs} epochs (reduced; full: "
             "jobs/configs/fmnist_classifier.yaml)")
    out = job.train(cfg)
    job.step(f"trained classifier: val accuracy {out.metrics['val/accuracy']:.4f}, "
             f"registered {out.registered}")
    return out


def relocation(job: MainJob, kind: str, a: str, b: str) -> None:
    """A relocation of the seed's type 1 (two trainings) or type 2 (two VAEs)."""
    from analysis.claims import relocation_claim
    from jobs import steps

    run_id, out = steps.relocate(job.recorder, str(job.encodings[a].path),
                                 str(job.encodings[b].path), name=f"relocate {a}->{b}",
                                 parent_run_id=job.parent_run_id)
    m = out.metrics
    job.step(f"relocation {kind} {a}->{b}: M={m['relocation/M']:.4f} "
             f"M_target_own={m['relocation/M_target_own']:.4f}")
    job.summary.append({"step": f"relocate {a}->{b}", "run_id": run_id,
                        **{k.split("/")[1]: m[k] for k in (
                            "relocation/R", "relocation/L", "relocation/M",
                            "relocation/M_target_own")}})
    job.claims.append(relocation_claim(f"{a}->{b} ({kind})", pair_setting(job, a, b), m))


def support_sets(job: MainJob) -> None:
    """Sectors and the support set of dense-s0, and type-1 maps fitted on a support set."""
    from analysis.claims import density_claim, not_measured, support_claims
    from jobs import steps

    source = str(job.encodings["dense-s0"].path)
    trained_as = job.settings["dense-s0"]
    if job.stats["dense-s0"].stats["inactive"].all():  # e.g. a 1-epoch smoke run
        job.step("note: no variable of dense-s0 is active: no sectors, support set or "
                 "support-set fit")
        job.claims.append(not_measured("density_uneven", "dense-s0", trained_as,
                                       "no active variable, so no sectors"))
        return
    run_id, s = steps.sectors(job.recorder, source, parent_run_id=job.parent_run_id)
    m = s.metrics
    job.step(f"sectors dense-s0: k={s.k} ({s.ordering}), {m['sectors/nonempty']} of "
             f"{2 ** s.k} non-empty")
    job.summary.append({"step": "sectors dense-s0", "run_id": run_id,
                        **{k.split("/")[1]: v for k, v in m.items()}})
    if s.note:
        job.step(f"warning: {s.note}")
    job.claims.append(density_claim("dense-s0", trained_as, s.counts, s.density))
    run_id, chosen = steps.support_set(job.recorder, source, parent_run_id=job.parent_run_id)
    job.summary.append({"step": "support set dense-s0", "run_id": run_id,
                        **{k.split("/")[1]: v for k, v in chosen.metrics.items()}})
    # The authors' map first (its size sweep is the headline curve), then plain OLS, whose
    # fits on few rows are rank-deficient (their ranks are logged), and the isometries.
    run_id, out = steps.relocate(
        job.recorder, source, str(job.encodings["dense-s1"].path), fit="support",
        estimators=["ridge_authors", "ols", "procrustes", "lstsq_ortho"],
        name="relocate support dense-s0->dense-s1", parent_run_id=job.parent_run_id)
    m = out.metrics
    own = m["relocation/M_target_own"]
    job.step(f"support-set relocation: M={m['relocation/M']:.4f} (support) vs "
             f"{m['relocation/M_ridge_authors_full']:.4f} (all rows), own {own:.4f}")
    if out.rank_deficient:
        job.step(f"note: rank-deficient support fits (rank logged): "
                 f"{', '.join(out.rank_deficient)}")
    job.summary.append({"step": "relocate support dense-s0->dense-s1", "run_id": run_id,
                        "M": m["relocation/M"], "M_full": m["relocation/M_ridge_authors_full"],
                        "M_ols": m["relocation/M_ols"], "M_target_own": own})
    job.claims += support_claims("dense-s0->dense-s1", pair_setting(job, "dense-s0", "dense-s1"),
                                 chosen.metrics, m, "ridge_authors")


def generator_and_type3(job: MainJob) -> None:
    """The seed's type 3: a DCGAN and its recoder, trained at a reduced size (the job's time
    budget; the full size is jobs/configs/fmnist_dcgan.yaml); the test split inverted
    (recoder + gradient steps); dense-s0 relocated onto the DCGAN's codes and back."""
    from analysis.claims import setting
    from latentatlas.config import load_config
    from latentatlas.encode.pipeline import encode
    from latentatlas.inversion import Refinement

    a = job.args
    data = [f"data.name={job.dataset}", f"data.limit={min(a.limit or GAN_IMAGES, GAN_IMAGES)}",
            *([f"data.path={a.data_path}"] if a.data_path else [])]
    epochs = a.epochs or GAN_EPOCHS
    cfg = load_config(CONFIGS / "fmnist_dcgan.yaml",
                      [*data, f"train.epochs={epochs}", "name=main-dcgan"])
    job.step(f"training dcgan: noise {cfg.model.latent_dim}, {cfg.train.epochs} epochs on "
             f"{cfg.data.limit} training images (reduced to fit the job; full size: "
             "jobs/configs/fmnist_dcgan.yaml)")
    gan = job.train(cfg)
    g = gan.metrics
    job.step(f"trained dcgan: D(real)={g['gan/d_real']:.3f} D(fake)={g['gan/d_fake']:.3f} "
             f"run {gan.run_id}")
    for note in gan.notes:
        job.step(f"warning: {note}")
    rec_cfg = load_config(CONFIGS / "fmnist_recoder.yaml", [
        f"invert.generator={gan.model_uri}", f"train.epochs={a.epochs or RECODER_EPOCHS}",
        f"invert.steps_per_epoch={RECODER_STEPS}", "name=main-recoder"])
    job.step(f"training its recoder: {rec_cfg.train.epochs} x {RECODER_STEPS} steps of "
             f"{rec_cfg.train.batch_size} generated pairs")
    recoder = job.train(rec_cfg)
    r = recoder.metrics
    job.step(f"trained recoder: held-out latent mse {r['inversion/latent_mse']:.4f}, "
             f"regeneration mse {r['inversion/pixel_mse']:.4f} (generated images)")
    with job.data_lock:
        enc = encode(gan.model_uri, job.dataset, "test", job.encoding_root / "dcgan",
                     limit=a.limit, data_path=a.data_path, tracking_uri=a.tracking_uri,
                     recoder_uri=recoder.model_uri, refine=Refinement(REFINE_STEPS))
    real = float(enc.arrays(["inversion_mse"])["inversion_mse"].mean())
    job.step(f"inverted the test split: regeneration mse {real:.4f} (recoder + "
             f"{REFINE_STEPS} gradient steps) vs {r['inversion/pixel_mse']:.4f} on its own "
             "samples (recoder alone)")
    job.models["dcgan"], job.models["recoder"], job.encodings["dcgan"] = gan, recoder, enc
    job.settings["dcgan"] = setting(job.dataset, "dcgan", "non-saturating GAN loss", epochs)
    job.summary += [
        {"step": "train dcgan", "run_id": gan.run_id,
         **{k.split("/")[1]: v for k, v in g.items() if k.startswith("gan/")}},
        {"step": "train recoder", "run_id": recoder.run_id,
         **{k.split("/")[1]: v for k, v in r.items() if k.startswith("inversion/")}},
        {"step": "invert test split", "run_id": gan.run_id, "refine_steps": REFINE_STEPS,
         "real_pixel_mse": real}]
    relocation(job, "type 3", "dense-s0", "dcgan")
    relocation(job, "type 3", "dcgan", "dense-s0")


def generative_ranges(job: MainJob) -> None:
    """The generative range of the DCGAN (recoder + gradient steps) and of dense-s0 (its own
    encoder) side by side, both in dense-s0's latent space: the seed's claim is that GANs
    avoid rare regions."""
    from analysis.claims import not_measured, range_claim
    from jobs import steps
    from latentatlas.inversion import Refinement

    a = job.args
    if job.stats["dense-s0"].stats["inactive"].all():
        job.step("note: no variable of dense-s0 is active: no sectors, so no generative range")
        job.claims.append(not_measured("generative_range", "dcgan", job.settings["dcgan"],
                                       "no active variable in the reference space"))
        return
    reference = str(job.encodings["dense-s0"].path)
    measured = {}
    for label, model, recoder in (("dcgan", job.models["dcgan"], job.models["recoder"]),
                                  ("dense-s0", job.models["dense-s0"], None)):
        with job.data_lock:
            run_id, r = steps.generative_range(
                job.recorder, model.model_uri, (job.dataset, "test"), reference,
                recoder=recoder and recoder.model_uri,
                refine=Refinement(REFINE_STEPS) if recoder else None, data_path=a.data_path,
                limit=a.limit, samples=RANGE_SAMPLES, parent_run_id=job.parent_run_id,
                name=f"range {label}")
        m = r.metrics
        job.step(f"range {label}: regeneration mse {m['range/mse_generated']:.4f} own samples, "
                 f"{m['range/mse_real']:.4f} real, {m['range/mse_support']:.4f} support set; "
                 f"{m['range/coverage']:.0%} of real images reached, "
                 f"{int(m['range/missed_sectors'])} sectors missed")
        job.summary.append({"step": f"range {label}", "run_id": run_id,
                            **{k.split("/")[1]: v for k, v in m.items()}})
        measured[label] = m
    job.claims.append(range_claim("dcgan vs dense-s0 (in dense-s0's space)",
                                  pair_setting(job, "dcgan", "dense-s0"), measured["dcgan"],
                                  measured["dense-s0"]))


def second_stage(job: MainJob):
    """Dai & Wipf's second stage on dense-s0's codes of the training split."""
    from latentatlas.config import load_config
    from latentatlas.encode.pipeline import encode

    a = job.args
    with job.data_lock:
        codes = encode(job.models["dense-s0"].model_uri, job.dataset, "train",
                       job.encoding_root / "dense-s0-train", limit=a.limit,
                       data_path=a.data_path, tracking_uri=a.tracking_uri)
    cfg = load_config(CONFIGS / "fmnist_second_stage.yaml", [
        f"second_stage.encoding={codes.path}", f"model.width={STAGE2_WIDTH}",
        f"train.epochs={a.epochs or STAGE2_EPOCHS}", "name=main-second-stage"])
    job.step(f"training a second stage on dense-s0's {codes.meta.rows} training codes: width "
             f"{STAGE2_WIDTH}, {cfg.train.epochs} epochs (reduced; the authors: 2048-4096)")
    out = job.train(cfg)
    job.step(f"trained second stage: val latent mse {out.metrics['val/mse']:.4f}, "
             f"val/kl {out.metrics['val/kl']:.3f}")
    job.summary.append({"step": "train second stage", "run_id": out.run_id,
                        "val mse(z~q)": out.metrics["val/mse"], "val/kl": out.metrics["val/kl"]})
    return out


def sample_quality(job: MainJob) -> None:
    """FID / KID / variance loss of the dense VAEs' samples in the job's classifier features:
    prior and GMM sampling for both, and dense-s0's second stage with and without
    renormalisation."""
    from analysis.claims import second_stage_claims
    from jobs import steps

    a = job.args
    stage2 = second_stage(job)
    name, _, version = job.models["classifier"].registered.removeprefix("models:/").partition("/")
    extractor = f"{name}:{version}"  # pinned: the version this job trained
    for label, stage in (("dense-s0", stage2.model_uri), ("dense-s1", None)):
        with job.data_lock:
            run_id, q = steps.sample_quality(
                job.recorder, job.models[label].model_uri, (job.dataset, "test"),
                extractors=[extractor], second_stage=stage, gmm_components=GMM_COMPONENTS,
                samples=FID_SAMPLES, data_path=a.data_path, limit=a.limit,
                parent_run_id=job.parent_run_id, name=f"fid {label}")
        (key, scores), = q.scores.items()
        fids = {s: v["fid"] for s, v in scores.items()}
        job.step(f"FID {label} ({key}, {q.samples} samples): "
                 + ", ".join(f"{s} {v:.2f}" for s, v in fids.items()))
        job.summary.append({"step": f"fid {label}", "run_id": run_id,
                            **{f"fid_{s}": v for s, v in fids.items()},
                            "delta_var_gen": scores["prior"]["delta_var_gen"]})
        if stage:
            m = q.metrics
            job.step(f"second stage on dense-s0's test codes: delta_var "
                     f"{m['second_stage/delta_var']:.4f} vs mse {m['second_stage/mse']:.4f} (the "
                     "authors renormalise only above 0.25 x mse: "
                     f"{'yes' if m['second_stage/authors_renormalise'] else 'no'})")
            job.claims += second_stage_claims(label, job.settings[label], key, fids)


def sampling_pictures(job: MainJob) -> None:
    """The seed's pictures of how posterior sampling shapes a latent space (3-D VAEs with
    and without sampling, a 2-D VAE traced through its first epoch)."""
    from analysis.claims import sampling_claim, setting
    from jobs import steps

    a = job.args
    job.step("regularisation: 3-D VAEs with and without sampling, 2-D first-epoch trace")
    epochs = a.epochs or 3
    run_id, m, _ = steps.regularisation(job.recorder, job.dataset, data_path=a.data_path,
                                        limit=a.limit, epochs=epochs,
                                        parent_run_id=job.parent_run_id)
    with_kl, without_kl = (m["regularity/aggregate_kl_sampling"],
                           m["regularity/aggregate_kl_no_sampling"])
    job.step(f"regularisation: aggregate KL from N(0, I) {with_kl:.3f} with sampling, "
             f"{without_kl:.3f} without")
    job.summary.append({"step": "regularisation", "run_id": run_id,
                        **{k.split("/")[1]: v for k, v in m.items()}})
    job.claims.append(sampling_claim("dense 3-D", setting(
        job.dataset, "dense 784-256-64-16-3", "balanced", epochs), with_kl, without_kl))


def translators(job: MainJob) -> None:
    """Every map family on every anchor choice for the 12 ordered pairs of the job's four
    encodings (two dense VAEs, the conv VAE, the DCGAN), reduced to fit the job."""
    from analysis.claims import translator_claims
    from jobs import steps

    labels = ["dense-s0", "dense-s1", "conv-s0", "dcgan"]
    job.step(f"translator study over {', '.join(labels)}: budgets "
             f"{', '.join(f'{b:g}d' for b in TRANSLATE_BUDGETS)} x {TRANSLATE_REPEATS} repeats, "
             f"{TRANSLATE_EVAL_ROWS} held-out rows per pair (reduced; `latentatlas "
             "translate-study` runs the full grid)")
    run_id, out = steps.translate_study(
        job.recorder, [str(job.encodings[label].path) for label in labels], labels=labels,
        budgets=TRANSLATE_BUDGETS, repeats=TRANSLATE_REPEATS, eval_rows=TRANSLATE_EVAL_ROWS,
        parent_run_id=job.parent_run_id)
    m = out.metrics
    support = m.get("translate/ratio/ridge_authors/support/1d", float("nan"))
    job.step(f"translators: ridge_authors M/M_own {m['translate/ratio/ridge_authors/all/all']:.2f}"
             f" (all rows), {support:.2f} (support, d); support beats random in "
             f"{m.get('translate/support_beats_random', float('nan')):.0%} of comparisons; "
             f"CKA {m['translate/cka_mean']:.2f}, SVCCA {m['translate/svcca_mean']:.2f} (mean)")
    for note in out.notes:
        job.step(f"note: {note}")
    job.summary.append({"step": "translator study", "run_id": run_id,
                        **{k.removeprefix("translate/"): v for k, v in m.items()
                           if "/ratio/" not in k}})
    job.claims += translator_claims("12 ordered pairs (translator study)", "; ".join(
        dict.fromkeys(job.settings[label] for label in labels)), m, "ridge_authors", "1d")


STEPS = [pipeline, generator_and_type3, generative_ranges, translators, sample_quality,
         sampling_pictures]


def print_claims(claims: list[dict]) -> None:
    """One short block per claim: prose in table cells made a 400-character-wide table."""
    from analysis.claims import FAILS, HOLDS, NOT_COMPARABLE

    print("\n== the seed's claims beside what was measured ==")
    for c in claims:
        print(f"- {c['claim']} [{c['model']}]: {c['verdict'].upper()}\n"
              f"    measured: {c['measured']}\n"
              f"              ({c['setting']})\n"
              f"    seed:     {c['seed']} ({c['seed setting']})\n"
              f"    rule:     {c['rule']}")
    counts = {v: sum(c["verdict"] == v for c in claims) for v in (HOLDS, FAILS, NOT_COMPARABLE)}
    print("verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()))


def run(args) -> int:
    from latentatlas import runtime
    from latentatlas.record import Record
    from latentatlas.tracking import Recorder

    recorder = Recorder(args.tracking_uri, args.experiment)
    runtime.init_ray(args.ray_address)
    with recorder.run("main", "main") as parent_run_id:
        job = MainJob(args, pick_dataset(args.dataset, args.data_path), recorder,
                      parent_run_id)
        job.step(f"dataset {job.dataset}; MLflow {recorder.uri}; parent run {parent_run_id}")
        if not runtime.verbose():
            job.step(f"Ray's own messages go to {runtime.RAY_LOG} (--verbose prints them)")
        for step in STEPS:
            step(job)
        # The terminal gets one block per step; the run keeps every number in one table.
        recorder.write(parent_run_id, Record("main", "main", tables={
            "summary.json": {c: [row.get(c) for row in job.summary]
                             for c in dict.fromkeys(k for row in job.summary for k in row)}}))
    print_steps(job.summary, title="main job")
    print_claims(job.claims)
    minutes = job.step.seconds / 60
    print(f"\nMLflow run id: {job.parent_run_id}  ({minutes:.1f} min)")
    if recorder.uri.startswith("sqlite:"):
        print(f"browse: mlflow ui --backend-store-uri {recorder.uri}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas run", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--dataset", default=None,
                   help="dataset name (default: fashion-mnist, else digits)")
    p.add_argument("--data-path", default=None,
                   help="folder of the dataset's files (default: the dataset's own)")
    p.add_argument("--limit", type=int, default=None,
                   help="use the first N images of each split (smoke runs)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for every training")
    args = p.parse_args(argv)
    return guarded(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
