"""The translator study: for every ordered pair of encodings, every translator fitted on
every anchor choice at every anchor budget, scored on held-out rows by the target's
decoder: L = MSE(enc2 x, A enc1 x), M = MSE(x, dec2(A enc1 x)) and M / M_target_own, beside
the similarity of the raw spaces on the same rows (linear CKA, SVCCA).

Anchors are chosen in the source space only (the support set of its sectors, random rows,
farthest-point sampling, or every fit row) at budgets that are multiples of the source's
latent dimension, `repeats` times with different seeds. Fits are Ray tasks over the pairs'
sufficient statistics (O(d^2) each; the relative translator's, over the anchor rows); the
scoring decodes the held-out rows."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from analysis import figures
from analysis.anchors import farthest_point_rows, random_rows
from analysis.defaults import ANCHOR_CHOICES, BUDGETS, TRANSLATORS
from analysis.linear_maps import (
    AUTHORS_L2,
    AUTHORS_L2_GAN,
    ESTIMATORS,
    FIELD_TRANSLATORS,
    SufficientStats,
    authors_l2,
    fit_translators,
)
from analysis.pairs import HOLDOUT_EVERY, aligned, check_joinable, split_mask, streaming_stats
from analysis.relocation import relocation_errors
from analysis.similarity import linear_cka, svcca
from analysis.studies.sectors import SectorCounts, count_sectors, support_rows
from latentatlas.batches import runs_here
from latentatlas.encode import Encoding
from latentatlas.errors import UserError
from latentatlas.models import share_model
from latentatlas.record import Record
from latentatlas.report import quiet

__all__ = ["TRANSLATORS", "ANCHORS", "ANCHOR_CHOICES", "BUDGETS",
           "budget_label", "AnchorSet", "SourceRows", "choose_anchors",
           "TranslatorStudy", "translate_study"]

# The authors' L2 (We_love_latent_space): 1e-4 between VAEs, 0.0015 when one side is a GAN.


def budget_label(multiple: float) -> str:
    return f"{multiple:g}d"


@dataclass(frozen=True)
class SourceRows:
    """What an anchor choice sees of a source encoding: its fit rows' indices and codes, and
    its sectors (None when it has no active variable)."""

    index: np.ndarray
    mu: np.ndarray
    sectors: SectorCounts | None


def fit_rows_only(index: np.ndarray) -> np.ndarray:
    return split_mask(index, "fit")


# Anchor choices by name: (source rows, size, seed) -> row indices. "all" (every fit row,
# one budget) is the fourth choice, fitted from streamed statistics.
ANCHORS: dict[str, Callable[[SourceRows, int, int], np.ndarray]] = {
    "support": lambda s, k, seed: support_rows(s.sectors, k, seed=seed,
                                               eligible_index=fit_rows_only)[0],
    "random": lambda s, k, seed: s.index[random_rows(len(s.index), k, seed)],
    "fps": lambda s, k, seed: s.index[farthest_point_rows(s.mu, k, seed)],
}


@dataclass(frozen=True)
class AnchorSet:
    anchor: str
    budget: str  # "0.25d" ... "4d", or "all"
    repeat: int
    index: np.ndarray | None  # the anchor rows; None: every fit row

    @property
    def key(self) -> str:
        return f"{self.anchor}|{self.budget}|{self.repeat}"


def choose_anchors(enc: Encoding, score: np.ndarray | None, anchors, budgets, repeats: int,
                   seed: int) -> tuple[list[AnchorSet], list[str]]:
    """The anchor sets of one source encoding, and notes on choices it cannot make."""
    codes = enc.arrays(["index", "mu"])
    keep = fit_rows_only(codes["index"])
    notes, sectors = [], None
    if "support" in anchors:
        try:
            sectors = count_sectors(enc, score)
        except UserError as e:
            notes.append(f"no support-set anchors from {enc.path}: {e}")
    source = SourceRows(codes["index"][keep], codes["mu"][keep], sectors)
    sets = []
    for anchor in anchors:
        if anchor == "all":
            sets.append(AnchorSet("all", "all", 0, None))
        elif anchor != "support" or sectors is not None:
            for multiple, r in itertools.product(budgets, range(repeats)):
                size = max(2, round(multiple * enc.latent_dim))
                rows = ANCHORS[anchor](source, size, seed + r)
                sets.append(AnchorSet(anchor, budget_label(multiple), r, np.sort(rows)))
    return sets, notes


def anchor_statistics(src: Encoding, tgt: Encoding, sets: list[AnchorSet],
                      keep_rows: bool = False) -> tuple[dict[str, SufficientStats], dict]:
    """Sufficient statistics of each anchor set (the rows read once, their union), and, with
    `keep_rows`, the chosen sets' rows themselves (source, target codes)."""
    chosen = [s for s in sets if s.index is not None]
    out, rows = {}, {}
    if chosen:
        union = np.unique(np.concatenate([s.index for s in chosen]))
        a, b = aligned(src.row_groups(), tgt.row_groups(), 0, src.meta.rows, ["mu"], ["mu"],
                       union)
        for s in chosen:
            pos = np.searchsorted(a["index"], s.index)
            out[s.key] = SufficientStats.of(a["mu"][pos], b["mu"][pos])
            if keep_rows:
                rows[s.key] = (a["mu"][pos], b["mu"][pos])
    for s in sets:
        if s.index is None:
            out[s.key] = streaming_stats(src, tgt, "fit")
    return out, rows


def fit_all(work: dict, translators, seed: int) -> dict:
    """Pair -> maps: one Ray task per pair when Ray is up, else here."""
    import ray

    if not ray.is_initialized():
        return {pair: fit_translators(stats, translators, seed, rows, l2=l2)
                for pair, (stats, rows, l2) in work.items()}
    task = ray.remote(num_cpus=1)(fit_translators)
    refs = {pair: task.remote(stats, translators, seed, rows, l2=l2)
            for pair, (stats, rows, l2) in work.items()}
    return {pair: ray.get(ref) for pair, ref in refs.items()}


@dataclass
class TranslatorStudy:
    labels: list[str]  # the encodings' short names, in the order given
    paths: list[str]
    translators: list[str]
    anchors: list[str]
    budgets: list[str]
    repeats: int
    eval_rows: int  # held-out rows scored per pair
    rows: list[dict]  # one per (pair, translator, anchor set)
    pairs: list[dict]  # one per ordered pair: CKA, SVCCA, R, M_target_own, l2
    notes: list[str]

    def ratios(self, translator: str, anchor: str, budget: str) -> np.ndarray:
        """(n, n) M / M_target_own, mean over repeats (rows: source; NaN: not fitted)."""
        n = len(self.labels)
        total, count = np.zeros((n, n)), np.zeros((n, n))
        where = {label: i for i, label in enumerate(self.labels)}
        for r in self.rows:
            if (r["translator"], r["anchor"], r["budget"]) == (translator, anchor, budget):
                i, j = where[r["source"]], where[r["target"]]
                total[i, j] += r["ratio"]
                count[i, j] += 1
        with np.errstate(invalid="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def mean_ratio(self, translator: str, anchor: str, budget: str) -> float:
        m = self.ratios(translator, anchor, budget)
        return float(np.nanmean(m)) if np.isfinite(m).any() else float("nan")

    def wins(self, first: str, second: str) -> float:
        """Share of (pair, translator, budget) where anchor choice `first` gives a lower mean M
        than `second` (NaN when they never meet)."""
        won, met = 0, 0
        for translator, budget in itertools.product(self.translators, self.budgets):
            a, b = self.ratios(translator, first, budget), self.ratios(translator, second, budget)
            both = np.isfinite(a) & np.isfinite(b)
            won += int((a[both] < b[both]).sum())
            met += int(both.sum())
        return won / met if met else float("nan")

    def similarity(self, key: str) -> np.ndarray:
        n = len(self.labels)
        m = np.eye(n)
        for p in self.pairs:
            m[self.labels.index(p["source"]), self.labels.index(p["target"])] = p[key]
        return m

    @property
    def metrics(self) -> dict[str, float]:
        out = {"translate/encodings": len(self.labels), "translate/pairs": len(self.pairs),
               "translate/eval_rows": self.eval_rows,
               "translate/cka_mean": float(np.mean([p["cka"] for p in self.pairs])),
               "translate/svcca_mean": float(np.mean([p["svcca"] for p in self.pairs]))}
        for translator, anchor, budget in self.cells:
            out[f"translate/ratio/{translator}/{anchor}/{budget}"] = self.mean_ratio(
                translator, anchor, budget)
        for first, second in (("support", "random"), ("support", "fps"), ("fps", "random")):
            if {first, second} <= set(self.anchors):
                out[f"translate/{first}_beats_{second}"] = self.wins(first, second)
        excess = self.sgd_excess_l
        if excess is not None:
            out["translate/sgd_excess_L"] = excess
        return out

    @property
    def cells(self) -> list[tuple[str, str, str]]:
        """(translator, anchor, budget) of every fit the study made."""
        return list(dict.fromkeys((r["translator"], r["anchor"], r["budget"]) for r in self.rows))

    @property
    def sgd_excess_l(self) -> float | None:
        """Median of L(authors' optimiser) / L(its closed form) - 1 over every pair and anchor
        set: how far 2000 Adam steps stop from the minimum they approach."""
        if not {"sgd_authors", "ridge_authors"} <= set(self.translators):
            return None
        closed = {(r["source"], r["target"], r["anchor"], r["budget"], r["repeat"]): r["L"]
                  for r in self.rows if r["translator"] == "ridge_authors"}
        gaps = [r["L"] / closed[(r["source"], r["target"], r["anchor"], r["budget"],
                                 r["repeat"])] - 1
                for r in self.rows if r["translator"] == "sgd_authors"]
        return float(np.median(gaps))

    def summary(self) -> dict[str, list]:
        """Mean and spread of M / M_target_own per (translator, anchor, budget) over pairs and
        repeats."""
        cols = {"translator": [], "anchor": [], "budget": [], "mean_ratio": [], "sd_ratio": [],
                "min_ratio": [], "max_ratio": [], "fits": []}
        for translator, anchor, budget in self.cells:
            cell = (translator, anchor, budget)
            v = np.array([r["ratio"] for r in self.rows
                          if (r["translator"], r["anchor"], r["budget"]) == cell])
            for k, x in zip(cols, (*cell, v.mean(), v.std(), v.min(), v.max(), len(v)),
                            strict=True):
                cols[k].append(x if isinstance(x, str) else float(x))
        return cols

    def record(self, name: str = "translate study") -> Record:
        grid = [a for a in self.anchors if a != "all"]
        on_all = {t for t, a, _ in self.cells if a == "all"}  # not the relative translator
        figs = {
            f"heatmaps_{t}.png": (lambda t=t: figures.translator_grid(
                t, self.labels, {(a, b): self.ratios(t, a, b)
                                 for a, b in itertools.product(grid, self.budgets)},
                self.ratios(t, "all", "all") if t in on_all else None))
            for t in self.translators}
        figs["budget_curves.png"] = lambda: figures.budget_curves(
            [float(b.removesuffix("d")) for b in self.budgets],
            {t: {a: [self.mean_ratio(t, a, b) for b in self.budgets] for a in grid}
             for t in self.translators},
            {t: self.mean_ratio(t, "all", "all") for t in on_all})
        for key in ("cka", "svcca"):
            figs[f"similarity_{key}.png"] = (lambda key=key: figures.heatmap(
                self.similarity(key), self.labels, f"{key.upper()} of the raw spaces "
                "(held-out rows)"))
        columns = lambda rows: {c: [r[c] for r in rows] for c in rows[0]}  # noqa: E731
        return Record(
            "translate-study", name,
            params={"translators": ",".join(self.translators), "anchors": ",".join(self.anchors),
                    "budgets": ",".join(self.budgets), "repeats": self.repeats,
                    "eval_rows": self.eval_rows, "vae_l2": AUTHORS_L2,
                    "gan_l2": AUTHORS_L2_GAN},
            metrics=self.metrics,
            tags={"encodings": ",".join(self.paths), "labels": ",".join(self.labels),
                  "latentatlas.notes": " | ".join(self.notes) or "none"},
            tables={"translations.json": columns(self.rows), "pairs.json": columns(self.pairs),
                    "summary.json": self.summary()},
            figures=figs)


def check_choices(translators, anchors, budgets, repeats: int) -> None:
    for what, given, known in (("--translator", translators,
                                [*ESTIMATORS, *FIELD_TRANSLATORS]),
                               ("--anchor", anchors, ANCHOR_CHOICES)):
        unknown = [x for x in given if x not in known]
        if unknown or not given:
            raise UserError(f"{what}: {'unknown ' + ', '.join(unknown) if unknown else 'none'}"
                            f"; known: {', '.join(known)}")
    if not budgets or min(budgets) <= 0:
        raise UserError(f"--budget: anchor budgets must be positive multiples of the "
                        f"source's dimension, got {list(budgets)}")
    if repeats < 1:
        raise UserError(f"--repeats {repeats}: at least 1")


def translate_study(encodings: list[Encoding], models: list[tuple], labels: list[str], *,
                    translators=TRANSLATORS, anchors=ANCHOR_CHOICES, budgets=BUDGETS,
                    repeats: int = 3, eval_rows: int | None = None,
                    scores: list[np.ndarray | None] | None = None, seed: int = 0,
                    progress: Callable[[str], None] = quiet) -> TranslatorStudy:
    """`models[i]` is the (model, spec) that decodes `encodings[i]`; `scores[i]` orders its
    variables for the sectors (information gain; default var(mu)); `eval_rows` held-out rows
    are scored per pair (default: all of them)."""
    check_choices(translators, anchors, budgets, repeats)
    if len(encodings) < 2:
        raise UserError("translate-study needs at least two encodings")
    for enc in encodings[1:]:
        check_joinable(encodings[0], enc)
    n, rows_total = len(encodings), encodings[0].meta.rows
    held_out = len(range(0, rows_total, HOLDOUT_EVERY))
    eval_rows = held_out if eval_rows is None else min(eval_rows, held_out)
    stop = eval_rows * HOLDOUT_EVERY  # the first eval_rows held-out rows
    eval_index = np.arange(0, stop, HOLDOUT_EVERY)
    scores = scores or [None] * n
    progress(f"anchors in each of {n} source spaces: {', '.join(anchors)} at "
             f"{', '.join(map(budget_label, budgets))} x {repeats}")
    chosen, notes = {}, []
    for i, enc in enumerate(encodings):
        chosen[i], why = choose_anchors(enc, scores[i], anchors, budgets, repeats, seed)
        notes += why
    by_rows = [t for t in translators if t in FIELD_TRANSLATORS and FIELD_TRANSLATORS[t].rows]
    if by_rows and "all" in anchors:  # every fit row an anchor: k x k cosines, k ~ the split
        notes.append(f"{', '.join(by_rows)}: fitted on chosen anchors only, not on all fit "
                     "rows")
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    work, similarity = {}, {}
    for i, j in pairs:
        src, tgt = encodings[i], encodings[j]
        work[(i, j)] = (*anchor_statistics(src, tgt, chosen[i], bool(by_rows)),
                        authors_l2(src.meta.family, tgt.meta.family))
        held = streaming_stats(src, tgt, "eval", indices=eval_index)
        similarity[(i, j)] = {"cka": linear_cka(held), "svcca": svcca(held)}
    fits = sum(len(chosen[i]) for i, _ in pairs) * len(translators)
    progress(f"fitting up to {fits} maps ({len(translators)} translators) over {len(pairs)} "
             f"ordered pairs' sufficient statistics (a Ray task per pair)")
    maps = fit_all(work, translators, seed)
    shared = [share_model(*m) for m in models]
    split = encodings[0].meta.load_split()
    here = runs_here(stop)

    def score(pair):
        i, j = pair
        return pair, relocation_errors(encodings[i], encodings[j], maps[pair], split,
                                       shared[i], shared[j], labels=0, stop=stop, here=here)

    progress(f"scoring every map on {eval_rows} held-out rows through the target's decoder")
    # Pairs in threads on the in-process path (torch releases the GIL); Ray Data pools one
    # at a time (concurrent pools can starve each other's read tasks of CPUs).
    with ThreadPoolExecutor(2 if here else 1) as pool:
        errors = dict(pool.map(score, pairs))
    rows, pair_rows = [], []
    for (i, j), err in errors.items():
        own = float(err["M_target_own"][-1])
        pair_rows.append({"source": labels[i], "target": labels[j], **similarity[(i, j)],
                          "R": float(err["R"][-1]), "M_target_own": own,
                          "l2": work[(i, j)][2], "eval_rows": int(err["count"][-1])})
        sizes = {s.key: (s.index.size if s.index is not None else work[(i, j)][0][s.key].n)
                 for s in chosen[i]}
        for key in maps[(i, j)]:
            translator, anchor, budget, repeat = key.split("|")
            m = float(err[f"M_{key}"][-1])
            rows.append({"source": labels[i], "target": labels[j], "translator": translator,
                         "anchor": anchor, "budget": budget, "repeat": int(repeat),
                         "anchor_rows": int(sizes[key.partition("|")[2]]),
                         "L": float(err[f"L_{key}"][-1]), "M": m, "M_target_own": own,
                         "ratio": m / own})
    return TranslatorStudy(list(labels), [str(e.path) for e in encodings], list(translators),
                           list(anchors), [budget_label(b) for b in budgets], repeats,
                           eval_rows, rows, pair_rows, notes)
