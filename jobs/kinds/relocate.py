"""`kind: relocate`: linear maps from one encoding's latent space to another's, fitted the
authors' way (their ridge on the chain's support set, or on generated pairs with a generator
side) and scored on held-out rows; the relocation claim, and the support-set claims."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from analysis.defaults import DEFAULT_ESTIMATORS, GENERATED_PAIRS, GENERATED_SCORED
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
    and the VAE's posterior means of its images. Each fit is scored beside the same
    estimators and OLS on all fit rows (<estimator>_full). Unset: the authors' recipe for
    the pair (generated with a style generator's W, else support: a vanilla GAN's side is its
    recoder's codes)."""
    pairs: int = Field(default=GENERATED_PAIRS, gt=0)
    """Pairs a generated fit draws."""
    rows: int | None = Field(default=None, gt=0)
    """Rows a random fit draws (unset: the source's latent dimension, a support set's size)."""
    estimators: list[str] = list(DEFAULT_ESTIMATORS)
    """The maps fitted; the first is the headline."""
    lam: float = Field(default=1e-4, ge=0)
    """ridge: the penalty on the sum-of-squares scale, |Y - XA|^2 + lam |A|^2."""
    l2: float | None = Field(default=None, ge=0)
    """ridge_authors: the authors' Keras L2 on weights and outputs (unset: their recipe's, 0
    with a style generator's generated pairs, else 0.0015 when one side is a generator, else
    1e-4)."""
    scored_on: Literal["held_out", "generated"] | None = None
    """What the maps are scored on: held_out (the held-out real rows, every fifth) or
    generated (fresh generated images and the VAE's codes of them, a generator side needed).
    Unset: the authors' recipe's (generated with a style generator's generated pairs, else
    held_out)."""
    scored_images: int = Field(default=GENERATED_SCORED, gt=0)
    """Fresh generated images a scoring on generated images draws."""
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
                "random_rows": self.rows, "seed": self.seed, "lam": self.lam, "l2": self.l2,
                "scored_on": self.scored_on, "scored_images": self.scored_images}


def authors_way(out) -> list[str]:
    """How a relocation's headline differs from the authors' recipe for the pair (their
    estimator, fit, regulariser and scoring): each keeps the relocation verdict back."""
    recipe = out.recipe
    estimator, l2 = out.estimators[0], out.params.get("l2")
    return [text for wrong, text in (
        (estimator != "ridge_authors", f"headline {estimator}, not the authors' ridge_authors"),
        (out.fit != recipe.fit, f"fitted on {out.fit} rows, the authors' fit here "
                                f"({recipe.where}): {recipe.fit}"),
        (estimator == "ridge_authors" and l2 != recipe.l2,
         f"L2 {l2}, the authors' {recipe.l2} ({recipe.where})"),
        (out.scored_on != recipe.scored_on, f"scored on {out.scored_on} images, the authors' "
                                            f"({recipe.where}): {recipe.scored_on}")) if wrong]


def given_support(support: SupportSet, source_label: str):
    """The support-set step's rows and sectors, as the relocation fits on them; the size
    sweep only where the support set was chosen in the source's own space."""
    from analysis.studies.maps import GivenSupport

    return GivenSupport(as_array(support.index), as_array(support.information_gain),
                        support.k, support.threshold, support.seed,
                        sweep=support.label == source_label)


@register
class Relocate(StepKind):
    name = "relocate"
    Options = RelocateOptions
    inputs = {"source": Role(Encoding), "target": Role(Encoding),
              "support": Role(SupportSet, required=False,
                              help="the support set a support fit fits on: the source's, or "
                                   "(a GAN's source, as the authors) the VAE target's")}

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
        from analysis.studies.maps import headline_map, resolve_fit
        from latentatlas.encode import open_encoding

        fit = resolve_fit(open_encoding(src.address), open_encoding(tgt.address), o.fit)
        if fit == "support" and support is None:
            raise_user(f"{step.where}.inputs: a support fit (the authors' for {a} -> {b}) "
                       "reads a support set: give inputs.support, a support-set step of the "
                       "source (or of the VAE side, with a GAN source)")
        run_id, out = steps.relocate(
            ctx.recorder, src.address, tgt.address, **{**o.fitting(), "fit": fit},
            name=f"relocate {a}->{b}", gain=None,
            support=support and fit == "support" and given_support(support, a) or None,
            parent_run_id=ctx.parent_run_id)
        m, estimator = out.metrics, out.estimators[0]
        rows = int(m["relocation/fit_rows"])
        headline = (f"{estimator} on {rows} generated pairs" if out.fit == "generated"
                    else f"{estimator} on {rows} {out.fit} rows")
        if out.scored_on == "generated":
            headline += f", scored on {int(m['relocation/eval_rows'])} generated images"
        full = m[f"relocation/M_{estimator}_full"]
        ctx.say(f"relocation {o.relocation or ''} {a}->{b}: {headline}: "
                f"M={m['relocation/M']:.4f}, own {m['relocation/M_target_own']:.4f}; on all "
                f"fit rows {estimator} M={full:.4f}, OLS M={m['relocation/M_ols_full']:.4f}")
        if out.rank_deficient:
            ctx.say(f"note: rank-deficient fits (rank logged): {', '.join(out.rank_deficient)}")
        items, head = out.resampled, f"M_{headline_map(out.fit, out.estimators)}"
        claims = [relocation_claim(label, on, m, run_id, headline, authors_way(out), {
            "M": items[head], "own": items["M_target_own"], "M_ols_full": items["M_ols_full"]})
            if "relocation/M_over_own" in m else not_measured(
                "relocation", label, on, "the target generator regenerates its own samples "
                "exactly (its own error is 0): M has no scale on generated images")]
        if "support" in o.claims:
            claims += support_claims(f"{a}->{b}", on, support.metrics, support.run_id, m,
                                     run_id, estimator, {"M_support": items[head],
                                                         "M_all": items[f"M_{estimator}_full"]})
        row = {"step": f"relocate {a}->{b}", "run_id": run_id, "headline": headline,
               **{k.split("/")[1]: m[k] for k in ("relocation/R", "relocation/L",
                                                  "relocation/M", "relocation/M_target_own",
                                                  "relocation/M_ols_full")},
               "M_full": full}
        return Output(run_id=run_id, metrics=m, summary=[row], claims=claims)
