"""`kind: fid`: FID / KID / variance loss of a model's samples (prior, GMM, a second stage raw
and renormalised) in the features of a classifier the study trained; the second-stage
claims."""

from __future__ import annotations

from pydantic import Field

from jobs.kinds import Context, Model, Output, Role, Step, StepKind, raise_user, register
from latentatlas.config import Strict


class FidOptions(Strict):
    samples: int = Field(default=10000, gt=1)
    """Real images scored, and samples per sampler (or images scored)."""
    gmm_components: int = Field(default=100, ge=0)
    """Components of the GMM sampler (VAEs; 0: no GMM)."""
    seed: int = Field(default=0, ge=0)
    """Seed of the samplers' draws."""
    inception_weights: str | None = None
    """Inception's weights file (pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or
    torch-fidelity's; never downloaded): the FID in its features too (a step: instead of a
    classifier input, for data without labels such as CelebA)."""


@register
class Fid(StepKind):
    name = "fid"
    Options = FidOptions
    inputs = {"model": Role(Model, help="a VAE or a generator"),
              "classifier": Role(Model, required=False,
                                 help="the feature network (a classifier training); without "
                                      "one, Inception (set: inception_weights)"),
              "second_stage": Role(Model, required=False, help="a second stage on the "
                                                               "model's codes")}

    def check(self, step: Step, job) -> None:
        if ("classifier" in step.spec.inputs) == bool(step.options.inception_weights):
            raise_user(f"{step.where}: one feature space: a classifier input, or "
                       "set.inception_weights (for data without labels, such as CelebA)")

    def run(self, ctx: Context, step: Step, inputs: dict) -> Output:
        from analysis.claims import second_stage_claims
        from jobs import steps

        o, a = step.options, ctx.args
        model, stage = inputs["model"], inputs.get("second_stage")
        classifier = inputs.get("classifier")
        label, extractor = model.label, "inception"
        if classifier:
            if not classifier.registered:
                raise_user(f"{step.where}.inputs.classifier: {classifier.label} is not a "
                           "registered classifier (a classifier training registers one)")
            cname, _, version = classifier.registered.removeprefix("models:/").partition("/")
            extractor = f"{cname}:{version}"  # pinned: the version this study trained
        run_id, q = steps.sample_quality(
            ctx.recorder, model.address, (ctx.dataset, "test"), extractors=[extractor],
            second_stage=stage and stage.address, **o.model_dump(),
            data_path=a.data_path, limit=a.limit,
            parent_run_id=ctx.parent_run_id, name=f"fid {label}")
        (key, scores), = q.scores.items()
        fids = {s: v["fid"] for s, v in scores.items()}
        ctx.say(f"FID {label} ({key}, {q.samples} samples): "
                + ", ".join(f"{s} {v:.2f}" for s, v in fids.items()))
        claims = []
        if stage:
            m = q.metrics
            ctx.say(f"second stage on {label}'s test codes: delta_var "
                    f"{m['second_stage/delta_var']:.4f} vs mse {m['second_stage/mse']:.4f} "
                    "(the authors renormalise only above 0.25 x mse: "
                    f"{'yes' if m['second_stage/authors_renormalise'] else 'no'})")
            claims = second_stage_claims(
                label, [*model.settings, *stage.settings,
                        *(classifier.settings if classifier else [])], key, m, run_id)
        return Output(run_id=run_id, metrics=q.metrics, claims=claims, summary=[
            {"step": f"fid {label}", "run_id": run_id, **{f"fid_{s}": v for s, v in fids.items()},
             "delta_var_gen": scores["prior"]["delta_var_gen"]}])
