"""`kind: range`: the generative range of a generator, measured in a reference VAE's latent
space. With a recoder: the generator (recoder only the headline, gradient steps beside) and a
VAE as a generator side by side, judged by the range claim. Without: gradient ascent alone
from the mean code (the seed's double check), compared with the `compare` step's recoder and
judged by the gradient-ascent claim."""

from __future__ import annotations

from pydantic import Field

from jobs.kinds import (
    Context,
    Encoding,
    Model,
    Output,
    Role,
    Stats,
    Step,
    StepKind,
    as_array,
    raise_user,
    register,
    row_of,
)
from jobs.kinds.encode import RefineOptions
from jobs.kinds.sectors import SupportSetOptions


class RangeOptions(SupportSetOptions, RefineOptions):
    samples: int = Field(default=2000, gt=1)
    """The generator's own samples (the reach threshold's reference)."""
    real_images: int | None = Field(default=None, gt=0)
    """Invert only the first N real images, and the support set (unset: all)."""
    quantile: float = Field(default=0.95, gt=0, lt=1)
    """Reach threshold: this quantile of the regeneration error on own samples."""
    seed: int = Field(default=0, ge=0)
    """Draws the own samples, the support set and the random real sets."""

    def measuring(self) -> dict:
        """What `steps.generative_range` takes of these options (verb and step alike), but
        the refinement."""
        return self.model_dump(exclude={"refine_steps", "refine_lr", "refine_loss"})


class Range(Output):
    """Per measured model (by label): its range/* metrics and its run."""

    runs: dict[str, str] = {}


@register
class RangeKind(StepKind):
    name = "range"
    Options = RangeOptions
    inputs = {"generator": Role(Model, help="a GAN, a style generator or module:function"),
              "recoder": Role(Model, required=False, help="the generator's recoder"),
              "vae": Role(Model, required=False, help="a VAE measured as a generator beside "
                                                      "the recoder's headline"),
              "reference": Role(Encoding, help="a VAE's encoding: the space of the sectors"),
              "stats": Role(Stats, help="the reference's stats (information gain)"),
              "compare": Role(Range, required=False, help="without a recoder: the range "
                                                          "step whose recoder it is compared "
                                                          "with")}
    output = Range

    def check(self, step: Step, job) -> None:
        given, where = step.spec.inputs, step.where
        role, what = (("vae", "with a recoder needs vae (the VAE measured beside it)")
                      if "recoder" in given else
                      ("compare", "without a recoder needs compare (the range step whose "
                                  "recoder its gradient ascent is compared with)"))
        if role not in given:
            raise_user(f"{where}.inputs: a range step {what}")
        if "recoder" not in given:
            if "vae" in given:
                raise_user(f"{where}.inputs.vae: a range step without a recoder measures "
                           "gradient ascent alone; the VAE is measured beside the recoder's "
                           "range step")
            if not step.options.refine_steps:
                raise_user(f"{where}.set.refine_steps: a range step without a recoder inverts "
                           "by gradient steps alone; it needs refine_steps > 0")
        # what it is compared with: a range step with a recoder on the same generator,
        # reference and stats
        compare = job.steps.get(given.get("compare", ""))
        if compare is not None and ("recoder" not in compare.inputs or any(
                compare.inputs.get(r) != given.get(r)
                for r in ("generator", "reference", "stats"))):
            raise_user(f"{step.where}.inputs.compare: {given['compare']} is not a range step "
                       "with a recoder on the same generator, reference and stats")

    def run(self, ctx: Context, step: Step, inputs: dict) -> Range:
        from analysis.bootstrap import resampled_mean
        from analysis.claims import ascent_claim, not_measured, range_claim
        from analysis.generative_range import inversions, regeneration
        from jobs import steps

        o = step.options
        gan, vae, reference = inputs["generator"], inputs.get("vae"), inputs["reference"]
        recoder, compare = inputs.get("recoder"), inputs.get("compare")
        key = "generative_range" if recoder else "range_ascent"
        if inputs["stats"].inactive_all:
            ctx.say(f"note: no variable of {reference.label} is active: no sectors, so no "
                    "generative range")
            return Range(skipped="no active variable", claims=[
                not_measured(key, gan.label, [*gan.settings, *reference.settings],
                             "no active variable in the reference space")])
        if vae and reference.label == vae.label:  # its own samples land near N(0, I) there
            ctx.say(f"note: {vae.label} is measured in its own latent space: its sectors are "
                    "missed by construction no more than N(0, I) misses them")
        from latentatlas.encode import open_encoding

        # the real images are those the reference space encodes (its split, its limit)
        meta = open_encoding(reference.address).meta
        real = (f"the first {o.real_images} {meta.split} images" if o.real_images
                else f"the {meta.split} split")
        measured, runs, rows = {}, {}, []
        for model, inverter in ((gan, recoder), *([(vae, None)] if vae else [])):
            label = model.label
            ctx.say(f"range {label}: {o.samples} own samples and {real}{step.reduced}")
            run_id, r = steps.generative_range(
                ctx.recorder, model.address, (meta.dataset, meta.split), reference.address,
                recoder=inverter and inverter.address,
                refine=o.refinement() if model is gan else None,
                data_path=meta.data_path, limit=meta.limit, **o.measuring(),
                gain=as_array(inputs["stats"].information_gain),
                parent_run_id=ctx.parent_run_id,
                name=f"range {label}" if recoder else step.name)
            m = r.metrics
            made = [(what, regeneration(m, kind)) for what, kind in
                    inversions(r.first_guess, o.refine_steps if model is gan else 0)]
            ctx.say(f"range {label}: regeneration mse, " + "; ".join(
                f"{what}: own samples {n['mse_generated']:.4f}, real {n['mse_real']:.4f}, "
                f"support {n['mse_support']:.4f} (random real sets of its size: "
                f"[{n['random_lo']:.4f}, {n['random_hi']:.4f}])" for what, n in made)
                + f"; {m['range/coverage']:.0%} of real images reached")
            rows.append({"step": f"range {label}" if recoder else step.name, "run_id": run_id,
                         "headline": r.headline, **row_of(m)})
            measured[label], runs[label] = m, run_id
            if model is gan:  # the headline's per-image errors: the recoder's, or ascent's
                per_image = r.guesses if recoder else r.errors
                items = {"own": resampled_mean(per_image["generated"], 0),
                         "support": resampled_mean(per_image["support"], 1)}
        g = gan.label
        on = [*gan.settings, *(recoder.settings if recoder else []), *reference.settings]
        if recoder:
            v = vae.label
            claim = range_claim(f"{g} vs {v} (in {reference.label}'s space)", on, measured[g],
                                runs[g], measured[v], runs[v], items)
            return Range(metrics=measured, runs=runs, summary=rows, claims=[claim])
        ascent = regeneration(measured[g], "")
        by_recoder = regeneration(compare.metrics[g], "guess_")
        ctx.say(f"range {g}, gradient ascent vs recoder: " + ", ".join(
            f"{k.removeprefix('mse_')} {ascent[k]:.4f} vs {by_recoder[k]:.4f}"
            for k in ("mse_generated", "mse_real", "mse_support", "ratio_real",
                      "ratio_support", "random_p")))
        rows.append({"step": f"range {g}: gradient ascent vs recoder", "run_id": runs[g],
                     **{f"ascent_{k}": ascent[k] for k in ascent},
                     **{f"recoder_{k}": by_recoder[k] for k in by_recoder}})
        claim = ascent_claim(f"{g} (in {reference.label}'s space)", on, measured[g], runs[g],
                             o.refine_steps, compare.metrics[g], compare.runs[g], items)
        return Range(metrics=measured, runs=runs, summary=rows, claims=[claim])
