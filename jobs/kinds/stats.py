"""`kind: stats`: latent statistics, variance loss, the zero-out check and information gain
of an encoding; its claims (variance loss, sparsity, stationarity, zeroing the inactive)."""

from __future__ import annotations

from pydantic import Field

from jobs.kinds import Context, Encoding, Role, Stats, Step, StepKind, register, row_of
from latentatlas.config import Strict


class StatsOptions(Strict):
    gain_rows: int | None = Field(default=None, gt=0)
    """Information gain over the first N rows only (unset: all)."""
    actors: int | None = Field(default=None, gt=0)
    """Ray Data actors (unset: in the command's process when small, else the cluster's CPUs
    or GPUs)."""
    seed: int = Field(default=0, ge=0)
    """Seed of the prior samples and pictures."""


@register
class StatsKind(StepKind):
    name = "stats"
    Options = StatsOptions
    inputs = {"encoding": Role(Encoding, help="the codes measured (their model decodes)")}
    output = Stats

    def run(self, ctx: Context, step: Step, inputs: dict) -> Stats:
        from analysis.claims import stats_claims
        from jobs import steps

        o, enc = step.options, inputs["encoding"]
        run_id, measured = steps.stats(ctx.recorder, enc.address, **o.model_dump())
        m, label = measured.metrics, enc.label
        ctx.say(f"stats {label}: {m['latent/inactive']} of {enc.latent_dim} inactive, "
                f"delta_var {m['variance_loss/delta_var_recon']:.4f} vs "
                f"mse(z=mu) {m['variance_loss/mse_recon']:.4f}")
        return Stats(run_id=run_id, metrics=m, label=label,
                     inactive_all=bool(measured.stats["inactive"].all()),
                     information_gain=measured.gain.tolist(),
                     summary=[{"step": f"stats {label}", "run_id": run_id, **row_of(m)}],
                     claims=stats_claims(label, enc.setting, m, run_id,
                                         conv=enc.model_name != "dense_vae"))
