"""`kind: regularisation`: the seed's experiment on how posterior sampling shapes a latent
space (3-D VAEs with and without sampling, a 2-D first-epoch trace); the sampling claim."""

from __future__ import annotations

from pydantic import Field, field_validator

from analysis.defaults import PRDC_K, REGULARISATION_EPOCHS
from jobs.kinds import Context, Model, Output, Role, Step, StepKind, register, row_of
from latentatlas.config import Strict


class RegularisationOptions(Strict):
    epochs: int = Field(default=REGULARISATION_EPOCHS, gt=0)
    """Epochs of the 3-D models: where both settle on Fashion-MNIST (bench/RESULTS.md)."""
    points: int = 5000
    """Test codes in the 3-D scatter, and prior draws scored against them (more than the
    neighbours of the prior's coverage)."""

    @field_validator("points")
    @classmethod
    def more_than_the_neighbours(cls, points: int) -> int:
        if points <= PRDC_K:
            raise ValueError(f"more than {PRDC_K} test codes (the neighbours of the prior's "
                             "coverage)")
        return points


@register
class Regularisation(StepKind):
    name = "regularisation"
    Options = RegularisationOptions
    inputs = {"classifier": Role(Model, required=False,
                                 help="the feature network of the prior samples' FID")}

    def run(self, ctx: Context, step: Step, inputs: dict) -> Output:
        from analysis.claims import architecture, sampling_claim, training_setting
        from jobs import steps
        from jobs.kinds.train import val_mse_history
        from latentatlas.config import validate

        o, a = step.options, ctx.args
        epochs, classifier = o.epochs, inputs.get("classifier")
        ctx.say(f"regularisation: 3-D VAEs with and without sampling, {epochs} "
                f"epochs{step.reduced}; 2-D first-epoch trace")
        run_id, m, trained = steps.regularisation(
            ctx.recorder, ctx.dataset, data_path=a.data_path, limit=a.limit, **o.model_dump(),
            classifier=classifier and classifier.registered, parent_run_id=ctx.parent_run_id)
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
        ctx.say(f"regularisation, with vs without sampling: prior samples' {fid}latent "
                f"coverage {m['regularity/prior_coverage_sampling']:.3f} vs "
                f"{m['regularity/prior_coverage_no_sampling']:.3f}; aggregate KL from N(0, I) "
                f"{m['regularity/aggregate_kl_sampling']:.3f} vs "
                f"{m['regularity/aggregate_kl_no_sampling']:.3f}")
        return Output(run_id=run_id, metrics=m, summary=[
            {"step": "regularisation", "run_id": run_id,
             **row_of(m)}],
            claims=[sampling_claim("dense 3-D, with vs without sampling",
                                   [*on, *(classifier.settings if classifier else [])], m,
                                   run_id)])
