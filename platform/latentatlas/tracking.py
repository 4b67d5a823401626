"""The Recorder, the one writer of runs, and its queries of them. Where the store is:
latentatlas.store; models in it: latentatlas.model_store."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np

from latentatlas.environment import experiment_name
from latentatlas.errors import UserError
from latentatlas.model_store import log_model
from latentatlas.outputs import writing
from latentatlas.record import DatasetRecord, Record
from latentatlas.store_reader import OWNER_TAG, owner_gone
from latentatlas.tracking_store import setup, use_login

if TYPE_CHECKING:  # torch and Ray load with the verbs that use them, not with the store
    import torch


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def log_figure(fig, name: str, run_id: str | None = None) -> None:
    """Log a matplotlib figure (to `run_id`, else the active run) and close it: pyplot keeps
    every open figure alive."""
    import matplotlib.pyplot as plt

    try:
        if run_id:
            mlflow.MlflowClient().log_figure(run_id, fig, name)
        else:
            mlflow.log_figure(fig, name)
    finally:
        plt.close(fig)


def refuse_non_finite_metrics(record: Record) -> None:
    """A NaN or infinite metric is a broken result, not a number to log: one error line
    naming the metric and the record (no run, no partial run)."""
    points = [(key, value) for key, values in record.series.items() for _, value in values]
    for key, value in [*record.metrics.items(), *points]:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{record.name or record.kind}: metric {key} is {value!r}, not a "
                            "number; nothing was logged") from None
        if not np.isfinite(number):
            raise UserError(f"{record.name or record.kind}: metric {key} is {number} (a "
                            "non-finite result: its inputs hold NaN or inf, or a division by "
                            "zero); nothing was logged")


class Interrupted(Exception):
    """Work stopped by the user after saving what it needs to continue: its run ends KILLED."""


STALE_TAG = "latentatlas.stale"


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def source_tags(command: str | None = None) -> dict[str, str]:
    """MLflow's source tags of a run (what its UI shows in the Source and User columns):
    its own context providers' (user, source name and type), the command as the CLI names
    it, and the commit of this checkout when it is a git one."""
    tags = dict(context_tags())
    if command:
        tags["mlflow.source.name"] = command
    return tags


@functools.cache
def context_tags() -> dict[str, str]:
    from mlflow.tracking.context.registry import resolve_tags

    tags = resolve_tags()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / ".git").exists():
        import subprocess

        found = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                               capture_output=True, text=True)
        if found.returncode == 0:
            tags["mlflow.source.git.commit"] = found.stdout.strip()
    return tags


def dataset_input(d: DatasetRecord):
    """A DatasetRecord as MLflow's dataset input of a run, with its role as the context."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    profile = json.dumps({"num_rows": d.rows, "shape": list(d.shape)})
    return DatasetInput(Dataset(d.name, d.digest, "local", json.dumps({"uri": d.source}),
                                profile=profile),
                        tags=[InputTag("mlflow.data.context", d.context)])


class RunStream:
    """The Recorder's writer for one run it opened, where it cannot go: rank 0 of a training
    streams per-epoch metrics and pictures from its worker while the driver waits. The URI,
    the run id and the driver's login to an HTTP server (an object-store reference: never in
    a config Ray keeps or shows) are all it carries."""

    def __init__(self, tracking_uri: str, run_id: str, login=None):
        if login is not None and not isinstance(login, dict):  # an object-store reference
            import ray

            login = ray.get(login)
        use_login(login)
        self.client, self.run_id = mlflow.MlflowClient(tracking_uri), run_id

    def log(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch"])

    def log_image(self, image, key: str, step: int) -> None:
        """An image over steps: the run page's image panel scrubs through them."""
        self.client.log_image(self.run_id, image, key=key, step=step)


class Recorder:
    """The one writer of runs: a tracking store chosen once (`setup`), an MlflowClient, and
    the run lifecycle (FINISHED on success, KILLED on Ctrl-C, FAILED otherwise) in one place.
    No global active run: several threads may record at once. A killed process cannot end
    its runs: every Recorder first ends those of this machine whose process is gone.

    `command` is what made the runs (`latentatlas train`: their source), and
    `process_tags` what a run learns of its process when it starts (the command's Ray log);
    both are given by the command's edge (latentatlas.command.recorder), none read here."""

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None,
                 command: str | None = None, process_tags: Callable[[], dict] | None = None):
        self.uri = setup(tracking_uri, experiment)
        self.command, self.process_tags = command, process_tags
        self.client = mlflow.MlflowClient(self.uri)
        self.experiment = experiment_name(experiment)
        self.experiment_id = self.client.get_experiment_by_name(self.experiment).experiment_id
        self.end_stale_runs()

    def owner_gone(self, run) -> bool:
        """Whether the run's owning process is known to be gone (it is on this machine)."""
        return owner_gone(run.data.tags)

    def end_stale_runs(self) -> list[str]:
        """RUNNING runs owned by a process of this machine that no longer exists (SIGKILL,
        a crash, a lost power) end FAILED and are tagged `latentatlas.stale`; their ids."""
        host = socket.gethostname()
        runs = self.client.search_runs(
            [self.experiment_id], f"attributes.status = 'RUNNING' and "
            f"tags.`{OWNER_TAG}` LIKE '{host}:%'", max_results=1000)
        ended = []
        for run in runs:
            if self.owner_gone(run):
                self.client.set_tag(run.info.run_id, STALE_TAG, "its process is gone")
                self.client.set_terminated(run.info.run_id, "FAILED")
                ended.append(run.info.run_id)
        return ended

    def create(self, name: str, kind: str, parent_run_id: str | None = None,
               tags: dict | None = None) -> str:
        """A new RUNNING run; its id. Prefer `run`, which also ends it."""
        tags = {**source_tags(self.command), "latentatlas.kind": kind, OWNER_TAG: owner(),
                **(self.process_tags() if self.process_tags else {}), **(tags or {})}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        return self.client.create_run(self.experiment_id, run_name=name,
                                      tags={k: str(v) for k, v in tags.items()}).info.run_id

    @contextmanager
    def run(self, name: str = "", kind: str = "", parent_run_id: str | None = None,
            tags: dict | None = None, run_id: str | None = None) -> Iterator[str]:
        """A run open for the duration of the block (a new one, or `run_id` reopened: work
        that spans processes, such as a resumed sweep); yields its id."""
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, OWNER_TAG, owner())
        else:
            run_id = self.create(name, kind, parent_run_id, tags)
        status = "FAILED"
        try:
            yield run_id
            status = "FINISHED"
        except (KeyboardInterrupt, Interrupted):
            status = "KILLED"
            raise
        finally:
            if status != "FINISHED" and self.ended_meanwhile(run_id):
                pass  # a sweep marked a trial it stopped KILLED: its word stands
            else:
                self.client.set_terminated(run_id, status)

    def ended_meanwhile(self, run_id: str) -> bool:
        """Whether someone else ended the run while it was open here (Tune stops a trial's
        driver asynchronously, after the sweep marked the trial's run KILLED)."""
        try:
            return self.client.get_run(run_id).info.status != "RUNNING"
        except Exception:  # the store itself may be what failed: keep the first error
            return False

    def log_model(self, run_id: str, model: torch.nn.Module, model_config: dict,
                  input_shape, extra: dict | None = None):
        """`log_model` into the open run `run_id`."""
        # mlflow.pytorch.log_model takes no run id: it logs into the fluent active run, so
        # the run is made active for this call alone (the one fluent run of the platform).
        need = 2 * sum(t.nbytes for t in model.state_dict().values())  # pickled + state dict
        # MLflow 3 keeps a logged model beside the runs, in the experiment's models/: what a
        # fault leaves there is the folders that were not there before
        location = self.client.get_experiment(
            self.client.get_run(run_id).info.experiment_id).artifact_location
        models = self.folder(location) / "models" if self.folder(location) else None
        before = set(models.glob("m-*")) if models else set()
        with mlflow.start_run(run_id=run_id), writing(
                models or f"{location}/models", need,
                partial=lambda: set(models.glob("m-*")) - before if models else ()):
            return log_model(model, model_config, input_shape, extra)

    @staticmethod
    def folder(uri: str) -> Path | None:
        """An artifact location's local folder; None for a remote store's (a server or a
        bucket: its faults are not this machine's disk)."""
        from urllib.parse import unquote, urlparse

        if uri.startswith("file:"):
            return Path(unquote(urlparse(uri).path))
        return None if re.match(r"^[a-z][a-z0-9+.-]*:", uri) else Path(uri)

    def write(self, run_id: str, record: Record) -> None:
        """Everything a Record holds, into an open run; a non-finite metric is refused
        before anything is written; a full disk (or a read-only one) is one line naming the
        run's artifact folder (or the full temporary folder)."""
        refuse_non_finite_metrics(record)
        # a fault ends the run FAILED; what it logged before the fault stays
        with writing(lambda: self.client.get_run(run_id).info.artifact_uri.removeprefix(
                "file://"), cleaned=False):
            self._write(run_id, record)

    def _write(self, run_id: str, record: Record) -> None:
        import matplotlib.pyplot as plt
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in record.metrics.items()]
        metrics += [Metric(k, float(v), now, int(step)) for k, values in record.series.items()
                    for step, v in values]
        params = [Param(k, str(v)) for k, v in record.params.items()]
        tags = [RunTag(k, str(v)) for k, v in record.tags.items()]
        while metrics or params or tags:  # MLflow's limits per batch: 1000, 100, 100
            self.client.log_batch(run_id, metrics=metrics[:1000], params=params[:100],
                                  tags=tags[:100])
            metrics, params, tags = metrics[1000:], params[100:], tags[100:]
        for name, columns in record.tables.items():
            self.client.log_table(run_id, columns, name)
        for name, content in record.dicts.items():
            self.client.log_dict(run_id, content, name)
        for name, make in record.figures.items():
            fig = make()
            try:
                self.client.log_figure(run_id, fig, name)
            finally:
                plt.close(fig)
        for name, image in record.images.items():
            self.client.log_image(run_id, image, artifact_file=f"{name}.png")
        if record.datasets:
            self.log_inputs(run_id, [dataset_input(d) for d in record.datasets])
        for name, write in record.files.items():
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / Path(name).name
                write(local)
                self.client.log_artifact(run_id, str(local), str(Path(name).parent)
                                         if Path(name).parent != Path(".") else None)

    def log_inputs(self, run_id: str, inputs: list, attempts: int = 5) -> None:
        """Dataset inputs into a run. MLflow stores a dataset once per experiment and checks
        before it inserts, so trainings of the same data starting together (threads of one
        job, sweep trials) can collide on its unique key; the one that loses retries and
        finds the dataset there."""
        for attempt in range(attempts):
            try:
                self.client.log_inputs(run_id, datasets=inputs)
                return
            except mlflow.exceptions.MlflowException as e:
                if "UNIQUE constraint failed" not in str(e) or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def record(self, record: Record, parent_run_id: str | None = None) -> str:
        """A run holding `record`, ended FINISHED (or FAILED / KILLED if writing failed);
        a record with a non-finite metric creates no run at all."""
        refuse_non_finite_metrics(record)
        with self.run(record.name, record.kind, parent_run_id, record.tags) as run_id:
            self.write(run_id, record)
        return run_id

    def latest_run(self, kind: str, **tags: str):
        """The newest run of `kind` whose tags equal `tags` (what a study needs from an
        earlier one, e.g. the information gain of an encoding's `stats` run), or None."""
        where = [f"tags.`latentatlas.kind` = '{kind}'",
                 *(f"tags.`{k}` = '{v}'" for k, v in tags.items())]
        runs = self.client.search_runs([self.experiment_id], " and ".join(where),
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None

    def runs_of(self, kind: str) -> list:
        return self.client.search_runs([self.experiment_id],
                                       f"tags.`latentatlas.kind` = '{kind}'")

    def table(self, run_id: str, name: str) -> dict[str, list] | None:
        """A table logged with log_table, as {column: values}; None if the run has none."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(run_id, name, tmp)
            except Exception:  # MLflow raises several types for a missing artifact
                return None
            try:
                raw = json.loads(Path(local).read_text())
                return {c: [row[i] for row in raw["data"]] for i, c in enumerate(raw["columns"])}
            except (ValueError, KeyError, TypeError, IndexError) as e:
                raise UserError(f"run {run_id}: its table {name} is damaged ({type(e).__name__}: "
                                f"{' '.join(str(e).split())[:200]}); rerun the step that "
                                "logged it") from None


def record_result(result, *, tracking_uri: str | None = None, experiment: str | None = None,
                  parent_run_id: str | None = None) -> str:
    """Log a study's result (anything with a `record()` giving a Record: the notebook API's
    results) to MLflow as its verb would, and return the run id: a child of `parent_run_id`,
    else of the run of the model whose encoding it measured. `tracking_uri`:
    $MLFLOW_TRACKING_URI or sqlite:///mlflow.db by default."""
    encoding = getattr(result, "encoding", None) or getattr(
        getattr(result, "sectors", None), "encoding", None)
    parent = parent_run_id or (encoding.meta.model_run_id if encoding is not None else None)
    return Recorder(tracking_uri, experiment, command="notebook").record(result.record(),
                                                                        parent)
