"""The command line contract: verbs, one-line errors, exit codes, the runs table."""


import mlflow
from conftest import run_cli_module as run_module

from jobs import runs as runs_job
from jobs.cli import main as cli_main


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: dense_vae\n  latent_dim: -3\n")
    res = run_module(["jobs.train", str(bad)], tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: model.latent_dim:")
    assert not (tmp_path / "mlflow.db").exists()  # nothing half-written


def test_missing_config_and_unknown_verb(tmp_path, capsys):
    res = run_module(["jobs.cli", "train", "nope.yaml"], tmp_path)
    assert res.returncode == 2 and res.stderr.strip() == "error: nope.yaml: config file not found"
    assert cli_main(["frobnicate"]) == 2
    assert "unknown verb 'frobnicate'" in capsys.readouterr().err
    assert cli_main([]) == 2
    assert "verbs:" in capsys.readouterr().out


def test_runs_prints_headline_metrics(mlflow_store, capsys):
    with mlflow.start_run(run_name="some-vae") as run:
        mlflow.log_params({"model.name": "dense_vae", "kl.policy": "beta",
                           "model.latent_dim": 16})
        mlflow.log_metrics({"val/mse": 0.0123, "fid/classifier-x-v3": 41.5,
                            "fid/classifier-x-v3/gmm": 12.25})
        mlflow.set_tag("latentatlas.kind", "train")
    assert runs_job.main(["--tracking-uri", mlflow_store, "--experiment", "test"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if run.info.run_id in line)
    assert "some-vae" in row and "dense_vae" in row and "beta" in row and "0.0123" in row
    # the prior's FID and the feature space it was measured in
    assert "41.5" in row and "classifier-x-v3" in row and "12.25" not in row


def test_runs_shows_a_gans_numbers_and_no_kl_policy(mlflow_store, capsys):
    with mlflow.start_run(run_name="some-gan") as run:
        mlflow.log_params({"model.name": "dcgan", "kl.policy": "balanced",
                           "model.latent_dim": 64})
        mlflow.log_metrics({"gan/d_real": 0.61, "gan/d_fake": 0.39})
        mlflow.set_tags({"latentatlas.kind": "train", "latentatlas.family": "gan"})
    assert runs_job.main(["--tracking-uri", mlflow_store, "--experiment", "test"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if run.info.run_id in line)
    assert "dcgan" in row and "0.61" in row and "0.39" in row and "balanced" not in row
