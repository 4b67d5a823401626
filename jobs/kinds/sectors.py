"""`kind: sectors` and `kind: support-set`: the sectors of an encoding's most informative
variables (ranked by its `stats` input's information gain) and the support set chosen from
them. The support set is chosen among the rows a relocation fits on (not its held-out rows),
so the relocation of the same chain fits on exactly this set."""

from __future__ import annotations

from pydantic import Field

from analysis.defaults import DEFAULT_K, DEFAULT_THRESHOLD
from jobs.kinds import (
    Context,
    Encoding,
    Role,
    Sectors,
    Stats,
    Step,
    StepKind,
    SupportSet,
    as_array,
    register,
    row_of,
)
from latentatlas.config import Strict


class SectorOptions(Strict):
    k: int = Field(default=DEFAULT_K, gt=0)
    """The most informative variables, whose signs define the 2^k sectors (reduced to the
    active ones)."""
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0)
    """|z_i| must exceed it for a code to lie in a sector (sectors are 2*threshold apart)."""


class SupportSetOptions(SectorOptions):
    """A support-set step's k and threshold are its sectors input's, unless it sets its own."""

    size: int | None = Field(default=None, gt=1)
    """Members (unset: the latent dimension)."""
    exclude: str | None = None
    """attr=value rows are never chosen (e.g. Wearing_Hat=1 for the seed's hat-free CelebA
    set)."""
    seed: int = Field(default=0, ge=0)
    """Draws the members of each sector."""


@register
class SectorsKind(StepKind):
    name = "sectors"
    Options = SectorOptions
    inputs = {"encoding": Role(Encoding),
              "stats": Role(Stats, help="the encoding's stats: its information gain ranks "
                                        "the sector variables")}
    output = Sectors

    def run(self, ctx: Context, step: Step, inputs: dict) -> Sectors:
        from analysis.claims import density_claim, not_measured
        from jobs import steps

        o, enc, stats = step.options, inputs["encoding"], inputs["stats"]
        label = enc.label
        if stats.inactive_all:  # e.g. a 1-epoch smoke run
            ctx.say(f"note: no variable of {label} is active: no sectors, support set or "
                    "support-set fit")
            return Sectors(label=label, skipped="no active variable", claims=[
                not_measured("density_uneven", label, [enc.setting],
                             "no active variable, so no sectors")])
        run_id, s = steps.sectors(ctx.recorder, enc.address, gain=as_array(stats.information_gain),
                                  parent_run_id=ctx.parent_run_id, **o.model_dump())
        m = s.metrics
        ctx.say(f"sectors {label}: k={s.k} ({s.ordering}), {m['sectors/nonempty']} of "
                f"{2 ** s.k} non-empty")
        if s.note:
            ctx.say(f"warning: {s.note}")
        return Sectors(run_id=run_id, metrics=m, label=label, k=s.k_requested,
                       threshold=s.threshold, information_gain=stats.information_gain,
                       summary=[{"step": f"sectors {label}", "run_id": run_id, **row_of(m)}],
                       claims=[density_claim(label, enc.setting, m, run_id)])


@register
class SupportSetKind(StepKind):
    name = "support-set"
    Options = SupportSetOptions
    inputs = {"encoding": Role(Encoding),
              "sectors": Role(Sectors, help="its sectors (their variables and threshold)")}
    output = SupportSet

    def run(self, ctx: Context, step: Step, inputs: dict) -> SupportSet:
        from jobs import steps

        o, enc, sectors = step.options, inputs["encoding"], inputs["sectors"]
        if sectors.skipped:
            return SupportSet(label=enc.label, skipped=sectors.skipped)
        # the step's own k and threshold win over its sectors'
        chosen_k = {"k": sectors.k, "threshold": sectors.threshold,
                    **o.model_dump(include=o.model_fields_set & {"k", "threshold"})}
        run_id, chosen = steps.support_set(ctx.recorder, enc.address,
                                           **{**o.model_dump(), **chosen_k},
                                           gain=as_array(sectors.information_gain),
                                           among="fit", parent_run_id=ctx.parent_run_id)
        return SupportSet(run_id=run_id, metrics=chosen.metrics, label=enc.label,
                          k=chosen_k["k"], threshold=chosen.sectors.threshold,
                          information_gain=sectors.information_gain,
                          index=chosen.index.tolist(), seed=o.seed,
                          summary=[{"step": f"support set {enc.label}", "run_id": run_id,
                                    **row_of(chosen.metrics)}])
