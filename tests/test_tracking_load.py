"""The tracking path under concurrent writers: a real `mlflow server` on SQLite and 16
writers logging at once lose nothing and see no error. The writers are threads of this
process (the server sees the same concurrent requests; 16 processes would spend ~30 s of
two cores importing MLflow); bench/tracking_load.py runs them as processes, 16 x 500
metrics (bench/RESULTS.md)."""

import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.cluster


@pytest.fixture
def run_load(monkeypatch):
    """bench/tracking_load.py's run_load, imported for this test only: sys.path and
    sys.modules are as before once it ends."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    try:
        from tracking_load import run_load
        yield run_load
    finally:
        sys.modules.pop("tracking_load", None)


def test_concurrent_writers_through_one_mlflow_server_lose_nothing(tmp_path, run_load):
    out = run_load(writers=16, metrics=5, work=tmp_path, threads=True)
    assert out["attempted"] == 16 * (5 + 10 + 1)
    assert out["errors"] == 0, out["first_errors"]
    assert out["lost"] == 0 and out["stored"] == out["attempted"]
