"""The cluster's tracking path under concurrent writers: a real `mlflow server` on SQLite (as
cluster.yaml runs it) and several processes logging at once lose nothing and see no error.
bench/tracking_load.py runs the same with 16 writers x 500 metrics (bench/RESULTS.md)."""

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
    out = run_load(writers=4, metrics=60, work=tmp_path)
    assert out["attempted"] == 4 * (60 + 10 + 1)
    assert out["errors"] == 0, out["first_errors"]
    assert out["lost"] == 0 and out["stored"] == out["attempted"]
