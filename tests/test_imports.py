"""Commands start at once: a verb imports what its input needs, no more. Each check runs in a
fresh interpreter (this session's has imported everything) and reads its `sys.modules`."""

import json
import subprocess
import sys

from conftest import REPO, make_idx_dataset

from jobs.cli import VERBS

HEAVY = ("torch", "ray", "mlflow", "numpy", "pandas", "pydantic", "scipy", "matplotlib")


def imported_after(calls: list[list[str]], cwd, env: dict | None = None) -> list[set[str]]:
    """The heavy modules loaded after each `main(argv)` of `calls`, in one fresh process."""
    script = f"""
import contextlib, io, json, sys
from jobs.cli import main
seen = []
for argv in {calls!r}:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
    seen.append(sorted(m for m in {HEAVY!r} if m in sys.modules))
print(json.dumps(seen))
"""
    res = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                      "PYTHONPATH": str(REPO), **(env or {})})
    assert res.returncode == 0, res.stderr
    return [set(m) for m in json.loads(res.stdout.strip().splitlines()[-1])]


def test_every_verbs_help_imports_no_heavy_module(tmp_path):
    """pydantic alone: a verb's flags are its step kind's options model (jobs/options.py)."""
    calls = [[verb, "--help"] for verb in VERBS]
    for verb, seen in zip(VERBS, imported_after(calls, tmp_path), strict=True):
        assert seen <= {"pydantic"}, f"`latentatlas {verb} --help` imported {sorted(seen)}"


def test_the_store_verbs_import_neither_torch_nor_ray(tmp_path):
    """`runs` on a SQLite store with a run in it reads it without MLflow; `claims --rules`
    reads no tensors and starts no Ray."""
    res = subprocess.run([sys.executable, "-c", "import mlflow\nmlflow.set_tracking_uri("
                          "'sqlite:///mlflow.db')\nmlflow.set_experiment('latentatlas')\n"
                          "with mlflow.start_run():\n    mlflow.log_metric('val/mse', 0.5)"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    runs, rules, stats = imported_after([["runs"], ["claims", "--rules"], ["stats", "--help"]],
                                        tmp_path)
    assert not {"torch", "ray", "mlflow"} & runs, runs
    assert not {"torch", "ray"} & rules, rules
    # nothing leaks between calls: stats' help after runs and claims adds only its options
    # model's pydantic
    assert stats - (runs | rules) <= {"pydantic"}


def test_the_light_names_are_the_registries_names():
    """analysis.defaults repeats registry keys so that `--help` need not import the
    registries; a registry that gains or loses a name fails here."""
    from analysis import defaults
    from analysis.linear_maps import ESTIMATORS
    from analysis.studies.translators import ANCHORS

    assert defaults.DEFAULT_ESTIMATORS == (
        "ridge_authors", *(e for e in ESTIMATORS if e not in ("ridge_authors", "sgd_authors")))
    assert set(defaults.TRANSLATORS) <= set(ESTIMATORS)
    assert defaults.ANCHOR_NAMES == tuple(ANCHORS)


def test_verbs_on_a_small_encoding_import_what_their_work_needs(tmp_path, ray_session):
    """sectors and support-set read codes and images only: neither torch nor Ray. relocate
    decodes through both models (M is a pixel error), so it loads torch, but no Ray below
    the short-path size. Each verb records a real run."""
    import torch

    from latentatlas import tracking
    from latentatlas.config import DenseVAEConfig
    from latentatlas.encode.pipeline import encode
    from latentatlas.models import build_model

    data = make_idx_dataset(tmp_path / "idx", n_train=16, n_test=200)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    recorder = tracking.Recorder(uri, "imports")
    cfg = DenseVAEConfig(hidden=[16], latent_dim=4)
    torch.manual_seed(0)
    model = build_model(cfg, (1, 28, 28))
    with torch.no_grad():
        model.mu.weight *= 30  # codes spread as a trained VAE's: sectors fill
        model.logvar.bias -= 2
    with recorder.run("model", "train") as run_id:
        recorder.log_model(run_id, model, cfg.model_dump(), (1, 28, 28))
    for name in ("a", "b"):
        encode(f"runs:/{run_id}/model", "mnist", "test", tmp_path / name, data_path=str(data),
               tracking_uri=uri, here=True)
    common = ["--tracking-uri", uri, "--experiment", "imports"]
    sectors, support, relocate = imported_after(
        [["sectors", str(tmp_path / "a"), "--threshold", "0.01", *common],
         ["support-set", str(tmp_path / "a"), "--threshold", "0.01", *common],
         ["relocate", "--source", str(tmp_path / "a"), "--target", str(tmp_path / "b"),
          "--fit", "random", "--rows", "8", *common]], tmp_path, env={"HOME": str(tmp_path)})
    assert not {"torch", "ray"} & sectors, sectors
    assert not {"torch", "ray"} & support, support
    assert "torch" in relocate and "ray" not in relocate, relocate
    kinds = [r.data.tags["latentatlas.kind"] for r in recorder.client.search_runs(
        [recorder.experiment_id], "attributes.status = 'FINISHED'")]
    assert {"sectors", "support-set", "relocate"} <= set(kinds), kinds
