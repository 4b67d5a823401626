"""`kind: relocate`: linear maps from one encoding's latent space to another's, fitted the
authors' way (their ridge on the chain's support set, or on generated pairs with a generator
side) and scored on held-out rows; the relocation claim, and the support-set claims."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from analysis.defaults import DEFAULT_ESTIMATORS, GENERATED_PAIRS
from jobs.kinds import (
    Context,
    Encoding,
    Output,
    Role,
    Step,
    StepKind,
    SupportSet,
    as_array,
    raise_user,
    register,
)
from latentatlas.config import Strict


class RelocateOptions(Strict):
    relocation: str | None = None
    """The seed's type, said in the report ("type 1")."""
    fit: Literal["all", "support", "indices", "generated", "random"] | None = None
    """The rows the maps fit on. all: every non-held-out row (streamed); support: a support
    set of the source (a study's: its support input); indices: the rows of a file (the verb's
    --indices); random: `rows` non-held-out rows drawn at random (maps named
    <estimator>_random); generated: `pairs` pairs drawn from the generator side, its codes
    and the VAE's posterior means of its images. Each fit is scored on the held-out rows
    beside the same estimators and OLS on all fit rows (<estimator>_full). Unset: the
    authors' (generated with a generator side, else support)."""
    pairs: int = Field(default=GENERATED_PAIRS, gt=0)
    """Pairs a generated fit draws."""
    rows: int | None = Field(default=None, gt=0)
    """Rows a random fit draws (unset: the source's latent dimension, a support set's size)."""
    estimators: list[str] = list(DEFAULT_ESTIMATORS)
    """The maps fitted; the first is the headline."""
    lam: float = Field(default=1e-4, ge=0)
    """ridge: the penalty on the sum-of-squares scale, |Y - XA|^2 + lam |A|^2."""
    l2: float | None = Field(default=None, ge=0)
    """ridge_authors: the authors' Keras L2 on weights and outputs (unset: theirs, 0.0015
    when one side is a generator, else 1e-4)."""
    seed: int = Field(default=0, ge=0)
    """Draws the support set's members and the rows of a random fit."""
    claims: list[Literal["relocation", "support"]] = ["relocation"]
    """The seed's claims this relocation is judged for."""

    @model_validator(mode="after")
    def counts_need_their_fit(self):
        if self.rows is not None and self.fit != "random":
            raise ValueError("rows (the number of random rows) needs fit: random")
        if "pairs" in self.model_fields_set and self.fit not in (None, "generated"):
            # unset, the fit is the authors': generated pairs with a generator side
            raise ValueError("pairs (the number of generated pairs) needs fit: generated")
        return self

    def fitting(self) -> dict:
        """What `steps.relocate` takes of these options (verb and step alike)."""
        return {"estimators": self.estimators, "fit": self.fit, "pairs": self.pairs,
                "random_rows": self.rows, "seed": self.seed, "lam": self.lam, "l2": self.l2}


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


def given_support(support: SupportSet):
    """The support-set step's rows and sectors, as the relocation fits on them."""
    from analysis.studies.maps import GivenSupport

    return GivenSupport(as_array(support.index), as_array(support.information_gain),
                        support.k, support.threshold, support.seed)


@register
class Relocate(StepKind):
    name = "relocate"
    Options = RelocateOptions
    inputs = {"source": Role(Encoding), "target": Role(Encoding),
              "support": Role(SupportSet, required=False,
                              help="the source's support set: a support fit fits on it")}

    def check(self, step: Step, job) -> None:
        o = step.options
        if o.fit == "indices":
            raise_user(f"{step.where}.fit: indices are a file's rows (the verb's --indices); "
                       "a study names its rows by a support-set step (fit: support)")
        if "support" in o.claims and (o.fit not in (None, "support")
                                      or "support" not in step.spec.inputs):
            raise_user(f"{step.where}.claims: support claims need fit support and a support "
                       "input")

    def run(self, ctx: Context, step: Step, inputs: dict) -> Output:
        from analysis.claims import not_measured, relocation_claim, support_claims
        from jobs import steps

        o = step.options
        src, tgt, support = inputs["source"], inputs["target"], inputs.get("support")
        a, b = src.label, tgt.label
        on = [*src.settings, *tgt.settings]
        label = f"{a}->{b} ({o.relocation})" if o.relocation else f"{a}->{b}"
        if support is not None and support.skipped:
            ctx.say(f"note: no support set of {a} ({support.skipped}): no relocation {label}")
            return Output(skipped=support.skipped, claims=[
                not_measured(key, label, on, f"no support set of {a}: {support.skipped}")
                for key in ("relocation", *(("support_far_apart", "support_suffices")
                                             if "support" in o.claims else ()))])
        from analysis.studies.maps import resolve_fit
        from latentatlas.encode import open_encoding

        fit = resolve_fit(open_encoding(src.address), open_encoding(tgt.address), o.fit)
        if fit == "support" and support is None:
            raise_user(f"{step.where}.inputs: a support fit reads the chain's support set "
                       "(inputs.support: a support-set step of the source)")
        run_id, out = steps.relocate(
            ctx.recorder, src.address, tgt.address, **{**o.fitting(), "fit": fit},
            name=f"relocate {a}->{b}", gain=None,
            support=support and fit == "support" and given_support(support) or None,
            parent_run_id=ctx.parent_run_id)
        m, estimator = out.metrics, out.estimators[0]
        rows = int(m["relocation/fit_rows"])
        headline = (f"{estimator} on {rows} generated pairs" if out.fit == "generated"
                    else f"{estimator} on {rows} {out.fit} rows")
        full = m[f"relocation/M_{estimator}_full"]
        ctx.say(f"relocation {o.relocation or ''} {a}->{b}: {headline}: "
                f"M={m['relocation/M']:.4f}, own {m['relocation/M_target_own']:.4f}; on all "
                f"fit rows {estimator} M={full:.4f}, OLS M={m['relocation/M_ols_full']:.4f}")
        if out.rank_deficient:
            ctx.say(f"note: rank-deficient fits (rank logged): {', '.join(out.rank_deficient)}")
        claims = [relocation_claim(label, on, m, run_id, headline, authors_way(out))]
        if "support" in o.claims:
            claims += support_claims(f"{a}->{b}", on, support.metrics, support.run_id, m,
                                     run_id, estimator)
        row = {"step": f"relocate {a}->{b}", "run_id": run_id, "headline": headline,
               **{k.split("/")[1]: m[k] for k in ("relocation/R", "relocation/L",
                                                  "relocation/M", "relocation/M_target_own",
                                                  "relocation/M_ols_full")},
               "M_full": full}
        return Output(run_id=run_id, metrics=m, summary=[row], claims=claims)
