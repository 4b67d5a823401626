"""The cluster's tracking path under concurrent writers: a real `mlflow server` on SQLite (as
cluster.yaml runs it) and several processes logging at once lose nothing and see no error.
bench/tracking_load.py runs the same with 16 writers x 500 metrics (bench/RESULTS.md)."""

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from tracking_load import run_load  # noqa: E402

pytestmark = pytest.mark.cluster


def test_concurrent_writers_through_one_mlflow_server_lose_nothing(tmp_path):
    out = run_load(writers=4, metrics=60, work=tmp_path)
    assert out["attempted"] == 4 * (60 + 10 + 1)
    assert out["errors"] == 0, out["first_errors"]
    assert out["lost"] == 0 and out["stored"] == out["attempted"]
