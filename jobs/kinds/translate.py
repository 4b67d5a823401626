"""`kind: translate-study`: every translator on every anchor choice and budget, for every
ordered pair of its encodings; the translator claims."""

from __future__ import annotations

from pydantic import Field

from jobs.kinds import Context, Encoding, Output, Role, Stats, Step, StepKind, as_array, register
from latentatlas.config import Strict


class TranslateOptions(Strict):
    budgets: list[float] | None = None
    """Anchor rows as multiples of the latent dimension (unset: the verb's)."""
    repeats: int = Field(default=3, gt=0)
    """Anchor draws per (choice, budget)."""
    eval_rows: int | None = Field(default=None, gt=0)
    """Score on the first N held-out rows (unset: all)."""
    translator: str = "ridge_authors"
    """The claims' translator and budget."""
    budget: str = "1d"
    """The budget the claims read (e.g. 1d)."""


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
        budgets = ", ".join(f"{b:g}d" for b in o.budgets) if o.budgets else "the verb's"
        rows = f"{o.eval_rows} held-out rows" if o.eval_rows else "every held-out row"
        ctx.say(f"translator study over {', '.join(labels)}: budgets {budgets} x {o.repeats} "
                f"repeats, {rows} per pair{step.reduced}")
        run_id, out = steps.translate_study(
            ctx.recorder, [e.address for e in encs], labels=labels, budgets=o.budgets,
            repeats=o.repeats, eval_rows=o.eval_rows, gains=gains,
            parent_run_id=ctx.parent_run_id)
        m = out.metrics
        support = m.get(f"translate/ratio/{o.translator}/support/{o.budget}", float("nan"))
        ctx.say(f"translators: {o.translator} M/M_own "
                f"{m[f'translate/ratio/{o.translator}/all/all']:.2f} (all rows), {support:.2f} "
                f"(support, {o.budget.removeprefix('1')}); support beats random in "
                f"{m.get('translate/support_beats_random', float('nan')):.0%} of "
                f"comparisons; CKA {m['translate/cka_mean']:.2f}, SVCCA "
                f"{m['translate/svcca_mean']:.2f} (mean)")
        for note in out.notes:
            ctx.say(f"note: {note}")
        pairs = len(encs) * (len(encs) - 1)
        claims = translator_claims(f"{pairs} ordered pairs (translator study)",
                                   [s for e in encs for s in e.settings], m, run_id,
                                   o.translator, o.budget)
        return Output(run_id=run_id, metrics=m, claims=claims, summary=[
            {"step": "translator study", "run_id": run_id,
             **{k.removeprefix("translate/"): v for k, v in m.items() if "/ratio/" not in k}}])
