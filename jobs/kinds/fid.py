"""`kind: fid`: FID / KID / variance loss of a model's samples (prior, GMM, a second stage raw
and renormalised) in the features of a classifier the study trained; the second-stage
claims."""

from __future__ import annotations

from pydantic import Field

from jobs.kinds import Context, Model, Output, Role, Step, StepKind, raise_user, register
from latentatlas.config import Strict


class FidOptions(Strict):
    samples: int = Field(default=10000, gt=1)
    """Real images scored, and samples per sampler."""
    gmm_components: int = Field(default=100, gt=0)
    """Components of the GMM sampler."""


@register
class Fid(StepKind):
    name = "fid"
    Options = FidOptions
    inputs = {"model": Role(Model, help="a VAE or a generator"),
              "classifier": Role(Model, help="the feature network (a classifier training)"),
              "second_stage": Role(Model, required=False, help="a second stage on the "
                                                               "model's codes")}

    def run(self, ctx: Context, step: Step, inputs: dict) -> Output:
        from analysis.claims import second_stage_claims
        from jobs import steps

        o, a = step.options, ctx.args
        model, stage = inputs["model"], inputs.get("second_stage")
        label, registered = model.label, inputs["classifier"].registered
        if not registered:
            raise_user(f"{step.where}.inputs.classifier: {inputs['classifier'].label} is not a "
                       "registered classifier (a classifier training registers one)")
        cname, _, version = registered.removeprefix("models:/").partition("/")
        extractor = f"{cname}:{version}"  # pinned: the version this study trained
        run_id, q = steps.sample_quality(
            ctx.recorder, model.address, (ctx.dataset, "test"), extractors=[extractor],
            second_stage=stage and stage.address, gmm_components=o.gmm_components,
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
                    f"{m['second_stage/delta_var']:.4f} vs mse {m['second_stage/mse']:.4f} "
                    "(the authors renormalise only above 0.25 x mse: "
                    f"{'yes' if m['second_stage/authors_renormalise'] else 'no'})")
            claims = second_stage_claims(
                label, [*model.settings, *stage.settings, *inputs["classifier"].settings], key,
                m, run_id)
        return Output(run_id=run_id, metrics=q.metrics, claims=claims, summary=[
            {"step": f"fid {label}", "run_id": run_id, **{f"fid_{s}": v for s, v in fids.items()},
             "delta_var_gen": scores["prior"]["delta_var_gen"]}])
