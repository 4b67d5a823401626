"""`kind: sparsity`: the sparsity post's experiment (one active variable damaged by growing
noise until it collapses, then freed until it revives); the collapse claim."""

from __future__ import annotations

from pydantic import Field

from jobs.kinds import Context, Output, Step, StepKind, register, row_of
from latentatlas.config import Strict


class SparsityOptions(Strict):
    """The verb's options (analysis.defaults.SparsityPlan), unset: the verb's."""
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


@register
class Sparsity(StepKind):
    name = "sparsity"
    Options = SparsityOptions

    def run(self, ctx: Context, step: Step, inputs: dict) -> Output:
        from analysis.defaults import SparsityPlan
        from jobs import steps

        o, a = step.options, ctx.args
        plan = SparsityPlan(**{k: v for k, v in o.model_dump().items()
                               if v is not None and k != "limit"})
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
