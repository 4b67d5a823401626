"""`kind: translate-study`: every translator on every anchor choice and budget, for every
ordered pair of its encodings; the translator claims."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from analysis.defaults import ANCHOR_CHOICES, BUDGETS, TRANSLATORS
from jobs.kinds import Context, Encoding, Output, Role, Stats, Step, StepKind, as_array, register
from latentatlas.config import Strict


class TranslateOptions(Strict):
    translators: list[str] = list(TRANSLATORS)
    """The translators fitted: any `relocate --estimator` name, and the field's translators
    (latentis_affine, latentis_linear, latentis_lortho, latentis_ortho, relative)."""
    anchors: list[Literal[ANCHOR_CHOICES]] = list(ANCHOR_CHOICES)
    """The anchor choices: the source's support set, random rows, farthest-point sampling,
    every fit row."""
    budgets: list[float] = list(BUDGETS)
    """Anchor rows as multiples of the source's latent dimension."""
    repeats: int = Field(default=3, gt=0)
    """Anchor draws per (choice, budget), with seeds seed..seed+repeats-1."""
    eval_rows: int | None = Field(default=None, gt=0)
    """Score on the first N held-out rows (unset: all)."""
    seed: int = Field(default=0, ge=0)
    """The first anchor draw's seed."""
    claims_translator: str = "ridge_authors"
    """The translator the claims read."""
    claims_budget: str = "1d"
    """The budget the claims read (e.g. 1d)."""

    def studying(self) -> dict:
        """What `steps.translate_study` takes of these options (verb and step alike)."""
        return self.model_dump(exclude={"claims_translator", "claims_budget"})


@register
class Translate(StepKind):
    name = "translate-study"
    Options = TranslateOptions
    inputs = {"encodings": Role(Encoding, many=True),
              "stats": Role(Stats, required=False, many=True,
                            help="stats of the encodings (matched by label): the information "
                                 "gain ranks each one's sectors (without: var(mu))")}

    def run(self, ctx: Context, step: Step, inputs: dict) -> Output:
        from analysis.claims import translator_claims
        from jobs import steps

        o, encs = step.options, inputs["encodings"]
        gain = {s.label: as_array(s.information_gain) for s in inputs.get("stats") or []}
        gains = [gain.get(e.label) for e in encs]
        labels = [e.label for e in encs]
        budgets = ", ".join(f"{b:g}d" for b in o.budgets)
        rows = f"{o.eval_rows} held-out rows" if o.eval_rows else "every held-out row"
        ctx.say(f"translator study over {', '.join(labels)}: budgets {budgets} x {o.repeats} "
                f"repeats, {rows} per pair{step.reduced}")
        run_id, out = steps.translate_study(
            ctx.recorder, [e.address for e in encs], labels=labels, **o.studying(),
            gains=gains, parent_run_id=ctx.parent_run_id)
        m = out.metrics
        tr, budget = o.claims_translator, o.claims_budget
        support = m.get(f"translate/ratio/{tr}/support/{budget}", float("nan"))
        ctx.say(f"translators: {tr} M/M_own "
                f"{m[f'translate/ratio/{tr}/all/all']:.2f} (all rows), {support:.2f} "
                f"(support, {budget.removeprefix('1')}); support beats random in "
                f"{m.get('translate/support_beats_random', float('nan')):.0%} of "
                f"comparisons; CKA {m['translate/cka_mean']:.2f}, SVCCA "
                f"{m['translate/svcca_mean']:.2f} (mean)")
        for note in out.notes:
            ctx.say(f"note: {note}")
        pairs = len(encs) * (len(encs) - 1)
        claims = translator_claims(f"{pairs} ordered pairs (translator study)",
                                   [s for e in encs for s in e.settings], m, run_id,
                                   o.claims_translator, o.claims_budget)
        return Output(run_id=run_id, metrics=m, claims=claims, summary=[
            {"step": "translator study", "run_id": run_id,
             **{k.removeprefix("translate/"): v for k, v in m.items() if "/ratio/" not in k}}])
