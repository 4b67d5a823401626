"""The main job end to end on the bundled digits: parent run, children, summary."""

import mlflow

from jobs import run as main_job


def test_main_job_trains_three_models_under_one_parent(ray_session, workdir, capsys):
    uri = f"sqlite:///{workdir}/mlflow.db"
    assert main_job.main(["--tracking-uri", uri, "--experiment", "main",
                          "--dataset", "digits", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    parent_id = out.split("MLflow run id: ")[1].split()[0]
    mlflow.set_tracking_uri(uri)
    parent = mlflow.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["latentatlas.kind"] == "main"
    children = mlflow.search_runs(experiment_names=["main"], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    names = sorted(r.info.run_name for r in children)
    assert names == ["main-conv-s0", "main-dense-s0", "main-dense-s1"]
    assert all("val/mse" in r.data.metrics for r in children)
    assert "== main job ==" in out and "mlflow ui --backend-store-uri" in out
