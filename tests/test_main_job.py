"""The main job end to end on the bundled digits: every step logged under one parent, and
the claims report. On 8x8 digits the seed's dense setting (BCE + KL) leaves no variable
active (even after 30 epochs), so the job skips its sector steps and says so; those steps
are driven on known encodings in test_encode_stats."""

import re

import mlflow
import numpy as np
import pytest

from jobs import run as main_job


def test_main_job_runs_every_step_under_one_parent(ray_session, workdir, capsys):
    uri = f"sqlite:///{workdir}/mlflow.db"
    assert main_job.main(["--tracking-uri", uri, "--experiment", "main",
                          "--dataset", "digits", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    parent_id = out.split("MLflow run id: ")[1].split()[0]
    mlflow.set_tracking_uri(uri)
    parent = mlflow.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["latentatlas.kind"] == "main"

    def children(of):
        return mlflow.search_runs(experiment_names=["main"], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{of}'")

    kids = children(parent_id)
    kinds = sorted(r.data.tags["latentatlas.kind"] for r in kids)
    assert kinds == (["fid"] * 2 + ["regularisation"] + ["relocate"] * 4 + ["train"] * 7
                     + ["translate-study"])
    trained = {r.info.run_name: r for r in kids if r.data.tags["latentatlas.kind"] == "train"}
    assert sorted(trained) == ["main-classifier", "main-conv-s0", "main-dcgan", "main-dense-s0",
                               "main-dense-s1", "main-recoder", "main-second-stage"]
    for name, run in trained.items():  # each VAE's stats run hangs under the model's run
        if not any(vae in name for vae in ("dense", "conv")):
            continue
        (stats_run,) = [r for r in children(run.info.run_id)
                        if r.data.tags["latentatlas.kind"] == "stats"]
        assert "latent/inactive" in stats_run.data.metrics
    assert trained["main-recoder"].data.metrics["inversion/latent_mse"] < 1  # beats guessing 0
    # FIDs in the features of the classifier this job trained, pinned to its version
    fids = {r.info.run_name: r for r in kids if r.data.tags["latentatlas.kind"] == "fid"}
    registered = trained["main-classifier"].data.tags["latentatlas.registered"]
    key = f"fid/classifier-digits-v{registered.rsplit('/', 1)[1]}"
    for label in ("dense-s0", "dense-s1"):
        assert {key, f"{key}/gmm"} <= set(fids[f"fid {label}"].data.metrics)
    assert f"{key}/two_stage_renorm" in fids["fid dense-s0"].data.metrics
    check_second_stage(trained["main-second-stage"], trained["main-dense-s0"])
    m = fids["fid dense-s0"].data.metrics  # the second stage's own variance loss, and the
    # authors' rule for renormalising (delta_var / mse > 0.25)
    assert m["second_stage/authors_renormalise"] == float(
        m["second_stage/delta_var"] > 0.25 * m["second_stage/mse"])
    relocated = {r.info.run_name for r in kids if r.data.tags["latentatlas.kind"] == "relocate"}
    assert {"relocate dense-s0->dcgan", "relocate dcgan->dense-s0"} <= relocated
    relocations = [r for r in kids if r.data.tags["latentatlas.kind"] == "relocate"]
    assert all("relocation/M" in r.data.metrics for r in relocations)
    (translators,) = [r for r in kids if r.data.tags["latentatlas.kind"] == "translate-study"]
    check_translators(translators)
    (regularity,) = [r for r in kids if r.data.tags["latentatlas.kind"] == "regularisation"]
    check_regularisation_pictures(regularity, children(regularity.info.run_id), workdir)
    for heading in ("== main job ==", "the seed's claims beside what was measured",
                    "mlflow ui --backend-store-uri"):
        assert heading in out
    assert "note: no variable of dense-s0 is active: no sectors" in out
    assert "no sectors, so no generative range" in out
    claims = out.split("the seed's claims beside what was measured")[1]
    # both sides' settings, the two MSEs named apart, the seed's figures from its table
    assert "(digits, dense_vae, BCE + KL, 1 epoch)" in claims
    assert "(digits, conv_vae, KL balancing, 1 epoch)" in claims
    assert "dense-s0->dcgan (type 3)" in claims and "dcgan->dense-s0 (type 3)" in claims
    assert "reduced to fit the job" in out
    assert "renormalising second-stage samples improves them [dense-s0]" in claims
    assert "mse(z=mu)" in claims and "prior samples: delta_var" in claims
    assert "8 of 16 inactive (MNIST, dense 784-256-64-32-16, BCE + KL)" in claims
    assert "not measured: no active variable, so no sectors" in claims
    assert "rule:     KL to Gaussian codes above its sampling-noise p99" in claims
    assert re.search(r"verdicts: \d+ holds, \d+ does not hold, [1-9]\d* not comparable", claims)
    assert "val mse(z~q)" in out
    # a terminal's width; every number of the summary stays in the parent run's table
    summary = out.split("== main job ==")[1].split("== the seed's claims")[0]
    assert max(map(len, summary.splitlines())) <= 100
    table = main_job_table(parent_id)
    assert table["step"][0] == "train dense-s0" and len(table["run_id"]) == len(table["step"])
    assert set(table) > {"val mse(z~q)", "inactive", "M", "aggregate_kl_sampling"}


def check_translators(run):
    """Twelve ordered pairs of the job's four encodings, the GAN's pairs with the authors'
    GAN regulariser; dense codes of 1-epoch digits have no active variable, so no support
    set there (said in the run), while the DCGAN's codes have sectors."""
    pairs = main_job_table(run.info.run_id, "pairs.json")
    assert len(pairs["source"]) == 12 and set(pairs["source"]) == {
        "dense-s0", "dense-s1", "conv-s0", "dcgan"}
    for src, tgt, l2 in zip(pairs["source"], pairs["target"], pairs["l2"], strict=True):
        assert l2 == (0.0015 if "dcgan" in (src, tgt) else 1e-4)
    assert "no support-set anchors from" in run.data.tags["latentatlas.notes"]
    rows = main_job_table(run.info.run_id, "translations.json")
    sources = {s for s, a in zip(rows["source"], rows["anchor"], strict=True) if a == "support"}
    assert "dcgan" in sources and "dense-s0" not in sources
    assert set(rows["budget"]) == {"0.25d", "1d", "4d", "all"}


def check_second_stage(stage2, first):
    """The second stage learned dense-s0's training codes; its spec carries their moments
    (what renormalisation scales to) and names its first stage."""
    from latentatlas.encode import open_encoding

    spec = mlflow.artifacts.load_dict(f"runs:/{stage2.info.run_id}/model/extra_files/"
                                      "model_spec.json")
    assert spec["first_stage"] == f"runs:/{first.info.run_id}/model"
    rows = open_encoding(spec["encoding"]).arrays(["mu", "logvar"])
    assert spec["model"]["latent_dim"] == rows["mu"].shape[1] == 16
    np.testing.assert_allclose(spec["var_mu"], rows["mu"].astype(np.float64).var(0), rtol=1e-5)
    np.testing.assert_allclose(spec["mean_sigma2"], np.exp(rows["logvar"]).mean(0), rtol=1e-4)


def main_job_table(run_id: str, name: str = "summary.json") -> dict:
    from latentatlas.tracking import Recorder

    return Recorder(mlflow.get_tracking_uri(), "main").table(run_id, name)


def check_regularisation_pictures(parent, trained, workdir):
    """3-D VAEs with and without sampling (scatter, prior slices, aggregate KL of their test
    encodings), and a 2-D VAE traced through its first epoch, as children of the
    regularisation run."""
    from analysis.regularity import aggregate_gaussian_kl
    from latentatlas.encode import open_encoding

    client = mlflow.MlflowClient()
    assert parent.info.status == "FINISHED"
    by_latent = sorted((r.data.params["model.latent_dim"], r.data.params.get(
        "model.sample_posterior"), r) for r in trained)
    assert [(d, s) for d, s, _ in by_latent] == [("2", "True"), ("3", "False"), ("3", "True")]
    for latent_dim, sampling, run in by_latent:
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        if latent_dim == "3":
            assert {"codes_3d.png", "prior_slices.png"} <= files
            label = "sampling" if sampling == "True" else "no_sampling"
            assert run.data.metrics["regularity/aggregate_kl"] == pytest.approx(
                parent.data.metrics[f"regularity/aggregate_kl_{label}"])
            enc = open_encoding(workdir / "encodings" / f"regularisation-{parent.info.run_id[:8]}"
                                / f"3d-{label.replace('_', '-')}")
            assert enc.meta.rows == 297 and enc.meta.model_uri.endswith(
                f"{run.info.run_id}/model")  # the whole digits test split
            assert run.data.metrics["regularity/aggregate_kl"] == pytest.approx(
                aggregate_gaussian_kl(enc.arrays(["mu"])["mu"]), rel=1e-6)
        else:
            assert {"trajectories.png", "first_epoch_trace.npz"} <= files
            trace = np.load(mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="first_epoch_trace.npz"))
            # 1500 digits in full batches of 128: 11 steps, each traced before it, then once
            # after the last
            assert trace["codes"].shape == (12, 10, 2)
            assert sorted(trace["labels"].tolist()) == list(range(10))
