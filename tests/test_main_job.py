"""The main job end to end on the bundled digits: every step logged under one parent."""

import mlflow

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
    assert kinds == ["relocate"] * 3 + ["sectors", "support-set"] + ["train"] * 3
    trained = {r.info.run_name: r for r in kids if r.data.tags["latentatlas.kind"] == "train"}
    assert sorted(trained) == ["main-conv-s0", "main-dense-s0", "main-dense-s1"]
    for run in trained.values():  # each model's stats run hangs under the model's run
        (stats_run,) = [r for r in children(run.info.run_id)
                        if r.data.tags["latentatlas.kind"] == "stats"]
        assert "latent/inactive" in stats_run.data.metrics
    relocations = [r for r in kids if r.data.tags["latentatlas.kind"] == "relocate"]
    assert all("relocation/M" in r.data.metrics for r in relocations)
    for heading in ("== main job ==", "the seed's claims beside what was measured",
                    "mlflow ui --backend-store-uri"):
        assert heading in out
