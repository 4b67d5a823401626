"""Commands start at once: a verb imports what its input needs, no more. Each check runs in a
fresh interpreter (this session's has imported everything) and reads its `sys.modules`."""

import json
import subprocess
import sys

from conftest import REPO

from jobs.cli import VERBS

HEAVY = ("torch", "ray", "mlflow", "numpy", "pandas", "pydantic", "scipy", "matplotlib")


def imported_after(calls: list[list[str]], cwd) -> list[set[str]]:
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
                                                      "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    return [set(m) for m in json.loads(res.stdout.strip().splitlines()[-1])]


def test_every_verbs_help_imports_no_heavy_module(tmp_path):
    calls = [[verb, "--help"] for verb in VERBS]
    for verb, seen in zip(VERBS, imported_after(calls, tmp_path), strict=True):
        assert seen == set(), f"`latentatlas {verb} --help` imported {sorted(seen)}"


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
    # the check sees what a verb that needs torch loads: stats' help after runs adds nothing
    assert stats == runs | rules


def test_the_light_names_are_the_registries_names():
    """analysis.defaults repeats registry keys so that `--help` need not import the
    registries; a registry that gains or loses a name fails here."""
    from analysis import defaults
    from analysis.linear_maps import ESTIMATORS
    from analysis.studies.translators import ANCHORS

    assert defaults.DEFAULT_ESTIMATORS == (
        "ridge_authors", *(e for e in ESTIMATORS if e not in ("ridge_authors", "sgd_authors")))
    assert set(defaults.TRANSLATOR_FAMILIES) <= set(ESTIMATORS)
    assert defaults.ANCHOR_NAMES == tuple(ANCHORS)
