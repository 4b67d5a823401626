"""The newest runs of an experiment read straight from a SQLite tracking store, for the
commands that only list them (`latentatlas runs`): importing MLflow and opening its store
cost ~2 s before the first row. Read-only, and only of the schema MLflow 3.17 writes
(pinned in constraints.txt); tests/test_store_reader.py checks it against MLflow's own
`search_runs` on the same store, so a schema that moves fails there, not here."""

from __future__ import annotations

import socket
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from latentatlas.environment import process_alive

OWNER_TAG = "latentatlas.owner"  # host:pid of the process that runs the run


@dataclass
class RunView:
    """What a run list shows of a run, named as MLflow's Run (`info`, `data`) names it."""

    run_id: str
    run_name: str
    status: str
    start_time: int
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)

    @property
    def info(self):
        return self

    @property
    def data(self):
        return self


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI that exists; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///"):])
    return path if path.is_file() else None


def newest_runs(path: Path, experiment: str, limit: int,
                tags: dict[str, str] | None = None) -> list[RunView] | None:
    """The `limit` newest active runs of `experiment` (holding every tag of `tags`) with
    their latest metrics, params and tags; None when the experiment is not in the store."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        found = db.execute("SELECT experiment_id FROM experiments WHERE name = ? AND "
                           "lifecycle_stage = 'active'", (experiment,)).fetchone()
        if found is None:
            return None
        having = "".join(" AND run_uuid IN (SELECT run_uuid FROM tags WHERE key = ? AND "
                         "value = ?)" for _ in tags or {})
        runs = {row[0]: RunView(*row) for row in db.execute(
            "SELECT run_uuid, name, status, start_time FROM runs WHERE experiment_id = ? AND "
            f"lifecycle_stage = 'active'{having} ORDER BY start_time DESC, run_uuid LIMIT ?",
            (found[0], *(x for kv in (tags or {}).items() for x in kv), limit))}
        marks = ",".join("?" * len(runs))
        for table, attribute, value in (("params", "params", "value"), ("tags", "tags", "value"),
                                        # MLflow keeps a NaN as is_nan and a value of 0
                                        ("latest_metrics", "metrics",
                                         "CASE WHEN is_nan THEN 'nan' ELSE value END")):
            for run_id, key, v in db.execute(f"SELECT run_uuid, key, {value} FROM {table} "
                                             f"WHERE run_uuid IN ({marks})", list(runs)):
                getattr(runs[run_id], attribute)[key] = float(v) if attribute == "metrics" \
                    else v
    return list(runs.values())


def owner_gone(tags: dict) -> bool:
    """Whether the process a run's tags name as its owner is known to be gone (it ran on
    this machine): a RUNNING run of it was killed, and the Recorder ends it FAILED."""
    host, _, pid = tags.get(OWNER_TAG, "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))
