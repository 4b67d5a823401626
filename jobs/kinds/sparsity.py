"""`kind: sparsity`: the sparsity post's experiment (one active variable damaged by growing
noise until it collapses, then freed until it revives); the collapse claim."""

from __future__ import annotations

from pydantic import Field

from analysis.defaults import SparsityPlan
from jobs.kinds import Context, Output, Step, StepKind, register, row_of


class SparsityOptions(SparsityPlan):
    limit: int | None = Field(default=None, gt=0)
    """Items of each split (a study's own limit when lower)."""

    def plan(self) -> SparsityPlan:
        return SparsityPlan(**self.model_dump(exclude={"limit"}))


@register
class Sparsity(StepKind):
    name = "sparsity"
    Options = SparsityOptions

    def run(self, ctx: Context, step: Step, inputs: dict) -> Output:
        from jobs import steps

        o, a = step.options, ctx.args
        plan = o.plan()
        limit = min((n for n in (o.limit, a.limit) if n), default=None)
        ctx.say(f"sparsity: {plan.epochs} epochs of the dense VAE, then noise on one variable "
                f"(+{plan.noise_step:g} std per epoch, at most {plan.max_increments})"
                f"{step.reduced}")
        run_id, result, claim = steps.sparsity(ctx.recorder, plan, ctx.dataset,
                                               data_path=a.data_path, limit=limit,
                                               cpus=step.spec.cpus or 1.0,
                                               parent_run_id=ctx.parent_run_id)
        m = result.metrics
        ctx.say(f"sparsity: {claim['summary']}")
        return Output(run_id=run_id, metrics=m, claims=[claim], summary=[
            {"step": step.name, "run_id": run_id, **row_of(m)}])
