"""The main job's engine behind `latentatlas run` (jobs/run.py): the declared steps, what each
kind of step runs, and the run that holds them. Imported once the command line is parsed."""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from jobs.graph import (
    JobSpec,
    StepSpec,
    load_job,
    rerun,
    run_graph,
    settings,
    upstream,
    with_overrides,
    with_settings,
)
from latentatlas.config import Strict, validate
from latentatlas.report import Progress, print_steps

CONFIGS = Path(__file__).resolve().parent / "configs"
MAIN = CONFIGS / "main.yaml"
STEPS_FILE = "steps.json"  # the parent run's outputs of every step: what --resume reads


@dataclass
class Context:
    """What every step reads: the job's options, its parent run, its progress lines."""

    args: argparse.Namespace
    dataset: str
    recorder: object
    """Latentatlas.tracking.Recorder."""
    parent_run_id: str
    pixels: int
    """Values per image of the dataset (784 for 28x28 grayscale)"""
    job: str = "main"
    """The job file's stem: the parent run's name."""
    say: Progress = field(init=False)
    """Progress lines prefixed with the job's name."""

    def __post_init__(self):
        self.say = Progress(self.job)

    @property
    def encoding_root(self) -> Path:
        return Path("encodings") / f"{self.job}-{self.parent_run_id[:8]}"


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


def val_mse_history(recorder, run_id: str) -> list[float]:
    """The training's validation MSE after each epoch, as its run logged it."""
    history = recorder.client.get_metric_history(run_id, "val/mse")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def plain(value):
    """JSON-able: numpy numbers and arrays as Python numbers and lists."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- trainings ---------------------------------------------------------------------------

def train_raw(name: str, step: StepSpec) -> dict:
    from latentatlas.config import read_yaml

    if not step.config:
        raise_user(f"{step.where(name)}: a train step needs config (a YAML file of jobs/configs)")
    return settings(step, read_yaml(CONFIGS / step.config))


def job_options(job: JobSpec, args, dataset: str) -> JobSpec:
    """The job's own options as keys of its steps (before `--set`, which wins): every
    training that reads images reads the job's dataset (a step's own data.limit stays when
    lower), --epochs sets every training's epochs, the regularisation's and the sparsity
    experiment's training before the noise."""
    from latentatlas.config import FAMILIES, model_tag

    extra: dict[str, dict] = {}
    for name, step in job.steps.items():
        keys = extra.setdefault(name, {})
        if step.kind in ("regularisation", "sparsity") and args.epochs:
            keys["epochs"] = args.epochs
        if step.kind != "train":
            continue
        raw = train_raw(name, step)
        if FAMILIES.get(model_tag(raw.get("model", {}))) in ("vae", "gan", "classifier"):
            keys["data.name"] = dataset
            if args.data_path:
                keys["data.path"] = args.data_path
            if args.limit:
                own = (raw.get("data") or {}).get("limit")
                keys["data.limit"] = min(args.limit, own or args.limit)
        if args.epochs:
            keys["train.epochs"] = args.epochs
    return with_settings(job, extra)


def training_config(name: str, step: StepSpec, inputs: dict):
    """The step's experiment config: its file, its `set` keys, and its inputs' addresses at
    the keys they name (e.g. invert.generator)."""
    from latentatlas.config import set_path

    raw = train_raw(name, step)
    for key, out in inputs.items():
        raw = set_path(raw, key.split("."), out["address"])
    return validate(raw, step.where(name))


def raise_user(message: str):
    from latentatlas.errors import UserError

    raise UserError(message)


def train_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from analysis.claims import architecture, training_setting
    from latentatlas.train.runner import train

    cfg = training_config(name, step, inputs)
    reduced = f" ({step.reduced})" if step.reduced else ""
    epochs = cfg.train.epochs
    family = cfg.family
    if family == "vae":
        ctx.say(f"training {name}: {cfg.model.name}, latent {cfg.model.latent_dim}, "
                f"{cfg.kl.policy}, {epochs} epochs{reduced}")
    elif family == "classifier":
        ctx.say(f"training the FID classifier: {epochs} epochs{reduced}")
    elif family == "gan":
        ctx.say(f"training {name}: noise {cfg.model.latent_dim}, {epochs} epochs on "
                f"{cfg.data.limit or 'all'} training images{reduced}")
    elif family == "recoder":
        ctx.say(f"training its recoder: {epochs} x {cfg.invert.steps_per_epoch} steps of "
                f"{cfg.train.batch_size} generated pairs{reduced}")
    else:
        (codes,) = inputs.values()
        ctx.say(f"training a second stage on {codes['label']}'s {codes['rows']} training "
                f"codes: width {cfg.model.width}, {epochs} epochs{reduced}")
    out = train(cfg, tracking_uri=ctx.args.tracking_uri, experiment=ctx.args.experiment,
                parent_run_id=ctx.parent_run_id)
    m = out.metrics
    row: dict = {"step": f"train {name}", "run_id": out.run_id}
    if family == "vae":
        ctx.say(f"trained {name}: val/mse={m['val/mse']:.4f} run {out.run_id}")
        row |= {"val mse(z~q)": m.get("val/mse"), "val/kl": m.get("val/kl")}
        trained_as = training_setting(ctx.dataset, architecture(cfg.model, ctx.pixels),
                                      cfg.kl.policy, epochs,
                                      val_mse_history(ctx.recorder, out.run_id), out.run_id)
    elif family == "classifier":
        ctx.say(f"trained classifier: val accuracy {m['val/accuracy']:.4f}, "
                f"registered {out.registered}")
        row |= {"val_accuracy": m["val/accuracy"], "registered": out.registered}
        trained_as = None
    elif family == "gan":
        ctx.say(f"trained {name}: D(real)={m['gan/d_real']:.3f} D(fake)={m['gan/d_fake']:.3f} "
                f"run {out.run_id}")
        row |= {k.split("/")[1]: v for k, v in m.items() if k.startswith("gan/")}
        trained_as = training_setting(ctx.dataset, architecture(cfg.model, ctx.pixels),
                                      "non-saturating GAN loss", epochs, None, out.run_id)
    elif family == "recoder":
        ctx.say(f"trained recoder: held-out latent mse {m['inversion/latent_mse']:.4f}, "
                f"regeneration mse {m['inversion/pixel_mse']:.4f} (generated images)")
        row |= {k.split("/")[1]: v for k, v in m.items() if k.startswith("inversion/")}
        trained_as = None
    else:
        ctx.say(f"trained second stage: val latent mse {m['val/mse']:.4f}, "
                f"val/kl {m['val/kl']:.3f}")
        row = {"step": "train second stage", "run_id": out.run_id,
               "val mse(z~q)": m["val/mse"], "val/kl": m["val/kl"]}
        trained_as = None
    for note in out.notes:
        ctx.say(f"warning: {note}")
    return {"label": name, "address": out.model_uri, "run_id": out.run_id, "metrics": m,
            "registered": out.registered, "family": family, "model_name": cfg.model.name,
            "setting": trained_as, "summary": [row], "claims": []}


def train_cpus(name: str, step: StepSpec) -> float:
    """What a training asks of the cluster: CPUs per worker x workers (unset: a whole node
    for a lone CPU training)."""
    from latentatlas.train.runner import worker_cpus

    placeholders = {key: {"address": f"<output of {up}>"} for key, up in step.inputs.items()}
    cfg = training_config(name, step, placeholders)
    return worker_cpus(cfg.train) * cfg.train.num_workers


# ---- analyses ----------------------------------------------------------------------------

class EncodeOptions(Strict):
    split: str = "test"
    """The dataset split encoded."""
    actors: int | None = Field(default=None, gt=0)
    """Ray Data actors (unset: in the job's process when small, else the cluster's CPUs)."""
    refine_steps: int = Field(default=0, ge=0)
    """Gradient steps after a generator's recoder."""


class StatsOptions(Strict):
    gain_rows: int | None = Field(default=None, gt=0)
    """Information gain over the first N rows only (unset: all)."""
    actors: int | None = Field(default=None, gt=0)
    """Ray Data actors (unset: as encode)."""


class SectorOptions(Strict):
    k: int | None = Field(default=None, gt=0)
    """Variables that define the sectors (unset: the verb's, reduced to the active ones)."""
    threshold: float | None = Field(default=None, gt=0)
    """|z| below it lies outside every sector (unset: the verb's)."""


class SupportSetOptions(SectorOptions):
    size: int | None = Field(default=None, gt=1)
    """Unset: the latent dimension."""


class RelocateOptions(Strict):
    relocation: str | None = None
    """The seed's type, said in the report ("type 1")"""
    fit: Literal["all", "support", "generated", "random"] | None = None
    """Unset: the authors' fit (generated pairs with a generator side, else the support set)"""
    pairs: int | None = Field(default=None, gt=0)
    """Generated pairs (unset: the verb's)"""
    rows: int | None = Field(default=None, gt=0)
    """Random rows (unset: the latent dimension)"""
    estimators: list[str] | None = None
    """The first is the headline (default ridge_authors)"""
    claims: list[Literal["relocation", "support"]] = ["relocation"]
    """The seed's claims this relocation is judged for."""

    @model_validator(mode="after")
    def rows_need_a_random_fit(self):
        if self.rows is not None and self.fit != "random":
            raise ValueError("rows (the number of random rows) needs fit: random")
        return self


class RangeOptions(Strict):
    refine_steps: int = Field(default=10, ge=0)
    """Without a recoder: the gradient ascent's."""
    samples: int = Field(default=2000, gt=1)
    """The generator's own samples (the reach threshold's reference)."""
    real_images: int | None = Field(default=None, gt=0)
    """The first N test images (+ support)"""


class TranslateOptions(Strict):
    budgets: list[float] | None = None
    """Anchor rows as multiples of the latent dimension (unset: the verb's)."""
    repeats: int = Field(default=3, gt=0)
    """Anchor draws per (choice, budget)."""
    eval_rows: int | None = Field(default=None, gt=0)
    """Score on the first N held-out rows (unset: all)."""
    family: str = "ridge_authors"
    """The claims' map family and budget."""
    budget: str = "1d"
    """The budget the claims read (e.g. 1d)."""


class FidOptions(Strict):
    samples: int = Field(default=10000, gt=1)
    """Real images scored, and samples per sampler."""
    gmm_components: int = Field(default=100, gt=0)
    """Components of the GMM sampler."""


class RegularisationOptions(Strict):
    epochs: int | None = Field(default=None, gt=0)
    """Of the 3-D models (unset: the verb's)"""


class SparsityOptions(Strict):
    """The verb's options (analysis.sparsity.SparsityPlan), unset: the verb's."""
    limit: int | None = Field(default=None, gt=0)
    """Items of each split (the job's when lower)"""
    epochs: int | None = Field(default=None, gt=0)
    """Training before the noise."""
    every: int | None = Field(default=None, gt=0)
    """Minibatches between two points of the per-variable curves."""
    probe: int | None = Field(default=None, gt=0)
    """Test images every measurement runs on."""
    noise_step: float | None = Field(default=None, gt=0)
    """Noise std added per increment."""
    max_increments: int | None = Field(default=None, gt=0)
    """Noise increments, at most, before the variable collapses."""
    hold_epochs: int | None = Field(default=None, gt=0)
    """Epochs at the last noise, at most, waiting for the collapse."""
    revival_epochs: int | None = Field(default=None, gt=0)
    """Epochs without noise, at most, waiting for the revival."""
    variable: int | None = Field(default=None, ge=0)
    """The variable to damage (unset: the least informative active one whose gain exceeds its
    KL)."""
    lr: float | None = Field(default=None, gt=0)
    """Adam's learning rate."""


OPTIONS = {"encode": EncodeOptions, "stats": StatsOptions, "sectors": SectorOptions,
           "support-set": SupportSetOptions, "relocate": RelocateOptions, "range": RangeOptions,
           "translate-study": TranslateOptions, "fid": FidOptions,
           "regularisation": RegularisationOptions, "sparsity": SparsityOptions}
# role -> required; the roles each kind reads
INPUTS = {"encode": {"model": True, "recoder": False}, "stats": {"encoding": True},
          "sectors": {"encoding": True, "stats": True},
          "support-set": {"encoding": True, "sectors": True},
          "relocate": {"source": True, "target": True, "support": False},
          "range": {"generator": True, "recoder": False, "vae": False, "reference": True,
                    "stats": True, "compare": False},
          "translate-study": {"encodings": True},
          "fid": {"model": True, "classifier": True, "second_stage": False},
          "regularisation": {"classifier": False}, "sparsity": {}}


def options(name: str, step: StepSpec):
    if step.config:
        raise_user(f"{step.where(name)}.config: a {step.kind} step takes its keys in `set`")
    return validate(settings(step), step.where(name), OPTIONS[step.kind])


def check_inputs(name: str, step: StepSpec) -> None:
    if step.kind == "train":
        return
    roles = INPUTS[step.kind]
    for role in step.inputs:
        if role not in roles:
            raise_user(f"{step.where(name)}.inputs.{role}: a {step.kind} step reads "
                       f"{', '.join(roles) or 'no inputs'}")
    for role, required in roles.items():
        if required and role not in step.inputs:
            raise_user(f"{step.where(name)}.inputs: a {step.kind} step needs {role}")
    if step.kind == "range":  # its claim reads the VAE beside a recoder, else the recoder's run
        role, what = (("vae", "with a recoder needs vae (the VAE measured beside it)")
                      if "recoder" in step.inputs else
                      ("compare", "without a recoder needs compare (the range step whose "
                                  "recoder its gradient ascent is compared with)"))
        if role not in step.inputs:
            raise_user(f"{step.where(name)}.inputs: a range step {what}")
        if "recoder" not in step.inputs:
            if "vae" in step.inputs:
                raise_user(f"{step.where(name)}.inputs.vae: a range step without a recoder "
                           "measures gradient ascent alone; the VAE is measured beside the "
                           "recoder's range step")
            if not options(name, step).refine_steps:
                raise_user(f"{step.where(name)}.set.refine_steps: a range step without a "
                           "recoder inverts by gradient steps alone; it needs refine_steps > 0")


def encode_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from latentatlas.encode.pipeline import encode
    from latentatlas.inversion import NO_REFINEMENT, Refinement

    o, a = options(name, step), ctx.args
    model, recoder = inputs["model"], inputs.get("recoder")
    folder = model["label"] if o.split == "test" else f"{model['label']}-{o.split}"
    refine = Refinement(o.refine_steps) if o.refine_steps else NO_REFINEMENT
    enc = encode(model["address"], ctx.dataset, o.split, ctx.encoding_root / folder,
                 limit=a.limit, data_path=a.data_path, tracking_uri=a.tracking_uri,
                 actors=o.actors, recoder_uri=recoder and recoder["address"], refine=refine)
    out = {"label": model["label"], "address": str(enc.path), "setting": model["setting"],
           "model_name": model["model_name"], "rows": enc.meta.rows,
           "latent_dim": enc.latent_dim, "summary": [], "claims": []}
    if recoder:
        real = float(enc.arrays(["inversion_mse"])["inversion_mse"].mean())
        own = recoder["metrics"]["inversion/pixel_mse"]
        ctx.say(f"inverted the {o.split} split: regeneration mse {real:.4f} (recoder + "
                f"{o.refine_steps} gradient steps) vs {own:.4f} on its own samples (recoder "
                "alone)")
        out["summary"] = [{"step": f"invert {o.split} split", "run_id": model["run_id"],
                           "refine_steps": o.refine_steps, "real_pixel_mse": real}]
    return out


def stats_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from analysis.claims import stats_claims
    from jobs import steps

    o, enc = options(name, step), inputs["encoding"]
    run_id, measured = steps.stats(ctx.recorder, enc["address"], actors=o.actors,
                                   gain_rows=o.gain_rows)
    m, label = measured.metrics, enc["label"]
    ctx.say(f"stats {label}: {m['latent/inactive']} of {enc['latent_dim']} inactive, "
            f"delta_var {m['variance_loss/delta_var_recon']:.4f} vs "
            f"mse(z=mu) {m['variance_loss/mse_recon']:.4f}")
    return {"run_id": run_id, "metrics": m, "label": label,
            "inactive_all": bool(measured.stats["inactive"].all()),
            "summary": [{"step": f"stats {label}", "run_id": run_id,
                         **{k.split("/")[1]: v for k, v in m.items()}}],
            "claims": stats_claims(label, enc["setting"], m, run_id,
                                   conv=enc["model_name"] != "dense_vae")}


def sector_kwargs(o: SectorOptions) -> dict:
    return {k: v for k, v in (("k", o.k), ("threshold", o.threshold)) if v is not None}


def sectors_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from analysis.claims import density_claim, not_measured
    from jobs import steps

    o, enc = options(name, step), inputs["encoding"]
    label = enc["label"]
    if inputs["stats"]["inactive_all"]:  # e.g. a 1-epoch smoke run
        ctx.say(f"note: no variable of {label} is active: no sectors, support set or "
                "support-set fit")
        return {"skipped": "no active variable", "summary": [], "claims": [
            not_measured("density_uneven", label, [enc["setting"]],
                         "no active variable, so no sectors")]}
    run_id, s = steps.sectors(ctx.recorder, enc["address"], parent_run_id=ctx.parent_run_id,
                              **sector_kwargs(o))
    m = s.metrics
    ctx.say(f"sectors {label}: k={s.k} ({s.ordering}), {m['sectors/nonempty']} of "
            f"{2 ** s.k} non-empty")
    if s.note:
        ctx.say(f"warning: {s.note}")
    return {"run_id": run_id, "metrics": m,
            "summary": [{"step": f"sectors {label}", "run_id": run_id,
                         **{k.split("/")[1]: v for k, v in m.items()}}],
            "claims": [density_claim(label, enc["setting"], m, run_id)]}


def support_set_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from jobs import steps

    o, enc = options(name, step), inputs["encoding"]
    if inputs["sectors"].get("skipped"):
        return {"skipped": inputs["sectors"]["skipped"], "summary": [], "claims": []}
    run_id, chosen = steps.support_set(ctx.recorder, enc["address"], size=o.size,
                                       parent_run_id=ctx.parent_run_id, **sector_kwargs(o))
    return {"run_id": run_id, "metrics": chosen.metrics,
            "summary": [{"step": f"support set {enc['label']}", "run_id": run_id,
                         **{k.split("/")[1]: v for k, v in chosen.metrics.items()}}],
            "claims": []}


def relocate_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from analysis.claims import not_measured, relocation_claim, support_claims
    from jobs import steps

    o = options(name, step)
    src, tgt, support = inputs["source"], inputs["target"], inputs.get("support")
    a, b = src["label"], tgt["label"]
    on = [src["setting"], tgt["setting"]]
    label = f"{a}->{b} ({o.relocation})" if o.relocation else f"{a}->{b}"
    if support is not None and support.get("skipped"):
        ctx.say(f"note: no support set of {a} ({support['skipped']}): no relocation {label}")
        return {"skipped": support["skipped"], "summary": [], "claims": [
            not_measured(key, label, on, f"no support set of {a}: {support['skipped']}")
            for key in ("relocation", *(("support_far_apart", "support_suffices")
                                         if "support" in o.claims else ()))]}
    extra = {k: v for k, v in (("estimators", o.estimators), ("pairs", o.pairs),
                               ("random_rows", o.rows)) if v}
    run_id, out = steps.relocate(ctx.recorder, src["address"], tgt["address"], fit=o.fit,
                                 name=f"relocate {a}->{b}",
                                 parent_run_id=ctx.parent_run_id, **extra)
    m, estimator = out.metrics, out.estimators[0]
    rows = int(m["relocation/fit_rows"])
    headline = (f"{estimator} on {rows} generated pairs" if out.fit == "generated"
                else f"{estimator} on {rows} {out.fit} rows")
    full = m[f"relocation/M_{estimator}_full"]
    ctx.say(f"relocation {o.relocation or ''} {a}->{b}: {headline}: M={m['relocation/M']:.4f}, "
            f"own {m['relocation/M_target_own']:.4f}; on all fit rows {estimator} "
            f"M={full:.4f}, OLS M={m['relocation/M_ols_full']:.4f}")
    if out.rank_deficient:
        ctx.say(f"note: rank-deficient fits (rank logged): {', '.join(out.rank_deficient)}")
    claims = [relocation_claim(label, on, m, run_id, headline, authors_way(out))]
    if "support" in o.claims:
        if out.fit != "support" or support is None:
            raise_user(f"{step.where(name)}.claims: support claims need fit support and a support "
                       "input")
        claims += support_claims(f"{a}->{b}", on, support["metrics"], support["run_id"], m,
                                 run_id, estimator)
    row = {"step": f"relocate {a}->{b}", "run_id": run_id, "headline": headline,
           **{k.split("/")[1]: m[k] for k in ("relocation/R", "relocation/L", "relocation/M",
                                              "relocation/M_target_own",
                                              "relocation/M_ols_full")},
           "M_full": full}
    return {"run_id": run_id, "metrics": m, "summary": [row], "claims": claims}


def authors_way(out) -> list[str]:
    """How a relocation's headline differs from the authors' fit (their estimator, their fit
    for the pair's kinds, their regulariser): each keeps the relocation verdict back."""
    from analysis.linear_maps import authors_l2
    from analysis.studies.maps import default_fit

    kinds = out.source.meta.family, out.target.meta.family
    estimator, fit, l2 = out.estimators[0], default_fit(*kinds), authors_l2(*kinds)
    return [text for wrong, text in (
        (estimator != "ridge_authors", f"headline {estimator}, not the authors' ridge_authors"),
        (out.fit != fit, f"fitted on {out.fit} rows, the authors' fit here: {fit}"),
        (estimator == "ridge_authors" and out.params.get("l2") != l2,
         f"L2 {out.params.get('l2')}, the authors' {l2}")) if wrong]


def range_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    """With a recoder: the GAN (recoder only the headline, refined beside) and a VAE as a
    generator side by side, judged by the range claim. Without: gradient ascent alone from
    the mean code (the seed's double check), compared with the `compare` step's recoder and
    judged by the gradient-ascent claim."""
    from analysis.claims import ascent_claim, not_measured, range_claim
    from analysis.generative_range import inversions, regeneration
    from jobs import steps
    from latentatlas.inversion import Refinement

    o, a = options(name, step), ctx.args
    gan, vae, reference = inputs["generator"], inputs.get("vae"), inputs["reference"]
    recoder, compare = inputs.get("recoder"), inputs.get("compare")
    key = "generative_range" if recoder else "range_ascent"
    if inputs["stats"]["inactive_all"]:
        ctx.say(f"note: no variable of {reference['label']} is active: no sectors, so no "
                "generative range")
        return {"skipped": "no active variable", "summary": [], "claims": [
            not_measured(key, gan["label"], [gan["setting"], reference["setting"]],
                         "no active variable in the reference space")]}
    if compare is not None and "runs" not in compare:
        raise_user(f"{step.where(name)}: the kept output of its compare step predates "
                   "range-ascent; rerun with --from that step")
    if vae and reference["label"] == vae["label"]:  # its own samples land near N(0, I) there
        ctx.say(f"note: {vae['label']} is measured in its own latent space: its sectors are "
                "missed by construction no more than N(0, I) misses them")
    reduced = f" ({step.reduced})" if step.reduced else ""
    real = f"the first {o.real_images} test images" if o.real_images else "the test split"
    measured, runs, rows = {}, {}, []
    for model, inverter in ((gan, recoder), *([(vae, None)] if vae else [])):
        label = model["label"]
        ctx.say(f"range {label}: {o.samples} own samples and {real}{reduced}")
        run_id, r = steps.generative_range(
            ctx.recorder, model["address"], (ctx.dataset, "test"), reference["address"],
            recoder=inverter and inverter["address"],
            refine=Refinement(o.refine_steps) if model is gan else None,
            data_path=a.data_path, limit=a.limit, real_images=o.real_images, samples=o.samples,
            parent_run_id=ctx.parent_run_id, name=f"range {label}" if recoder else name)
        m = r.metrics
        made = [(what, regeneration(m, kind)) for what, kind in
                inversions(r.first_guess, o.refine_steps if model is gan else 0)]
        ctx.say(f"range {label}: regeneration mse, " + "; ".join(
            f"{what}: own samples {n['mse_generated']:.4f}, real {n['mse_real']:.4f}, support "
            f"{n['mse_support']:.4f} (random real sets of its size: [{n['random_lo']:.4f}, "
            f"{n['random_hi']:.4f}])" for what, n in made)
            + f"; {m['range/coverage']:.0%} of real images reached")
        rows.append({"step": f"range {label}" if recoder else name, "run_id": run_id,
                     "headline": r.headline, **{k.split("/")[1]: v for k, v in m.items()}})
        measured[label], runs[label] = m, run_id
    g = gan["label"]
    on = [gan["setting"], reference["setting"]]
    if recoder:
        v = vae["label"]
        claim = range_claim(f"{g} vs {v} (in {reference['label']}'s space)", on, measured[g],
                            runs[g], measured[v], runs[v])
        return {"metrics": measured, "runs": runs, "summary": rows, "claims": [claim]}
    ascent, by_recoder = regeneration(measured[g], ""), regeneration(compare["metrics"][g],
                                                                      "guess_")
    ctx.say(f"range {g}, gradient ascent vs recoder: " + ", ".join(
        f"{k.removeprefix('mse_')} {ascent[k]:.4f} vs {by_recoder[k]:.4f}"
        for k in ("mse_generated", "mse_real", "mse_support", "ratio_real", "ratio_support",
                  "random_p")))
    rows.append({"step": f"range {g}: gradient ascent vs recoder", "run_id": runs[g],
                 **{f"ascent_{k}": ascent[k] for k in ascent},
                 **{f"recoder_{k}": by_recoder[k] for k in by_recoder}})
    claim = ascent_claim(f"{g} (in {reference['label']}'s space)", on, measured[g], runs[g],
                         o.refine_steps, compare["metrics"][g], compare["runs"][g])
    return {"metrics": measured, "runs": runs, "summary": rows, "claims": [claim]}


def translate_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from analysis.claims import translator_claims
    from jobs import steps

    o, encs = options(name, step), inputs["encodings"]
    labels = [e["label"] for e in encs]
    budgets = ", ".join(f"{b:g}d" for b in o.budgets) if o.budgets else "the verb's"
    rows = f"{o.eval_rows} held-out rows" if o.eval_rows else "every held-out row"
    reduced = f" ({step.reduced})" if step.reduced else ""
    ctx.say(f"translator study over {', '.join(labels)}: budgets {budgets} x {o.repeats} "
            f"repeats, {rows} per pair{reduced}")
    run_id, out = steps.translate_study(
        ctx.recorder, [e["address"] for e in encs], labels=labels, budgets=o.budgets,
        repeats=o.repeats, eval_rows=o.eval_rows, parent_run_id=ctx.parent_run_id)
    m = out.metrics
    support = m.get(f"translate/ratio/{o.family}/support/{o.budget}", float("nan"))
    ctx.say(f"translators: {o.family} M/M_own {m[f'translate/ratio/{o.family}/all/all']:.2f}"
            f" (all rows), {support:.2f} (support, {o.budget.removeprefix('1')}); support beats "
            f"random in {m.get('translate/support_beats_random', float('nan')):.0%} of "
            f"comparisons; CKA {m['translate/cka_mean']:.2f}, SVCCA "
            f"{m['translate/svcca_mean']:.2f} (mean)")
    for note in out.notes:
        ctx.say(f"note: {note}")
    pairs = len(encs) * (len(encs) - 1)
    claims = translator_claims(f"{pairs} ordered pairs (translator study)",
                               [e["setting"] for e in encs], m, run_id, o.family, o.budget)
    return {"run_id": run_id, "metrics": m, "claims": claims,
            "summary": [{"step": "translator study", "run_id": run_id,
                         **{k.removeprefix("translate/"): v for k, v in m.items()
                            if "/ratio/" not in k}}]}


def fid_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from analysis.claims import second_stage_claims
    from jobs import steps

    o, a = options(name, step), ctx.args
    model, stage = inputs["model"], inputs.get("second_stage")
    label = model["label"]
    registered = inputs["classifier"]["registered"]
    cname, _, version = registered.removeprefix("models:/").partition("/")
    extractor = f"{cname}:{version}"  # pinned: the version this job trained
    run_id, q = steps.sample_quality(
        ctx.recorder, model["address"], (ctx.dataset, "test"), extractors=[extractor],
        second_stage=stage and stage["address"], gmm_components=o.gmm_components,
        samples=o.samples, data_path=a.data_path, limit=a.limit,
        parent_run_id=ctx.parent_run_id, name=f"fid {label}")
    (key, scores), = q.scores.items()
    fids = {s: v["fid"] for s, v in scores.items()}
    ctx.say(f"FID {label} ({key}, {q.samples} samples): "
            + ", ".join(f"{s} {v:.2f}" for s, v in fids.items()))
    claims = []
    if stage:
        m = q.metrics
        ctx.say(f"second stage on {label}'s test codes: delta_var "
                f"{m['second_stage/delta_var']:.4f} vs mse {m['second_stage/mse']:.4f} (the "
                "authors renormalise only above 0.25 x mse: "
                f"{'yes' if m['second_stage/authors_renormalise'] else 'no'})")
        claims = second_stage_claims(label, model["setting"], key, m, run_id)
    return {"run_id": run_id, "metrics": q.metrics, "claims": claims,
            "summary": [{"step": f"fid {label}", "run_id": run_id,
                         **{f"fid_{s}": v for s, v in fids.items()},
                         "delta_var_gen": scores["prior"]["delta_var_gen"]}]}


def regularisation_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from analysis.claims import architecture, sampling_claim, training_setting
    from analysis.defaults import REGULARISATION_EPOCHS
    from jobs import steps

    o, a = options(name, step), ctx.args
    epochs, classifier = o.epochs or REGULARISATION_EPOCHS, inputs.get("classifier")
    reduced = f" ({step.reduced})" if step.reduced else ""
    ctx.say(f"regularisation: 3-D VAEs with and without sampling, {epochs} epochs{reduced}; "
            "2-D first-epoch trace")
    run_id, m, trained = steps.regularisation(
        ctx.recorder, ctx.dataset, data_path=a.data_path, limit=a.limit, epochs=epochs,
        classifier=classifier and classifier["registered"], parent_run_id=ctx.parent_run_id)
    plans = steps.regularisation_plans(ctx.dataset, a.data_path, a.limit, epochs)
    on = []
    for label in ("3d-sampling", "3d-no-sampling"):
        model = validate(plans[label], f"regularisation {label}").model
        on.append(training_setting(ctx.dataset, architecture(model, ctx.pixels),
                                   plans[label]["kl"]["policy"], epochs,
                                   val_mse_history(ctx.recorder, trained[label]),
                                   trained[label]))
    fid = ("FID {:.2f} vs {:.2f}, ".format(m["regularity/prior_fid_sampling"],
                                           m["regularity/prior_fid_no_sampling"])
           if classifier else "FID not measured (no classifier input), ")
    ctx.say(f"regularisation, with vs without sampling: prior samples' {fid}latent coverage "
            f"{m['regularity/prior_coverage_sampling']:.3f} vs "
            f"{m['regularity/prior_coverage_no_sampling']:.3f}; aggregate KL from N(0, I) "
            f"{m['regularity/aggregate_kl_sampling']:.3f} vs "
            f"{m['regularity/aggregate_kl_no_sampling']:.3f}")
    return {"run_id": run_id, "metrics": m,
            "summary": [{"step": "regularisation", "run_id": run_id,
                         **{k.split("/")[1]: v for k, v in m.items()}}],
            "claims": [sampling_claim("dense 3-D, with vs without sampling", on, m, run_id)]}


def sparsity_step(ctx: Context, name: str, step: StepSpec, inputs: dict) -> dict:
    from analysis.defaults import SparsityPlan
    from jobs import steps

    o, a = options(name, step), ctx.args
    plan = SparsityPlan(**{k: v for k, v in o.model_dump().items()
                           if v is not None and k != "limit"})
    limit = min((n for n in (o.limit, a.limit) if n), default=None)
    reduced = f" ({step.reduced})" if step.reduced else ""
    ctx.say(f"sparsity: {plan.epochs} epochs of the dense VAE, then noise on one variable "
            f"(+{plan.noise_step:g} std per epoch, at most {plan.max_increments}){reduced}")
    run_id, result, claim = steps.sparsity(ctx.recorder, plan, ctx.dataset,
                                           data_path=a.data_path, limit=limit,
                                           cpus=step.cpus or 1.0,
                                           parent_run_id=ctx.parent_run_id)
    m = result.metrics
    ctx.say(f"sparsity: {claim['summary']}")
    return {"run_id": run_id, "metrics": m,
            "summary": [{"step": name, "run_id": run_id,
                         **{k.split("/")[1]: v for k, v in m.items()}}],
            "claims": [claim]}


KIND_STEPS = {"train": train_step, "encode": encode_step, "stats": stats_step,
              "sectors": sectors_step, "support-set": support_set_step,
              "relocate": relocate_step, "range": range_step,
              "translate-study": translate_step, "fid": fid_step,
              "regularisation": regularisation_step, "sparsity": sparsity_step}


# ---- the job -----------------------------------------------------------------------------

def print_graph(job: JobSpec) -> None:
    """The steps in order: name, kind, config, inputs."""
    for name, step in job.steps.items():
        reads = f" <- {', '.join(upstream(step))}" if step.inputs else ""
        config = f" {step.config}" if step.config else ""
        print(f"{name:36} {step.kind}{config}{reads}")


def check(job: JobSpec) -> dict[str, float]:
    """Every step's config validated before anything starts; the CPUs each asks."""
    from latentatlas.batches import ACTOR_CPUS

    cpus = {}
    for name, step in job.steps.items():
        check_inputs(name, step)
        compare = step.kind == "range" and job.steps.get(step.inputs.get("compare", ""))
        if compare and (compare.kind != "range" or "recoder" not in compare.inputs or any(
                compare.inputs.get(r) != step.inputs.get(r)
                for r in ("generator", "reference", "stats"))):
            raise_user(f"{step.where(name)}.inputs.compare: {step.inputs['compare']} is not a "
                       "range step with a recoder on the same generator, reference and stats")
        if step.kind == "train":
            asked = train_cpus(name, step)
        else:
            options(name, step)
            # An estimate for the runner: a Ray Data step of this job asks one actor, which
            # reserves half a CPU (its read/write tasks take what is left); below
            # LATENTATLAS_LOCAL_ROWS a pass runs in the driver on torch's threads, shared
            # with the trainings beside it. Other steps work in the driver's process.
            asked = ACTOR_CPUS if "data" in step.exclusive else 0.0
        cpus[name] = asked if step.cpus is None else step.cpus
    return cpus


def parent_outputs(recorder, run_id: str) -> dict:
    from latentatlas.errors import UserError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = recorder.client.download_artifacts(run_id, STEPS_FILE, tmp)
        except Exception:  # MLflow raises several types for a missing run or artifact
            raise UserError(f"--resume {run_id}: not a main-job run with {STEPS_FILE} in "
                            f"{recorder.uri}") from None
        outputs = json.loads(Path(local).read_text())
    # Claims in today's shape (analysis.claims.judge): a run of an earlier version cannot
    # be mixed with this one's.
    if any("key" not in c for out in outputs.values() for c in out.get("claims", [])):
        raise UserError(f"--resume {run_id}: its {STEPS_FILE} predates the claims table of "
                        "2026-12-02 (issue #27); run the job afresh")
    return outputs


def job_file(given: str | None) -> Path:
    """The declared job to run: `given` (a path, or a file name of jobs/configs), else the
    main job."""
    from latentatlas.errors import UserError

    if given is None:
        return MAIN
    for path in (Path(given), CONFIGS / given):
        if path.is_file():
            return path.resolve()
    raise UserError(f"--config {given}: no such job file (the declared jobs: "
                    f"{', '.join(sorted(p.name for p in CONFIGS.glob('*.yaml') if is_job(p)))})")


def is_job(path: Path) -> bool:
    """A declared job file (top-level `steps:`), not an experiment config."""
    from latentatlas.config import read_yaml

    raw = read_yaml(path)
    return isinstance(raw, dict) and "steps" in raw


def run(args) -> int:
    import numpy as np
    import ray

    from jobs.verdicts import CLAIMS_FILE, claims_file, print_claims
    from latentatlas import runtime
    from latentatlas.data import load_split
    from latentatlas.errors import UserError
    from latentatlas.record import Record
    from latentatlas.tracking import Recorder, runs_url

    path = job_file(args.config)
    job = load_job(path)
    if args.steps:
        print_graph(job)
        return 0
    if (args.only or args.start) and not args.resume:
        raise UserError("--only/--from rerun part of a job: give --resume RUN_ID (the main run "
                        "whose outputs the other steps keep)")
    recorder = Recorder(args.tracking_uri, args.experiment)
    runtime.init_ray(args.ray_address)
    dataset = pick_dataset(args.dataset, args.data_path)
    pixels = int(np.prod(load_split(dataset, "test", args.data_path, limit=1).shape))
    job = with_overrides(job_options(job, args, dataset), args.overrides, path.name)
    cpus = check(job)
    kept = parent_outputs(recorder, args.resume) if args.resume else {}
    todo = rerun(job, args.only, args.start, set(kept)) if args.resume else list(job.steps)
    kept = {n: o for n, o in kept.items() if n in job.steps and n not in todo}
    tags = {"latentatlas.machine": runtime.machine(),
            **({"latentatlas.resumed_from": args.resume} if args.resume else {})}
    with recorder.run(path.stem, "main", tags=tags) as parent_run_id:
        ctx = Context(args, dataset, recorder, parent_run_id, pixels, path.stem)
        ctx.say(f"dataset {dataset}; MLflow {recorder.uri}; parent run {parent_run_id}")
        if not runtime.current().verbose:
            ctx.say(f"Ray's own messages go to {runtime.current().log_path} "
                    "(--verbose prints them)")
        if args.resume:
            ctx.say(f"resuming {args.resume}: rerunning {', '.join(todo) or 'nothing'}; "
                    f"{len(kept)} steps keep its outputs")
        outputs = dict(kept)

        def run_step(name: str, inputs: dict) -> dict:
            step = job.steps[name]
            return plain(KIND_STEPS[step.kind](ctx, name, step, inputs))

        def finished(name: str, output: dict) -> None:  # each step's output, as it ends
            outputs[name] = output
            recorder.write(parent_run_id, Record("main", path.stem,
                                                 dicts={STEPS_FILE: outputs}))

        recorder.write(parent_run_id, Record("main", path.stem, dicts={STEPS_FILE: outputs}))
        run_graph(job, todo, kept, run_step, cpus.__getitem__,
                  ray.cluster_resources().get("CPU", 1.0), finished)
        summary = [row for name in job.steps for row in outputs[name]["summary"]]
        claims = [c for name in job.steps for c in outputs[name]["claims"]]
        # The terminal gets one block per step; the run keeps every number in one table,
        # and the claims as judged (`latentatlas claims RUN_ID` judges them again).
        recorder.write(parent_run_id, Record("main", path.stem, tables={
            "summary.json": {c: [row.get(c) for row in summary]
                             for c in dict.fromkeys(k for row in summary for k in row)}},
            files={CLAIMS_FILE: claims_file(claims)}))
    print_steps(summary, title="main job" if path == MAIN else f"job {path.name}")
    print_claims(claims)
    print(f"\nMLflow run id: {parent_run_id}  ({ctx.say.seconds / 60:.1f} min)")
    if recorder.uri.startswith("sqlite:"):
        print(f"browse: mlflow ui --backend-store-uri {recorder.uri}, then "
              f"{runs_url(recorder.uri, recorder.experiment_id)}")
    else:
        print(f"browse: {runs_url(recorder.uri, recorder.experiment_id)}")
    return 0
