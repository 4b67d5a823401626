"""encode and stats through real Ray Data and a real sqlite MLflow, on a crafted model
whose answers are known: variable 3 is dead in the encoder, the decoder ignores 1."""


import mlflow
import numpy as np
import pytest
import torch
from conftest import linearly_related, make_idx_dataset, mlflow_state_restored, use_store

from jobs import steps
from latentatlas import model_store, tracking
from latentatlas.config import DenseVAEConfig
from latentatlas.data import load_split
from latentatlas.encode import open_encoding
from latentatlas.encode.pipeline import encode
from latentatlas.errors import UserError
from latentatlas.models import build_model


@pytest.fixture(scope="module")
def crafted(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("crafted")
    # The working directory and MLflow's state are restored for the modules after this one.
    with mlflow_state_restored(), pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        yield from crafted_model(root)


def crafted_model(root):
    uri = use_store(f"sqlite:///{root}/mlflow.db", "encode-test")
    data = make_idx_dataset(root / "idx", n_train=40, n_test=300)
    cfg = DenseVAEConfig(hidden=[16], latent_dim=4)
    torch.manual_seed(0)
    model = build_model(cfg, (1, 28, 28))
    with torch.no_grad():
        model.mu.weight *= 30  # spread the codes: variables 0-2 active, as in a trained VAE
        model.logvar.bias -= 2  # ... and confident (sigma^2 ~ 0.14)
        model.mu.weight[3] = 0
        model.mu.bias[3] = 0.0  # mu_3 == 0 for every input
        model.logvar.weight[3] = 0
        model.logvar.bias[3] = 0.0  # sigma_3^2 == 1
        model.decoder[0].weight[:, 1] = 0  # the decoder ignores z_1
    with mlflow.start_run(run_name="crafted") as run:
        model_store.log_model(model, cfg.model_dump(), (1, 28, 28))
    yield {"uri": uri, "model": model.eval(), "model_uri": f"runs:/{run.info.run_id}/model",
           "run_id": run.info.run_id, "data": data, "root": root,
           "recorder": tracking.Recorder(uri, "encode-test")}


@pytest.fixture(scope="module")
def encodings(crafted):
    """The crafted model's test split, encoded in one block by one actor and in two by two
    (every later test reads these; a dataset split encoded twice by one model)."""
    kw = dict(data_path=str(crafted["data"]), batch_size=64)
    return (encode(crafted["model_uri"], "mnist", "test", crafted["root"] / "enc1", blocks=1,
                   actors=1, **kw),
            encode(crafted["model_uri"], "mnist", "test", crafted["root"] / "enc2", blocks=2,
                   actors=2, **kw))


def test_encode_round_trip_matches_torch_and_is_block_invariant(crafted, encodings):
    enc1, enc2 = encodings
    out1 = enc1.path
    a, b = enc1.arrays(), enc2.arrays()
    assert a["mu"].shape == (300, 4) and a["mu"].dtype == np.float32
    assert a["logvar"].dtype == np.float32 and a["index"].tolist() == list(range(300))
    split = load_split("mnist", "test", crafted["data"])
    assert a["label"].tolist() == split.labels.tolist()
    with torch.no_grad():
        mu, logvar = crafted["model"].encode(torch.from_numpy(split.images).float() / 255)
    np.testing.assert_allclose(a["mu"], mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["logvar"], logvar.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b["mu"], a["mu"], rtol=1e-5, atol=1e-6)
    meta = open_encoding(out1).meta
    assert meta.model_uri == crafted["model_uri"] and meta.dataset == "mnist"
    assert meta.split == "test" and meta.rows == 300 and meta.version
    assert meta.input_shape == (1, 28, 28) and meta.load_split().images.shape == (300, 1, 28, 28)
    again = encode(crafted["model_uri"], "mnist", "test", out1, data_path=str(crafted["data"]),
                   blocks=1, actors=1, batch_size=64)
    assert np.array_equal(again.arrays()["mu"], a["mu"])  # re-encoding is identical
    # A small split is encoded in this process by default: the same rows, columns and types
    here = encode(crafted["model_uri"], "mnist", "test", crafted["root"] / "enc-here",
                  data_path=str(crafted["data"]), batch_size=64)
    h = here.arrays()
    assert set(h) == set(a) and h["index"].tolist() == a["index"].tolist()
    assert h["label"].tolist() == a["label"].tolist() and h["mu"].dtype == np.float32
    np.testing.assert_allclose(h["mu"], a["mu"], rtol=1e-5, atol=1e-6)
    assert here.dataset().count() == 300  # Ray Data reads it like its own shards
    leftovers = [p.name for p in crafted["root"].iterdir() if p.name.startswith(".enc")]
    assert leftovers == []


def test_encode_refuses_bad_input_and_writes_nothing(crafted):
    out = crafted["root"] / "never"
    with pytest.raises(UserError, match="cannot resolve the model"):
        encode("runs:/0123456789abcdef/model", "mnist", "test", out,
               data_path=str(crafted["data"]))
    with pytest.raises(UserError, match=r"images are \(1, 8, 8\) but the model expects"):
        encode(crafted["model_uri"], "digits", "test", out)
    assert not out.exists()
    with pytest.raises(UserError, match="not a LatentAtlas encoding"):
        open_encoding(crafted["root"])


def test_stats_finds_the_dead_and_the_ignored_variable(crafted, encodings):
    enc = encodings[0]
    run_id, out = steps.stats(crafted["recorder"], str(enc.path), actors=2)
    s = out.stats
    assert s["var_mu"][3] == 0.0 and s["mean_sigma2"][3] == pytest.approx(1.0)
    assert s["stationary"][3] == pytest.approx(1.0) and bool(s["inactive"][3])
    assert out.gain[1] == 0.0 and out.gain[3] == 0.0  # exactly: the decoder never sees them
    # the numbers equal an in-memory numpy computation on the same codes
    codes = enc.arrays()
    np.testing.assert_allclose(s["var_mu"], codes["mu"].astype(np.float64).var(axis=0),
                               rtol=1e-9, atol=1e-15)
    split = load_split("mnist", "test", crafted["data"])
    x = split.images.reshape(300, -1) / 255.0
    with torch.no_grad():
        x_hat = crafted["model"].decode(torch.from_numpy(codes["mu"])).flatten(1).double().numpy()
    m = out.metrics
    assert m["variance_loss/mse_recon"] == pytest.approx(np.mean((x - x_hat) ** 2), rel=1e-5)
    assert m["variance_loss/delta_var_recon"] == pytest.approx(
        x.var(axis=0).mean() - x_hat.var(axis=0).mean(), rel=1e-5)
    assert m["latent/inactive"] >= 1 and m["latent/zero_out_mse"] >= 0
    # Inactive: the dead z_3 only. The baseline zeroes as many of the least informative
    # active variables, on the same 16 prior samples (seed 0), recomputed by hand. For this
    # crafted model that is z_0: zeroing it lowers the untrained decoder's error the most
    # (gains by hand: z_0 ~ -6.7e-3, z_1 == 0, z_2 ~ -1.1e-3).
    assert m["latent/inactive"] == 1 and bool(s["inactive"][3])
    err = np.mean((x - x_hat) ** 2)
    by_hand = []
    for i in range(4):
        zi = torch.from_numpy(codes["mu"]).clone()
        zi[:, i] = 0
        with torch.no_grad():
            x_i = crafted["model"].decode(zi).flatten(1).double().numpy()
        by_hand.append(np.mean((x - x_i) ** 2) - err)
    weakest = 0
    assert by_hand[0] < -1e-3 and by_hand[0] < by_hand[2] - 1e-3 and by_hand[1] == 0.0
    np.testing.assert_allclose(out.gain, by_hand, rtol=0, atol=1e-5 * err)
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    zeroed = z.clone()
    zeroed[:, weakest] = 0
    with torch.no_grad():
        want = (crafted["model"].decode(z) - crafted["model"].decode(zeroed)).pow(2).mean()
    assert m["latent/zero_out_baseline_mse"] == pytest.approx(float(want), rel=1e-5)
    assert m["latent/zero_out_mse"] > 0  # the decoder reads z_3; only the encoder never sets it
    run = mlflow.get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == crafted["run_id"]
    assert run.data.metrics["latent/active_units"] == m["latent/active_units"]
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"latent_stats.json", "information_gain.json", "latent_stats.png",
            "information_gain.png", "zero_out_inactive.png", "traversal_top7.png",
            "variance_vs_mse.png"} <= names


def test_relocation_between_two_encodings_of_one_model_is_the_identity(crafted, encodings):
    """Source == target model: every estimator fitted on all fit rows must find the
    identity map (up to the dead variable), L = 0 and M = R = M_target_own."""
    a, b = encodings
    run_id, out = steps.relocate(crafted["recorder"], str(a.path), str(b.path), fit="all",
                                 estimators=["ols", "ridge", "ols_nobias"])
    m = out.metrics
    assert m["relocation/fit_rows"] == 240 and m["relocation/eval_rows"] == 60
    assert m["relocation/L"] == pytest.approx(0, abs=1e-8)
    assert m["relocation/M"] == pytest.approx(m["relocation/R"], rel=1e-4)
    assert m["relocation/M_target_own"] == pytest.approx(m["relocation/R"], rel=1e-6)
    # R computed by hand on the held-out rows (index % 5 == 0)
    split = load_split("mnist", "test", crafted["data"])
    held = np.arange(0, 300, 5)
    codes = a.arrays()["mu"][held]
    with torch.no_grad():
        x_hat = crafted["model"].decode(torch.from_numpy(codes)).numpy()
    want = ((split.images[held] / 255.0 - x_hat) ** 2).mean()
    assert m["relocation/R"] == pytest.approx(want, rel=1e-5)
    per_class = out.errors
    assert per_class["count"][-1] == 60 and per_class["count"][:-1].sum() == 60
    names = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "maps")}
    # on fit all, the fits on all rows are the maps: one name each, `<estimator>_full`
    assert names == {"maps/map_ols_full.npz", "maps/map_ridge_full.npz",
                     "maps/map_ols_nobias_full.npz"}
    assert m["relocation/M"] == m["relocation/M_ols_full"] and "relocation/M_ols" not in m


def test_relocation_refuses_encodings_of_different_data(crafted, encodings):
    small = encode(crafted["model_uri"], "mnist", "test", crafted["root"] / "small", limit=100,
                   data_path=str(crafted["data"]), actors=1)
    with pytest.raises(UserError, match=r"encode different data: rows is 100 vs 300"):
        steps.relocate(crafted["recorder"], str(small.path), str(encodings[0].path))


def test_sectors_and_support_set_on_real_encodings(crafted, encodings):
    from analysis.sectors import sector_ids
    enc = encodings[1]  # no stats run on this one yet
    codes = enc.arrays()
    # The untrained model's codes are small: a threshold at their scale fills sectors.
    t = float(np.quantile(np.abs(codes["mu"][:, :3]), 0.2))
    recorder = crafted["recorder"]
    run_id, s = steps.sectors(recorder, str(enc.path), threshold=t)
    m = s.metrics
    assert s.ordering == "var_mu"  # no stats run on this encoding yet
    # active by Asperti's rule, the one sectors use
    active = int(((codes["mu"].astype(np.float64).var(axis=0) >= 0.05)
                  & (np.exp(codes["logvar"].astype(np.float64)).mean(axis=0) <= 0.95)).sum())
    assert active == 3 and s.k == 3 and s.k_requested == 7  # reduced to the active ones
    assert 3 not in s.variables.tolist()  # the dead variable is never used
    ids = sector_ids(codes["mu"], s.variables, t)
    np.testing.assert_array_equal(s.ids, ids)
    assert s.counts.sum() == (ids >= 0).sum() and len(s.counts) == 8
    assert m["sectors/nonempty"] == (s.counts > 0).sum()
    table = mlflow.load_table("sector_counts.json", run_ids=[run_id])
    assert table["count"].tolist() == s.counts.tolist()

    steps.stats(recorder, str(enc.path), actors=1)  # now ordered by the information gain
    _, s2 = steps.sectors(recorder, str(enc.path), threshold=t)
    assert s2.ordering == "information_gain"

    run_id, chosen = steps.support_set(recorder, str(enc.path), exclude="label=3", seed=7,
                                       threshold=t)
    m, index = chosen.metrics, chosen.index
    assert m["support/size"] == len(index) == 4  # the latent dimension
    labels = codes["label"][index]
    assert 3 not in labels.tolist()
    chosen = s2.ids[np.searchsorted(s2.index, index)]
    nonempty = int((s2.counts > 0).sum())
    assert len(set(chosen[:min(4, nonempty)].tolist())) == min(4, nonempty)
    assert m["support/pairwise_mse"] > 0 and m["support/random_pairwise_mse"] > 0
    with pytest.raises(UserError, match="has no such column"):
        steps.support_set(recorder, str(enc.path), exclude="Wearing_Hat=1")


def test_support_set_fit_beside_full_fit_and_size_sweep(crafted, encodings):
    from analysis.studies.maps import support_sizes

    a, b = encodings
    run_id, out = steps.relocate(crafted["recorder"], str(a.path), str(b.path), fit="support",
                                 estimators=["ridge", "ols"])
    m = out.metrics
    assert m["relocation/fit_rows"] == 4
    assert support_sizes(4) == [2, 4, 8, 16]
    # OLS with a bias on 4 rows in 4 dimensions (one of them dead): the rows determine at
    # most 3 directions, and the run says which fits were rank-deficient
    assert m["relocation/rank_ols"] <= 3 and m["relocation/rank_ols_full"] == 3
    # no number of rows determines the dead variable (its code is 0 in every row)
    assert m["relocation/rank_ridge_support16"] == 3
    assert "ols" in out.rank_deficient and "ols_full" in out.rank_deficient
    tag = mlflow.get_run(run_id).data.tags["latentatlas.rank_deficient"]
    assert set(tag.split(",")) == set(out.rank_deficient)
    for key in ("M_ridge_full", "M_ols_full", "M_ridge_support2", "M_ridge_support16"):
        assert f"relocation/{key}" in m
    # same model on both sides: the full fit is the identity, so M equals R
    assert m["relocation/M_ols_full"] == pytest.approx(m["relocation/R"], rel=1e-4)
    names = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"support_size_sweep.png", "support_vs_full.json"} <= names


def test_the_main_jobs_sector_step_reports_density_support_and_rank(crafted, encodings):
    """The main job's sector steps (sectors, support-set and the support-set fit of
    jobs/configs/main.yaml) on encodings whose active variables are known: sectors against
    Gaussian codes, the support set, the support-set fits with their ranks, and the claims
    rows they produce."""
    import argparse

    from jobs import study
    from jobs.kinds import KINDS, Context, Encoding, Stats

    parent = mlflow.MlflowClient().create_run(
        mlflow.get_experiment_by_name("encode-test").experiment_id, run_name="main")
    from analysis.claims import training_setting

    ctx = Context(argparse.Namespace(), "mnist", crafted["recorder"], parent.info.run_id, 784)
    declared = study.resolve(study.load_job(study.MAIN))
    trained_as = training_setting("mnist", "dense 784-256-64-32-16", "elbo", 10, [1.0, 0.999],
                                  "run")
    enc = {label: Encoding(label=label, address=str(e.path), setting=trained_as,
                           model_name="dense_vae", rows=e.meta.rows, latent_dim=e.latent_dim)
           for label, e in zip(("dense-s0", "dense-s1"), encodings, strict=True)}
    _, measured = steps.stats(crafted["recorder"], str(encodings[0].path), actors=1)
    stats = Stats(label="dense-s0", inactive_all=bool(measured.stats["inactive"].all()),
                  information_gain=measured.gain.tolist())
    outs = []
    for name, inputs in (
            ("sectors-dense-s0", {"encoding": enc["dense-s0"], "stats": stats}),
            ("support-set-dense-s0", {"encoding": enc["dense-s0"], "sectors": None}),
            ("relocate-dense-s0-dense-s1", {"source": enc["dense-s0"],
                                            "target": enc["dense-s1"], "support": None})):
        inputs = {k: outs[-1] if v is None else v for k, v in inputs.items()}
        outs.append(KINDS[declared[name].spec.kind].run(ctx, declared[name], inputs))
    # the relocation fitted on the support set its chain chose, not one of its own
    assert outs[2].metrics["relocation/fit_rows"] == len(outs[1].index)
    assert all(i % 5 for i in outs[1].index)  # chosen among the fit rows, not held-out ones
    outs = [out.model_dump() for out in outs]
    claims = {c["key"]: c for out in outs for c in out["claims"]}
    density = claims["density_uneven"]
    assert density["setting"]["measured"] == [trained_as]
    assert "from noise alone (p99)" in density["summary"]
    assert "pairwise MSE" in claims["support_far_apart"]["summary"]
    fit = claims["support_suffices"]["summary"]
    assert fit.startswith("ridge_authors M") and "on 4 support rows" in fit
    assert claims["relocation"]["summary"].startswith("ridge_authors on 4 support rows: M ")
    done = [s["step"] for out in outs for s in out["summary"]]
    assert done == ["sectors dense-s0", "support set dense-s0", "relocate dense-s0->dense-s1"]
    (relocated,) = mlflow.search_runs(
        experiment_names=["encode-test"], output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and "
                      "tags.`latentatlas.kind` = 'relocate'")
    assert relocated.data.metrics["relocation/rank_ols"] <= 3  # 4 rows, a bias, a dead variable


def test_studies_run_without_a_tracking_store_and_return_typed_results(crafted, encodings,
                                                                       monkeypatch):
    """Measuring needs no MLflow: with the tracking store pointed at a path that cannot
    exist, every study runs on the crafted encodings and its result builds its Record."""
    from analysis.studies.latent_space import LatentSpaceStats, measure_latent_space
    from analysis.studies.maps import Relocation, relocate_codes
    from analysis.studies.sectors import (
        SectorCounts,
        SupportSet,
        choose_support_set,
        count_sectors,
    )
    from latentatlas.record import Record

    model = model_store.load_vae(crafted["model_uri"])  # loading is the caller's business
    nowhere = "sqlite:////nonexistent/dir/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", nowhere)
    mlflow.set_tracking_uri(nowhere)
    try:
        a, b = encodings
        measured = measure_latent_space(a, *model, actors=1)
        sectors = count_sectors(a, measured.gain, threshold=1.0)
        support = choose_support_set(sectors)
        moved = relocate_codes(a, b, model, model, estimators=["ols"])
        results = [(measured, LatentSpaceStats), (sectors, SectorCounts),
                   (support, SupportSet), (moved, Relocation)]
        for result, kind in results:
            assert isinstance(result, kind) and isinstance(result.record(), Record)
        assert measured.metrics["latent/inactive"] == 1 and sectors.ordering == "information_gain"
        assert moved.metrics["relocation/L"] == pytest.approx(0, abs=1e-8)
    finally:
        mlflow.set_tracking_uri(crafted["uri"])


def test_small_inputs_run_here_with_the_results_of_the_ray_data_path(crafted, encodings):
    """Below LOCAL_ROWS a pass runs in this process (no Ray start, no actors): the same
    functions over the same rows, so the same numbers as on Ray Data."""
    from analysis.information import ranking
    from analysis.linear_maps import fit_from_stats
    from analysis.pairs import streaming_stats
    from analysis.relocation import relocation_errors
    from analysis.studies.latent_space import measure_latent_space
    from analysis.studies.sectors import count_sectors
    from latentatlas.models import share_model

    enc1, enc2 = encodings
    model, spec = model_store.load_vae(crafted["model_uri"])
    ray_path = measure_latent_space(enc2, model, spec, actors=2, here=False)
    here = measure_latent_space(enc2, model, spec, here=True)
    assert ray_path.metrics == pytest.approx(here.metrics, rel=1e-6, abs=1e-9)
    # A gain is a difference of two mean errors: compared on the scale of the error itself
    # (a row order's float32 rounding is ~1e-7 of it), the planted ones exactly.
    err = here.metrics["variance_loss/mse_recon"]
    np.testing.assert_allclose(here.gain, ray_path.gain, rtol=0, atol=1e-5 * err)
    for g in (here.gain, ray_path.gain):
        assert g[1] == 0.0 and g[3] == 0.0  # the decoder ignores z_1; z_3 is always 0
    assert ranking(here.gain).tolist() == ranking(ray_path.gain).tolist()
    for key in ("var_mu", "mean_sigma2"):
        np.testing.assert_allclose(here.stats[key], ray_path.stats[key], rtol=1e-9)

    counted = [count_sectors(enc2, here.gain, threshold=1.0, here=h) for h in (False, True)]
    assert np.array_equal(counted[0].ids, counted[1].ids)
    assert np.array_equal(counted[0].counts, counted[1].counts)

    stats = [streaming_stats(enc1, enc2, per_task=64, here=h) for h in (False, True)]
    assert stats[0].n == stats[1].n == 240
    np.testing.assert_allclose(stats[0].sxy, stats[1].sxy, rtol=1e-12)
    maps = {"ols": fit_from_stats(stats[1], "ols")}
    shared = share_model(model, spec)
    errors = [relocation_errors(enc1, enc2, maps, enc1.meta.load_split(), shared, shared,
                                per_task=64, here=h) for h in (False, True)]
    for key in errors[0]:
        np.testing.assert_allclose(errors[0][key], errors[1][key], rtol=1e-6, atol=1e-12)


@pytest.mark.slow
def test_translate_study_finds_planted_linear_relations(crafted, encodings, capsys):
    """Four encodings whose spaces are exact linear images of one another: the crafted model
    twice, the same model with its latent space rotated (decoder un-rotating it) and
    stretched per variable. OLS on every fit row then moves codes exactly (L ~ 0, M =
    M_target_own), CKA is 1 across the rotation and below 1 across the stretch, SVCCA is 1
    for every pair; the verb writes one run with the table and the figures."""

    from analysis.studies.translators import TRANSLATORS
    from jobs import translate_study as verb

    model = crafted["model"]
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    paths = [str(e.path) for e in encodings]
    for name, m in (("rotated", q), ("stretched", np.diag([3.0, 0.5, 1.0, 2.0]))):
        planted = linearly_related(model, m)
        with mlflow.start_run(run_name=name) as run:
            model_store.log_model(planted, DenseVAEConfig(hidden=[16], latent_dim=4).model_dump(),
                               (1, 28, 28))
        paths.append(str(encode(f"runs:/{run.info.run_id}/model", "mnist", "test",
                                crafted["root"] / name, data_path=str(crafted["data"]),
                                actors=1).path))
    labels = ["one", "same", "rotated", "stretched"]
    run_id, out = steps.translate_study(crafted["recorder"], paths, labels=labels, repeats=2)
    assert len(out.pairs) == 12 and out.eval_rows == 60
    sets_per_source = 3 * 5 * 2 + 1  # support/random/fps x 5 budgets x 2 repeats, all rows
    assert len(out.rows) == 12 * sets_per_source * len(TRANSLATORS)
    for r in out.rows:
        if (r["translator"], r["anchor"]) == ("ols", "all"):
            assert r["anchor_rows"] == 240
            assert r["L"] < 1e-8 * 900  # codes spread ~30
            assert r["M"] == pytest.approx(r["M_target_own"], rel=1e-4)
    pair = {(p["source"], p["target"]): p for p in out.pairs}
    assert pair[("one", "same")]["cka"] == pytest.approx(1, abs=1e-9)
    assert pair[("one", "rotated")]["cka"] == pytest.approx(1, abs=1e-6)
    assert pair[("one", "stretched")]["cka"] < 0.95
    assert all(p["svcca"] == pytest.approx(1, abs=1e-5) for p in out.pairs)
    m = out.metrics
    assert m["translate/ratio/ols/all/all"] == pytest.approx(1, rel=1e-4)
    few = [r["L"] for r in out.rows if (r["translator"], r["anchor"], r["budget"])
           == ("ols", "random", "0.25d")]
    assert np.mean(few) > 1.0  # 2 rows cannot fix a map of the 3 active variables
    client = mlflow.MlflowClient()
    files = {f.path for f in client.list_artifacts(run_id)}
    assert {"translations.json", "pairs.json", "summary.json", "budget_curves.png",
            "similarity_cka.png", "heatmaps_sgd_authors.png"} <= files
    assert client.get_run(run_id).data.tags["latentatlas.kind"] == "translate-study"

    common = ["--tracking-uri", crafted["uri"], "--experiment", "encode-test"]
    assert verb.main([*paths[:3], *common, "--translator", "procrustes", "--anchor", "fps",
                      "--budget", "1", "--repeats", "1", "--eval-rows", "10"]) == 0
    printed = capsys.readouterr().out
    assert "translate/ratio" not in printed and "translate/cka_mean" in printed
    assert verb.main([*paths[:2], *common, "--translator", "cubic"]) == 2
    assert capsys.readouterr().err.splitlines()[0].startswith("error: --translator: unknown cubic")
    small = encode(crafted["model_uri"], "mnist", "test", crafted["root"] / "small100",
                   limit=100, data_path=str(crafted["data"]), actors=1)
    assert verb.main([paths[0], str(small.path), *common]) == 2
    assert "encode different data: rows is 300 vs 100" in capsys.readouterr().err


def test_the_notebook_api_returns_what_the_verbs_measure(crafted, encodings, tmp_path):
    """`import latentatlas as la` loads nothing of the studies until a name is used; the
    functions return the studies' results on the crafted model's encodings: its planted
    inactive variable 3 (mu_3 = 0, sigma_3^2 = 1), the per-variable statistics equal to the
    array function's on the same codes, sector ids equal to la.sector_ids', a relocation
    between two encodings of one model (OLS on every fit row moves codes exactly: M equals
    the target's own error); models are loaded once; record_result logs the verb's run."""
    import subprocess
    import sys

    probe = ("import sys, latentatlas as la; assert 'analysis' not in sys.modules; "
             "assert callable(la.stats) and 'analysis.notebook' in sys.modules; "
             "assert set(la.NOTEBOOK) == {*__import__('analysis.notebook').notebook.__all__, "
             "'record_result'}")
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120)
    import latentatlas as la

    enc1, enc2 = encodings
    s = la.stats(str(enc2.path))
    codes = enc2.arrays(["mu", "logvar"])
    arrays = la.latent_statistics(codes["mu"], codes["logvar"])
    for key in ("var_mu", "mean_sigma2", "inactive"):
        np.testing.assert_allclose(s.stats[key], arrays[key], rtol=1e-9)
    assert arrays["inactive"].tolist() == [False, False, False, True]
    np.testing.assert_allclose(arrays["var_mu"], codes["mu"].astype(np.float64).var(0),
                               rtol=1e-9)
    sec = la.sectors(enc2.path, s, k=2, threshold=0.5)
    np.testing.assert_array_equal(sec.ids, la.sector_ids(codes["mu"], sec.variables, 0.5))
    assert 3 not in sec.variables.tolist()
    moved = la.relocate(enc1.path, enc2.path, fit="all", estimators=["ols"])
    assert moved.metrics["relocation/M"] == pytest.approx(
        moved.metrics["relocation/M_target_own"], rel=1e-4)
    assert moved.metrics["relocation/L"] < 1e-8
    assert la.load_model(crafted["model_uri"]) is la.load_model(crafted["model_uri"])
    uri = f"sqlite:///{tmp_path}/nb.db"
    run_id = la.record_result(s, tracking_uri=uri, experiment="nb")
    logged = mlflow.MlflowClient(uri).get_run(run_id).data
    assert logged.metrics["latent/inactive"] == s.metrics["latent/inactive"] == 1
    assert logged.tags["latentatlas.kind"] == "stats"


def test_the_notebook_walk_through_runs(crafted, encodings, monkeypatch):
    """docs/how-to/notebook.md's session, run as written on two encodings of the crafted
    model in place of make run's (their paths put in place of the doc's)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs/how-to/notebook.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", doc, re.S)
    enc1, enc2 = encodings
    code = code.replace("encodings/dense-s0", str(enc1.path)).replace(
        "encodings/dense-s1", str(enc2.path)).replace("k=4", "k=2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    scope: dict = {}
    exec(compile(code, "docs/how-to/notebook.md", "exec"), scope)
    assert scope["moved"].fit == "support" and scope["run_id"]
    assert len(scope["ids"]) == enc1.meta.rows
