"""The claims table: every rule on planted numbers on both sides of its threshold; a verdict
that is a replication where the setting is the seed's, a generalisation where it differs
(named), not judged where a component cannot carry it (named); stored claims judged again
from their runs."""

import json
import re

import mlflow
import pytest

from analysis import claims as C
from analysis.claims import (
    CLAIMS,
    FAILS,
    GENERALISATION,
    HOLDS,
    MIXED,
    NOT_JUDGED,
    NOT_MEASURED,
    REPLICATION,
)
from latentatlas.families import learning_test

# The seed's dense setting, settled (val/mse flat over its last three epochs): every
# MNIST-VAE claim replicates.
DENSE = C.training_setting("fashion-mnist", "dense 784-256-64-32-16", "elbo", 10,
                           [0.0301, 0.030, 0.0299], "run-dense")
STATS = {"latent/inactive": 8, "latent/variables": 16, "latent/active_units": 8,
         "latent/stationary_mean": 1.02, "latent/stationary_min": 0.9,
         "latent/stationary_max": 1.1, "latent/zero_out_mse": 1.5e-6,
         "latent/zero_out_baseline_mse": 4.2e-3, "variance_loss/delta_var_recon": 0.0201,
         "variance_loss/mse_recon": 0.0196, "variance_loss/delta_var_gen": 0.0305}


def outcome(key: str, **numbers) -> str:
    return CLAIMS[key].judge(numbers)


# (claim, numbers just inside, numbers just outside): each rule's threshold from both sides
THRESHOLDS = [
    ("variance_loss", {"delta_var": 0.0196 * 1.24, "mse": 0.0196},
     {"delta_var": 0.0196 * 1.26, "mse": 0.0196}),
    ("variance_loss", {"delta_var": 0.0196 * 0.76, "mse": 0.0196},
     {"delta_var": 0.0196 * 0.74, "mse": 0.0196}),
    ("sparsity_dense", {"inactive": 4, "latent_dim": 16}, {"inactive": 3, "latent_dim": 16}),
    ("sparsity_conv", {"inactive": 2, "latent_dim": 16}, {"inactive": 1, "latent_dim": 16}),
    ("stationary", {"stationary_mean": 1.09, "stationary_min": 0.76, "stationary_max": 1.24},
     {"stationary_mean": 1.11, "stationary_min": 1.0, "stationary_max": 1.0}),
    ("stationary", {"stationary_mean": 1.0, "stationary_min": 0.76, "stationary_max": 1.0},
     {"stationary_mean": 1.0, "stationary_min": 0.74, "stationary_max": 1.0}),
    ("stationary", {"stationary_mean": 1.0, "stationary_min": 1.0, "stationary_max": 1.24},
     {"stationary_mean": 1.0, "stationary_min": 1.0, "stationary_max": 1.26}),
    ("zero_out", {"zeroed_mse": 0.099, "baseline_mse": 1.0},
     {"zeroed_mse": 0.101, "baseline_mse": 1.0}),
    ("relocation", {"M": 1.99, "own": 1.0}, {"M": 2.01, "own": 1.0}),
    ("support_suffices", {"M_support": 1.49, "M_all": 1.0},
     {"M_support": 1.51, "M_all": 1.0}),
    ("support_beats_random", {"wins": 0.51}, {"wins": 0.5}),
    ("support_far_apart", {"support_pairwise": 0.21, "random_pairwise": 0.2},
     {"support_pairwise": 0.2, "random_pairwise": 0.2}),
    ("density_uneven", {"tv": 0.1, "tv_p99": 0.02}, {"tv": 0.099, "tv_p99": 0.02}),
    ("density_uneven", {"tv": 0.2, "tv_p99": 0.19}, {"tv": 0.2, "tv_p99": 0.2}),
    ("second_stage", {"fid_two_stage": 29.9, "fid_prior": 30.0},
     {"fid_two_stage": 30.0, "fid_prior": 30.0}),
]


@pytest.mark.parametrize("key, inside, outside", THRESHOLDS,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(THRESHOLDS)])
def test_each_rule_on_both_sides_of_its_threshold(key, inside, outside):
    assert outcome(key, **inside) == HOLDS
    assert outcome(key, **outside) == FAILS


@pytest.mark.parametrize("fid, kid, expected", [
    ((30.0, 29.0), (0.010, 0.009), HOLDS), ((30.0, 31.0), (0.010, 0.011), FAILS),
    ((30.0, 29.0), (0.010, 0.011), MIXED), ((30.0, 31.0), (0.010, 0.009), MIXED)])
def test_renormalisation_is_judged_on_fid_and_kid_together(fid, kid, expected):
    """The measured case of issue #27: FID 114.4 -> 81.2 while KID 30.8 -> 35.0 is mixed."""
    assert outcome("renormalisation", fid_raw=fid[0], fid_renorm=fid[1], kid_raw=kid[0],
                   kid_renorm=kid[1]) == expected
    assert outcome("renormalisation", fid_raw=114.4, fid_renorm=81.2, kid_raw=30.8e-3,
                   kid_renorm=35.0e-3) == MIXED


@pytest.mark.parametrize("collapsed, revived, expected", [
    (1, 1, HOLDS), (1, 0, MIXED), (0, 0, FAILS)])
def test_a_collapse_holds_when_it_follows_the_crossing_and_reverses(collapsed, revived,
                                                                    expected):
    assert outcome("collapse_reversible", collapsed=collapsed, revived=revived) == expected


def test_a_collapse_experiment_whose_gain_never_fell_below_the_kl_is_not_measured():
    base = {"sparsity/variable": 3, "sparsity/increments": 12, "sparsity/collapsed_early": 0}
    claim = C.collapse_claim("dense", DENSE, {**base, "sparsity/crossed": 0}, "run-sparsity")
    assert claim["verdict"] == NOT_MEASURED and "12 noise increments" in claim["summary"]
    m = {**base, "sparsity/crossed": 1, "sparsity/collapsed": 1, "sparsity/revived": 0,
         "sparsity/crossing_noise": 1.5, "sparsity/collapse_epochs": 2}
    claim = C.collapse_claim("dense", DENSE, m, "run-sparsity")
    assert claim["rule_outcome"] == MIXED and claim["sources"]["revived"] == [
        "run-sparsity", "sparsity/revived"]
    assert "inactive 2 epochs later; still inactive through the revival epochs" in \
        claim["summary"]
    # inactive while its gain still exceeded its KL: the collapse did not wait for the
    # crossing, so (a) fails whatever the revival
    m = {**base, "sparsity/crossed": 0, "sparsity/collapsed_early": 1, "sparsity/collapsed": 0,
         "sparsity/revived": 1, "sparsity/collapse_noise": 2.0, "sparsity/revival_epochs": 1}
    claim = C.collapse_claim("dense", DENSE, m, "run-sparsity")
    assert (claim["verdict"], claim["rule_outcome"]) == (REPLICATION, FAILS)
    assert "inactive at noise std 2.00 while its gain still exceeded its KL" in claim["summary"]
    assert "active again 1 epoch after" in claim["summary"]


@pytest.mark.parametrize("fid, coverage, expected", [
    ((29.9, 30.0), (0.51, 0.50), HOLDS), ((30.0, 30.0), (0.50, 0.50), FAILS),
    ((29.9, 30.0), (0.50, 0.50), MIXED), ((30.0, 30.0), (0.51, 0.50), MIXED),
    ((31.0, 30.0), (0.40, 0.50), FAILS)])
def test_sampling_is_judged_on_prior_sample_fid_and_latent_coverage_together(fid, coverage,
                                                                             expected):
    """(a) FID lower with sampling, (b) coverage higher with sampling; ties are no better."""
    assert outcome("sampling_regular", fid_with=fid[0], fid_without=fid[1],
                   coverage_with=coverage[0], coverage_without=coverage[1]) == expected


THREE_D = [C.training_setting("mnist", "dense 784-256-64-16-3", "elbo", 20,
                              [0.0301, 0.030, 0.0299], f"run-{label}")
           for label in ("sampling", "no-sampling")]
REGULARITY = {"regularity/prior_coverage_sampling": 0.8,
              "regularity/prior_coverage_no_sampling": 0.3,
              "regularity/aggregate_kl_sampling": 0.05,
              "regularity/aggregate_kl_no_sampling": 1.2}


def test_the_sampling_claim_reads_fid_and_coverage_from_the_regularisation_run():
    fids = {"regularity/prior_fid_sampling": 40.0, "regularity/prior_fid_no_sampling": 90.0}
    c = C.sampling_claim("3-D", THREE_D, {**REGULARITY, **fids}, "run-reg")
    assert (c["verdict"], c["rule_outcome"]) == (REPLICATION, HOLDS), c
    assert c["measured"] == {"fid_with": 40.0, "fid_without": 90.0, "coverage_with": 0.8,
                             "coverage_without": 0.3, "kl_with": 0.05, "kl_without": 1.2}
    assert c["sources"]["fid_without"] == ["run-reg", "regularity/prior_fid_no_sampling"]
    assert "FID 40.00 with vs 90.00 without" in c["summary"]
    # KL balancing (the step before issue #28) is not the seed's BCE + KL: a generalisation
    balanced = [{**s, "loss": "KL balancing"} for s in THREE_D]
    assert C.sampling_claim("3-D", balanced, {**REGULARITY, **fids}, "r")["verdict"] == \
        GENERALISATION


def test_the_sampling_claim_without_a_classifier_is_not_measured_and_says_its_coverage():
    c = C.sampling_claim("3-D", THREE_D, REGULARITY, "run-reg")
    assert c["verdict"] == NOT_MEASURED and c["rule_outcome"] is None
    assert "needs a classifier" in c["summary"] and "coverage 0.800 with vs 0.300" in \
        c["summary"]
    assert C.rejudge(c)["verdict"] == NOT_MEASURED


@pytest.mark.parametrize("key", ["generative_range", "range_ascent"])
@pytest.mark.parametrize("p, ratio, expected", [
    (0.024, 2.0, HOLDS), (0.025, 2.0, MIXED), (0.024, 1.99, MIXED), (0.5, 1.0, FAILS)])
def test_range_needs_the_support_set_beyond_random_real_sets_and_own_samples(key, p, ratio,
                                                                              expected):
    """(a) p < 0.025 against random real sets of the support's size, (b) support >= 2x own,
    for the recoder's regeneration and for gradient ascent alone alike. The measured support
    0.0406 vs real 0.0396 of issue #27 (p ~ 0.4) does not hold (a)."""
    assert outcome(key, p_random=p, support=0.1 * ratio, own=0.1) == expected


def range_metrics(prefix: str, own: float, real: float, support: float, p: float) -> dict:
    return {f"range/{prefix}mse_generated": own, f"range/{prefix}mse_real": real,
            f"range/{prefix}mse_support": support, f"range/{prefix}random_lo": 0.03,
            f"range/{prefix}random_hi": 0.05, f"range/{prefix}random_p": p}


def test_the_ascent_claim_reads_gradient_ascent_and_keeps_the_recoder_beside():
    celeba = {**DENSE, "dataset": "celeba", "model": "dcgan latent 64", "has_val_mse": False}
    ascent = range_metrics("", 0.005, 0.04, 0.12, 0.0)
    recoder = range_metrics("guess_", 0.026, 0.067, 0.068, 0.41)
    c = C.ascent_claim("dcgan", [celeba], ascent, "run-ascent", 30, recoder, "run-recoder")
    # p 0 < 0.025, x24 >= 2; the GAN's settledness is said to be unjudged
    assert c["key"] == "range_ascent" and (c["verdict"], c["rule_outcome"]) == (REPLICATION,
                                                                                 HOLDS)
    assert c["notes"] == ["dcgan latent 64: settledness not judged (its training logs no "
                          "validation error)"]
    assert c["sources"]["support"] == ["run-ascent", "range/mse_support"]
    assert c["sources"]["recoder_support"] == ["run-recoder", "range/guess_mse_support"]
    assert c["runs"] == ["run-ascent", "run-recoder"]
    assert c["summary"].startswith("gradient ascent, 30 steps from the mean code: support "
                                   "0.1200 vs random real sets of its size [0.0300, 0.0500]")
    assert "recoder only: support 0.0680 (p=0.410), own 0.0260 (x2.6)" in c["summary"]
    # judged again on the gradient-ascent numbers: a support set inside the random sets
    assert C.rejudge(c, {**c["measured"], "p_random": 0.3})["rule_outcome"] == MIXED
    fmnist = C.ascent_claim("dcgan", [DENSE], ascent, "a", 30, recoder, "r")
    assert fmnist["verdict"] == GENERALISATION and fmnist["rule_outcome"] == HOLDS


def test_every_rule_has_a_reason_a_seed_figure_and_a_source():
    for key, c in CLAIMS.items():
        assert c.key == key and c.claim and c.figure and c.seed_setting and c.rule, key
        assert len(c.general) > 20, key  # what a generalisation tests
        assert len(c.reason) > 20 and "RESEARCH.md" in c.source, key
    # the rules changed (after a measurement, or before one on a new measurement) say so
    assert {k for k, c in CLAIMS.items() if c.changed} == {
        "sparsity_dense", "sparsity_conv", "relocation", "generative_range", "renormalisation",
        "sampling_regular", "collapse_reversible", "zero_out", "density_uneven"}
    # every rule is tested on both sides of its threshold (here or in its own test below)
    assert {k for k, _, _ in THRESHOLDS} | {"renormalisation", "generative_range",
                                            "collapse_reversible", "sampling_regular",
                                            "range_ascent"} == set(CLAIMS)


def test_the_range_figure_agrees_with_itself():
    """A data check of the table: the seed's ratio is the quotient of its two errors."""
    own, support, ratio = map(float, re.findall(r"[\d.]+(?=\D|$)", CLAIMS[
        "generative_range"].figure.replace("x", " "))[:3])
    assert round(support / own, 1) == ratio


def test_a_training_has_settled_when_its_trend_over_three_epochs_is_under_one_percent():
    # the slope of the last three epochs, relative to their mean: (0.036 - 0.040) / 2 / 0.038
    moving = C.training_setting("mnist", "conv 16-32-64 latent 16", "balanced", 3,
                                [0.040, 0.038, 0.036], "r")
    assert moving["val_mse_slope"] == pytest.approx(0.002 / 0.038) and not C.settled(moving)
    # a last epoch that jumps does not decide alone: the trend of three does
    assert C.settled(C.training_setting("mnist", "m", "elbo", 9, [1.0, 1.01, 0.981], "r"))
    assert C.settled(C.training_setting("mnist", "m", "elbo", 9, [1.0, 1.0, 0.981], "r"))
    assert not C.settled(C.training_setting("mnist", "m", "elbo", 9, [1.0, 1.0, 0.979], "r"))
    gan = C.training_setting("mnist", "dcgan latent 64", "non-saturating GAN loss", 2, None,
                             "r")
    assert C.settled(gan) is None and C.withheld(CLAIMS["relocation"], [gan]) == []
    # fewer than three epochs give no trend: not known to have settled, so not judged
    twice = C.training_setting("mnist", "dense 784-256-64-32-16", "elbo", 2, [0.05, 0.04], "r")
    assert C.settled(twice) is False and C.withheld(CLAIMS["variance_loss"], [twice]) == [
        "dense 784-256-64-32-16: not settled after 2 epochs (fewer than 3 epochs give no "
        "trend, settled below 1%)"]


@pytest.mark.parametrize("test, ok", [
    (learning_test("held-out latent MSE", 0.49, 1.0), True),
    (learning_test("held-out latent MSE", 0.51, 1.0), False),
    (learning_test("val latent MSE", 0.25, 0.6), True),  # under 0.3
    (learning_test("val latent MSE", 0.31, 0.6), False),
    (learning_test("val accuracy", 0.80, 0.8, higher=True), True),
    (learning_test("val accuracy", 0.79, 0.8, higher=True), False)])
def test_a_component_that_did_not_learn_withholds_the_verdict(test, ok):
    """A recoder or second stage learned when its held-out error is under half the variance
    of what it predicts; a classifier's features carry an FID from 80% accuracy."""
    component = C.training_setting("mnist", "recoder", "recoder", 2, None, "r-aux",
                                   learning=test, auxiliary=True)
    claim = C.judge("relocation", "a->b", [DENSE, component], {"M": 1.0, "own": 1.0}, "m")
    assert (claim["verdict"] == NOT_JUDGED) != ok, claim
    if not ok:
        assert claim["withheld"] == [f"recoder: did not learn ({C.learned(component)[1]})"]
        assert claim["rule_outcome"] == HOLDS  # said beside, not given as the verdict
    # an auxiliary component is checked, never compared with the seed's setting
    assert claim["differences"] == ["fashion-mnist (MNIST-like), the seed's CelebA"]


def test_a_reduced_step_withholds_the_verdicts_it_feeds_and_says_why():
    reduced = {**DENSE, "reduced": "reduced: 2 epochs of its 40"}
    (row,) = [r for r in C.stats_claims("d", reduced, STATS, "s") if r["key"] == "stationary"]
    assert row["verdict"] == NOT_JUDGED
    assert row["withheld"] == ["dense 784-256-64-32-16: a reduced step (reduced: 2 epochs of "
                               "its 40)"]
    # an analysis step that ran reduced withholds what it judged, and a rejudge keeps that
    (full,) = [r for r in C.stats_claims("d", DENSE, STATS, "s") if r["key"] == "stationary"]
    held = C.withhold(full, "translators: reduced grid")
    assert held["verdict"] == NOT_JUDGED and held["reduced"] == ["translators: reduced grid"]
    assert C.rejudge(held)["verdict"] == NOT_JUDGED
    assert "not judged: a reduced step (translators: reduced grid) (the rule gives: holds)" \
        in C.explained(held)


def test_a_replication_where_the_setting_is_the_seeds_a_generalisation_where_it_differs():
    rows = {r["key"]: r for r in C.stats_claims("dense-s0", DENSE, STATS, "run-stats")}
    assert all(r["verdict"] == REPLICATION and r["rule_outcome"] == HOLDS
               for r in rows.values()), rows
    # the conv VAE under KL balancing, settled: a generalisation naming what differs
    conv = C.training_setting("fashion-mnist", "conv 16-32-64 latent 16", "balanced", 5,
                              [0.0301, 0.030, 0.0299], "run-conv")
    (sparsity,) = [r for r in C.stats_claims("conv-s0", conv, STATS, "s", conv=True)
                   if r["key"] == "sparsity_conv"]
    assert sparsity["rule_outcome"] == HOLDS and sparsity["verdict"] == GENERALISATION
    assert sparsity["differences"] == [
        "conv 16-32-64 latent 16 trained with KL balancing, the seed's BCE + KL"]
    assert C.headline(sparsity) == "generalisation: holds"
    assert C.explained(sparsity)[0].startswith("generalises 'the KL term leaves part of a "
                                               "VAE's latent variables inactive'; differs: ")
    # another architecture generalises the seed's dense 784-256-64-32-16 claim
    small = {**DENSE, "model": "dense 784-256-64-32-4"}
    (dense,) = [r for r in C.stats_claims("d", small, STATS, "s") if r["key"] ==
                "sparsity_dense"]
    assert dense["verdict"] == GENERALISATION and "the seed's dense 784-256-64-32-16" in \
        dense["differences"][0]
    # the seed's CelebA claims, tested on Fashion-MNIST: generalisations
    fit = {"relocation/M": 0.01, "relocation/M_target_own": 0.01,
           "relocation/M_ols_full": 0.012}
    moved = C.relocation_claim("a->b", [DENSE, DENSE], fit, "run-r", "ridge_authors on 16 "
                               "support rows")
    assert moved["rule_outcome"] == HOLDS and moved["verdict"] == GENERALISATION
    assert moved["differences"] == ["fashion-mnist (MNIST-like), the seed's CelebA"]
    assert "OLS on all fit rows: M 0.0120 (x1.20)" in moved["summary"]


def test_a_claim_names_its_numbers_and_the_runs_they_came_from():
    rows = {r["key"]: r for r in C.stats_claims("dense-s0", DENSE, STATS, "run-stats")}
    sparsity = rows["sparsity_dense"]
    assert sparsity["measured"] == {"inactive": 8, "latent_dim": 16, "active_units": 8}
    assert sparsity["sources"]["inactive"] == ["run-stats", "latent/inactive"]
    assert sparsity["runs"] == ["run-stats"]
    assert sparsity["summary"] == "8 of 16 inactive, 8 active (Burda)"
    assert set(sparsity) >= {"claim", "general", "subject", "measured", "seed", "setting",
                             "differences", "withheld", "rule", "verdict", "runs"}
    assert sparsity["setting"] == {"measured": [DENSE],
                                   "seed": CLAIMS["sparsity_dense"].seed_setting}
    none = C.stats_claims("d", DENSE, {**STATS, "latent/inactive": 0}, "s")
    assert none[-1]["key"] == "zero_out" and none[-1]["verdict"] == NOT_MEASURED
    # 12 inactive of 16: the baseline zeroes all 4 active variables
    most = C.stats_claims("d", DENSE, {**STATS, "latent/inactive": 12}, "s")[-1]
    assert most["rule_outcome"] == HOLDS and "with all 4 active zeroed" in most["summary"]
    every = C.stats_claims("d", DENSE, {**STATS, "latent/inactive": 16}, "s")[-1]
    assert every["verdict"] == NOT_MEASURED and "no active variable" in every["summary"]
    half = C.stats_claims("d", DENSE, {**STATS, "latent/inactive": 8}, "s")[-1]
    assert half["key"] == "zero_out" and half["rule_outcome"] == HOLDS


def test_judging_again_applies_the_current_rule(monkeypatch):
    (row,) = [r for r in C.stats_claims("d", DENSE, {**STATS, "latent/inactive": 3}, "s")
              if r["key"] == "sparsity_dense"]
    assert row["rule_outcome"] == FAILS  # 3 of 16 is under a quarter
    assert C.rejudge(row)["rule_outcome"] == FAILS and \
        C.rejudge(row)["summary"] == row["summary"]
    again = C.rejudge(row, {**row["measured"], "inactive": 4})
    assert again["rule_outcome"] == HOLDS  # and the words say the numbers judged now
    assert again["summary"] == "read again: inactive 4, latent_dim 16, active_units 8"
    looser = CLAIMS["sparsity_dense"].__class__(**{
        **CLAIMS["sparsity_dense"].__dict__, "judge": lambda n: C.by(n["inactive"] >= 1)})
    monkeypatch.setitem(CLAIMS, "sparsity_dense", looser)
    assert C.rejudge(row)["rule_outcome"] == HOLDS


def test_a_headline_not_fitted_the_authors_way_keeps_the_relocation_verdict_back():
    celeba = {**DENSE, "dataset": "celeba", "model": "resnet latent 64"}
    fit = {"relocation/M": 0.01, "relocation/M_target_own": 0.01, "relocation/M_ols_full": 0.01}
    authors = C.relocation_claim("a->b", [celeba, celeba], fit, "r", "ridge_authors on 64 "
                                 "support rows")
    assert (authors["verdict"], authors["rule_outcome"]) == (REPLICATION, HOLDS)
    ols = C.relocation_claim("a->b", [celeba, celeba], fit, "r", "ols on 8000 all rows",
                             ["headline ols, not the authors' ridge_authors"])
    assert ols["verdict"] == NOT_JUDGED and ols["rule_outcome"] == HOLDS
    assert C.rejudge(ols)["withheld"] == ["method: headline ols, not the authors' "
                                          "ridge_authors"]


def test_the_count_line_counts_verdicts_by_kind_with_what_the_rules_gave():
    conv = {**DENSE, "loss": "KL balancing"}
    reduced = {**DENSE, "reduced": "reduced"}
    rows = [*C.stats_claims("d", DENSE, STATS, "s"), *C.stats_claims("c", conv, STATS, "s"),
            *C.stats_claims("r", reduced, {**STATS, "latent/inactive": 0}, "s")]
    assert C.counts(rows) == ("4 replications (4 holds), 4 generalisations (4 holds), "
                              "3 not judged, 1 not measured")


def stored_run(client, experiment_id: str, metrics: dict) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    for k, v in metrics.items():
        client.log_metric(run_id, k, v)
    client.set_terminated(run_id)
    return run_id


def test_the_claims_verb_judges_a_main_run_again_from_its_runs(workdir, capsys):
    from jobs import claims as verb
    from jobs.verdicts import CLAIMS_FILE

    uri = f"sqlite:///{workdir}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("claims")
    stats_run = stored_run(client, experiment_id, {**STATS, "latent/inactive": 3})
    main_run = client.create_run(experiment_id, tags={"latentatlas.kind": "main"}).info.run_id
    judged = C.stats_claims("dense-s0", DENSE, {**STATS, "latent/inactive": 3}, stats_run)
    client.log_text(main_run, json.dumps(judged), CLAIMS_FILE)
    client.set_terminated(main_run)
    common = ["--tracking-uri", uri, "--experiment", "claims"]

    assert verb.main([main_run, *common]) == 0
    out = capsys.readouterr().out
    assert "KL makes latent spaces sparse [dense-s0]: REPLICATION: DOES NOT HOLD" in out
    assert "verdicts: 4 replications (3 holds, 1 does not hold)" in out
    child = out.split("MLflow run id: ")[1].split()[0]
    local = client.download_artifacts(child, CLAIMS_FILE, str(workdir))
    again = json.loads(open(local).read())
    assert [C.headline(c) for c in again] == [C.headline(c) for c in judged]
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == main_run

    # the numbers are read again from the runs, not from the stored claims: a changed run
    # (here its metric logged anew) changes the verdict, and the block says what it was
    client.log_metric(stats_run, "latent/inactive", 4, step=1)
    assert verb.main([main_run, *common]) == 0
    assert ("KL makes latent spaces sparse [dense-s0]: REPLICATION: HOLDS (was: replication: "
            "does not hold)") in capsys.readouterr().out


def test_the_claims_verb_refuses_a_damaged_claims_file_in_one_line(workdir, capsys):
    from jobs import claims as verb

    uri = f"sqlite:///{workdir}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("claims")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_text(run_id, json.dumps([{"claim": "x"}]), "claims.json")
    common = ["--tracking-uri", uri, "--experiment", "claims"]
    capsys.readouterr()  # what this test's own client said, creating the store
    assert verb.main([run_id, *common]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "claims.json[0] lacks key, subject" in err[0], err
    # one line; the note on Ray's log follows it where this test process started Ray
    assert all(line.startswith("Ray's own messages: ") for line in err[1:]), err
    assert verb.main(["0" * 32, *common]) != 0
    assert "no claims.json" in capsys.readouterr().err


def test_the_rules_print_with_their_reasons(capsys):
    from jobs import claims as verb

    assert verb.main(["--rules"]) == 0
    out = capsys.readouterr().out
    for c in CLAIMS.values():
        assert c.rule in out and c.reason in out
    assert "changed: 2026-12-02 (issue #27)" in out


def test_the_docs_hold_the_rules_table_as_the_code_has_it():
    from pathlib import Path

    from jobs.claims import rules_table

    page = Path(__file__).resolve().parents[1] / "docs" / "concepts" / "claims.md"
    assert rules_table() in page.read_text()


def test_resuming_a_main_run_of_the_old_claims_shape_is_refused_in_one_line(workdir):
    from jobs import study
    from latentatlas.errors import UserError
    from latentatlas.tracking import Recorder

    job = study.load_job(study.MAIN)
    recorder = Recorder(f"sqlite:///{workdir}/mlflow.db", "claims")
    run_id = recorder.client.create_run(recorder.experiment_id).info.run_id
    old = {"stats-dense-s0": {"summary": [], "claims": [{"claim": "c", "model": "dense-s0",
                                                          "verdict": "holds"}]}}
    recorder.client.log_dict(run_id, old, study.STEPS_FILE)
    with pytest.raises(UserError, match=r"predates the claims table .* run the job afresh"):
        study.parent_outputs(recorder, run_id, job)
    new = {"stats-dense-s0": {"summary": [], "claims": C.stats_claims("d", DENSE, STATS, "s"),
                              "label": "dense-s0", "inactive_all": False}}
    recorder.client.log_dict(run_id, new, study.STEPS_FILE)
    (kept,) = study.parent_outputs(recorder, run_id, job).values()  # typed as its kind's
    assert type(kept).__name__ == "Stats"
    assert kept.model_dump(include=set(new["stats-dense-s0"])) == json.loads(json.dumps(
        new["stats-dense-s0"]))
    # an output that is not its step kind's (a stats step's without its label) is refused
    del new["stats-dense-s0"]["label"]
    recorder.client.log_dict(run_id, new, study.STEPS_FILE)
    with pytest.raises(UserError, match=r"its output of stats-dense-s0 is not a stats step's"):
        study.parent_outputs(recorder, run_id, job)


def test_the_report_verb_writes_a_main_runs_numbers_and_claims(workdir, capsys):
    """`report RUN_ID --format md`: the provenance (machine, commit, date), the claims as
    the run judged them, every step's numbers, as Markdown tables; written whole or not at
    all; a run that is not a main run, or one without its summary, is one line."""
    from jobs import report as verb
    from jobs.verdicts import CLAIMS_FILE

    uri = f"sqlite:///{workdir}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("report")
    stats_run = stored_run(client, experiment_id, STATS)
    main_run = client.create_run(experiment_id, run_name="main", tags={
        "latentatlas.kind": "main", "latentatlas.machine": "2 CPUs (Test CPU), 0 GPUs",
        "mlflow.source.git.commit": "abc123"}).info.run_id
    judged = C.stats_claims("dense-s0", DENSE, STATS, stats_run)
    client.log_text(main_run, json.dumps(judged), CLAIMS_FILE)
    client.log_table(main_run, {"step": ["stats dense-s0", "sectors dense-s0"],
                                "run_id": [stats_run, "r2"], "inactive": [8, None],
                                "sectors/nonempty": [None, 12]}, "summary.json")
    client.set_terminated(main_run)
    common = ["--tracking-uri", uri, "--experiment", "report"]
    out = workdir / "results.md"
    assert verb.main([main_run, "--format", "md", "--out", str(out), *common]) == 0
    page = out.read_text()
    assert "| machine | 2 CPUs (Test CPU), 0 GPUs |" in page and "| commit | abc123 |" in page
    assert f"Verdicts: {C.counts(judged)}." in page
    for c in judged:
        assert f"### {c['claim']} [dense-s0]: {C.headline(c).upper()}" in page
    assert "### stats dense-s0" in page and "| `inactive` | 8 |" in page
    assert "### sectors dense-s0" in page and "| `sectors/nonempty` | 12 |" in page
    assert "| `inactive` |  |" not in page  # a step shows only its own numbers
    assert not list(workdir.glob(".results.md.tmp"))
    capsys.readouterr()
    assert verb.main([main_run, *common]) == 0  # the terminal's text
    assert "KL makes latent spaces sparse [dense-s0]: REPLICATION: HOLDS" in \
        capsys.readouterr().out

    assert verb.main([stats_run, *common]) == 2
    assert "give a main-job run" in capsys.readouterr().err
    bare = client.create_run(experiment_id, tags={"latentatlas.kind": "main"}).info.run_id
    assert verb.main([bare, *common]) == 2
    assert "holds no summary.json" in capsys.readouterr().err


# ---- replicates: intervals over seeds --------------------------------------------------

def test_an_interval_over_seeds_is_students_t():
    """Three seeds 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.3027, half-width 4.3027/sqrt(3)."""
    mean, lo, hi = C.interval([1.0, 2.0, 3.0])
    assert mean == 2 and hi - mean == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-6)
    assert mean - lo == pytest.approx(hi - mean)
    assert C.interval([0.5]) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("delta, mse, expected", [
    ((0.0195, 0.0205), (0.0198, 0.0202), C.HOLDS),  # inside 25% everywhere in the box
    ((0.010, 0.012), (0.0198, 0.0202), C.FAILS),  # far below everywhere
    ((0.0140, 0.0160), (0.0198, 0.0202), C.INCONCLUSIVE),  # straddles 0.75 x mse
])
def test_a_rule_on_intervals_holds_fails_or_is_inconclusive(delta, mse, expected):
    box = {"delta_var": delta, "mse": mse}
    assert C.judge_box(C.CLAIMS["variance_loss"], box, {}) == expected


def replicate(subject: str, delta: float, mse: float, setting=DENSE) -> dict:
    return C.judge("variance_loss", subject, [setting], {"delta_var": delta, "mse": mse},
                   f"delta_var {delta} vs mse {mse}",
                   {"delta_var": [f"run-{subject}", "variance_loss/delta_var_recon"],
                    "mse": [f"run-{subject}", "variance_loss/mse_recon"]})


def test_replicates_are_pooled_into_one_claim_judged_on_its_intervals():
    seeds = [replicate(s, d, m) for s, d, m in (("dense-s0", 0.0201, 0.0196),
                                                 ("dense-s0@r1", 0.0198, 0.0199),
                                                 ("dense-s0@r2", 0.0203, 0.0200))]
    other = replicate("dense-s1", 0.0202, 0.0200)
    claims = C.pool_replicates([seeds[0], other, *seeds[1:]])
    assert [c["subject"] for c in claims] == ["dense-s0", "dense-s1"]
    pooled, alone = claims
    assert alone is other  # a claim without replicates is as it was
    mean, lo, hi = C.interval([0.0201, 0.0198, 0.0203])
    assert pooled["measured"]["delta_var"] == pytest.approx(mean)
    assert pooled["intervals"]["delta_var"] == pytest.approx([lo, hi])
    assert (pooled["rule_outcome"], pooled["verdict"]) == (C.HOLDS, C.REPLICATION)
    assert pooled["summary"].startswith("over 3 seeds (95% intervals): delta_var 0.02007 [")
    assert pooled["runs"] == ["run-dense-s0", "run-dense-s0@r1", "run-dense-s0@r2"]
    # stored and read back (claims.json), judged again from its replicates: the same
    assert C.rejudge(json.loads(json.dumps(pooled))) == json.loads(json.dumps(pooled))
    # one seed far off widens the interval over the threshold: inconclusive, not "holds"
    wide = C.pooled([*seeds[:2], replicate("dense-s0@r2", 0.010, 0.0200)])
    assert wide["rule_outcome"] == C.INCONCLUSIVE
    assert "1 inconclusive" in C.counts([wide])
    # a replicate whose training did not settle withholds the pooled verdict, saying why
    unsettled = C.training_setting("fashion-mnist", "dense 784-256-64-32-16", "elbo", 3,
                                   [0.05, 0.04, 0.03], "run-unsettled")
    held = C.pooled([*seeds[:2], replicate("dense-s0@r2", 0.0203, 0.0200, unsettled)])
    assert held["verdict"] == C.NOT_JUDGED and any("not settled" in w for w in held["withheld"])
    # measured in too few replicates: not measured, saying in how many
    missing = C.not_measured("variance_loss", "dense-s0@r2", [DENSE], "no active variable")
    assert C.pooled([*seeds[:2], missing])["summary"] == "not measured: in 1 of 3 replicates"


def test_renormalisation_is_judged_where_the_authors_would_apply_it():
    """BalancingVAE renormalises only where the second stage shows an evident variance loss
    (delta_var > 0.25 x mse on the first stage's codes): there the claim is judged; where
    the condition fails the verdict is withheld with that reason, the rule's outcome kept."""
    from analysis.claims import NOT_JUDGED, REPLICATION, second_stage_claims

    metrics = {"fid/f": 100.0, "fid/f/two_stage": 90.0, "kid/f/two_stage": 0.03,
               "fid/f/two_stage_renorm_authors": 80.0, "kid/f/two_stage_renorm_authors": 0.02,
               "fid/f/two_stage_renorm_variable": 85.0,
               "kid/f/two_stage_renorm_variable": 0.025,
               **{f"variance_loss/delta_var_gen/{s}": 0.01 for s in (
                   "two_stage", "two_stage_renorm_authors", "two_stage_renorm_variable")},
               "second_stage/mse": 0.2}
    setting = {"dataset": "celeba", "group": "CelebA", "model": "m", "loss": "KL balancing",
               "epochs": None, "val_mse_slope": None, "val_mse_tail": [],
               "has_val_mse": False, "run_id": None, "reduced": None, "learning": None,
               "auxiliary": False}
    for delta, verdict in ((0.06, REPLICATION), (0.04, NOT_JUDGED)):
        m = {**metrics, "second_stage/delta_var": delta,
             "second_stage/authors_renormalise": float(delta > 0.25 * 0.2)}
        _, renorm = second_stage_claims("s", [setting], "f", m, "run")
        assert renorm["rule_outcome"] == "holds" and renorm["verdict"] == verdict
        assert ("does not hold" in renorm["summary"]) == (verdict == NOT_JUDGED)
    assert any("would not apply it" in w for w in renorm["withheld"])


def test_a_study_description_fits_mlflows_tag_limit():
    """MLflow keeps 8000 characters of a tag and truncates the rest (make run's description
    had 17,660): a few claims get a row each with links to their runs; many, run ids
    without links; more still, as many rows as fit and how many more there are."""
    from analysis.claims import judge
    from jobs.verdicts import DESCRIPTION_LIMIT, study_description

    def claims(n: int) -> list[dict]:
        return [judge("relocation", f"pair {i} " + "x" * 60, [], {"M": 1.0, "own": 1.0,
                                                                  "M_ols_full": 1.0},
                      "M", {k: [f"{i:032x}"[:-1] + k[0], "m"] for k in ("M", "own", "x")})
                for i in range(n)]

    def link(r: str) -> str:
        return f"http://127.0.0.1:5000/#/experiments/1/runs/{r}?workflowType=machine_learning"

    few = study_description("s", claims(3), link)
    assert few.count("\n| ") == 3 + 2 and link(f"{0:032x}"[:-1] + "M") in few
    for n in (40, 400):
        text = study_description("s", claims(n), link)
        assert len(text) <= DESCRIPTION_LIMIT and "http" not in text
        rows = text.count("\n| ") - 2
        assert rows == n or f"... and {n - rows} more claims in claims_table.json." in text
    assert "more claims" in study_description("s", claims(400), link)
