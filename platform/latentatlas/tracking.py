"""MLflow at the edge: tracking URIs, experiments, params, images, and models."""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np

from latentatlas.environment import COMMAND_VARIABLE, experiment_name, resolve_tracking_uri
from latentatlas.errors import UserError
from latentatlas.record import DatasetRecord, Record
from latentatlas.store_reader import OWNER_TAG, owner_gone

if TYPE_CHECKING:  # torch and Ray load with the verbs that use them, not with the store
    import torch

MODEL_SPEC = "model_spec.json"
STATE_DICT = "state_dict.pt"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


def setup(uri: str | None = None, experiment: str | None = None) -> str:
    """Point MLflow at the store and create the experiment once, in the driver, before any
    parallel writer exists (SQLite locks otherwise). Returns the absolute URI. MLflow's
    process-wide URI and experiment are set for the calls that take no store (model loading
    by `runs:/` address, `mlflow.pytorch.log_model`); MLflow itself exports them to this
    process's environment (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID) for its subprocesses."""
    # "Creating initial MLflow database tables..." on a new store: routine, not news
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    uri = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    name = experiment_name(experiment)
    if mlflow.get_experiment_by_name(name) is None:
        # Embedded default: artifacts beside the database in ./mlartifacts.
        location = None
        if uri.startswith("sqlite:"):
            location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            if mlflow.get_experiment_by_name(name) is None:  # not a lost creation race
                raise
    found = mlflow.set_experiment(name)
    if EXPERIMENT_KIND_TAG not in found.tags:  # a user's own choice stays
        # MLflow 3's UI opens an experiment without this tag on its GenAI overview (traces,
        # prompts); with it, on the runs table of model training
        mlflow.MlflowClient(uri).set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG,
                                                    "custom_model_development")
    return uri


def runs_url(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """Where the experiment's runs (or one run) are in the MLflow UI: the server's own page
    for an HTTP store; for a local store, the page `mlflow ui` serves at its default
    address. MLflow 3.17's UI opens in its GenAI view whatever the experiment's kind tag says
    (seen in a browser: docs/getting-started.md); the query selects the model-training
    view."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    page = f"runs/{run_id}" if run_id else "runs"
    return f"{base}/#/experiments/{experiment_id}/{page}?workflowType=machine_learning"


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


def log_image(image: np.ndarray, name: str) -> None:
    mlflow.log_image(image, artifact_file=f"{name}.png")


def log_model(model: torch.nn.Module, model_config: dict, input_shape,
              extra: dict | None = None):
    """Log an MLflow PyTorch model whose extra files hold what `load_model` needs: the model
    spec (registry name + config) and a plain state dict, loadable with weights_only=True."""
    import mlflow.pytorch
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        spec = {"model": model_config, "input_shape": list(input_shape), **(extra or {})}
        (Path(tmp) / MODEL_SPEC).write_text(json.dumps(spec, indent=2))
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                   Path(tmp) / STATE_DICT)
        return mlflow.pytorch.log_model(
            model.cpu(), name="model", serialization_format="pickle",
            extra_files=[str(Path(tmp) / MODEL_SPEC), str(Path(tmp) / STATE_DICT)],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )


def register_model(model_uri: str, name: str, tags: dict) -> str:
    """A new version of registered model `name` (created on first use) holding `model_uri`,
    with `tags`; its `models:/name/version` address."""
    import contextlib
    import io

    # MLflow prints "Successfully registered ..." and "Created version ..."
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in
                                                                tags.items()})
    return f"models:/{name}/{version.version}"


def load_model(uri: str, device: str | torch.device = "cpu", tracking_uri: str | None = None,
               role: str = "--model"):
    """Rebuild a logged model from the model registry by name; never unpickles code.
    `runs:/` and `models:/` addresses resolve in `tracking_uri` (default: the current store);
    `module.path:function` is a user's generator built by their code.
    `role` names the option or key the address came from in error lines."""
    import torch

    from latentatlas.models import is_external, load_external, rebuild_model

    if is_external(uri):  # module:function, the user's own generator (or recoder)
        role_of = "recoder" if role == "--recoder" else "generator"
        model = load_external(uri, device, role_of)
        return model, {"external": uri, "role": role_of, "model": {"name": f"external {uri}"},
                       "input_shape": list(getattr(model, "input_shape", []))}
    try:
        local = Path(mlflow.artifacts.download_artifacts(
            uri, tracking_uri=tracking_uri and resolve_tracking_uri(tracking_uri)))
    except Exception as e:  # MLflow raises several types for a bad address
        raise UserError(f"{role} {uri}: cannot resolve the model ({str(e).splitlines()[0]})") \
            from None
    spec_path = local / "extra_files" / MODEL_SPEC
    if not spec_path.is_file():
        raise UserError(f"{role} {uri}: not a LatentAtlas model (no extra_files/{MODEL_SPEC})")
    try:
        spec = json.loads(spec_path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{role} {uri}: {spec_path.name} is not valid JSON ({e})") from None
    weights = local / "extra_files" / STATE_DICT
    try:
        # weights_only: tensors and plain containers, never code; anything else is refused
        state = torch.load(weights, map_location=device, weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError, EOFError, ...
        raise UserError(f"{role} {uri}: {STATE_DICT} is not a LatentAtlas state dict (a plain "
                        f"dict of tensors): {str(e).splitlines()[0][:200]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise UserError(f"{role} {uri}: {STATE_DICT} is not a LatentAtlas state dict (a plain "
                        "dict of tensors)")
    if bad := non_finite_tensor(state):
        raise UserError(f"{role} {uri}: {STATE_DICT} holds non-finite weights ({bad}): the "
                        "training diverged or the file was damaged; train it again")
    try:
        return rebuild_model(spec, state, device), spec
    except (KeyError, ValueError, RuntimeError) as e:  # spec or weights do not fit the model
        # torch lists the missing / unexpected keys on the lines after the first
        raise UserError(f"{role} {uri}: the weights do not fit the model its spec describes "
                        f"({' '.join(str(e).split())[:300]})") from None


def non_finite_tensor(state: dict) -> str | None:
    """The name of the first floating-point tensor of a state dict holding NaN or inf."""
    import torch

    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and \
                not bool(torch.isfinite(value).all()):
            return name
    return None


def load_vae(uri: str, device: str | torch.device = "cpu", tracking_uri: str | None = None):
    """A logged VAE (its encoder is what the caller needs); one line when it is another
    kind of model."""
    from latentatlas.models import VAE

    model, spec = load_model(uri, device, tracking_uri)
    if not isinstance(model, VAE):
        raise UserError(f"--model {uri}: a {spec['model']['name']} has no encoder; give a VAE, "
                        "or a generator with --recoder")
    return model, spec


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
RAY_LOG_TAG = "latentatlas.ray_log"  # the file holding Ray's own messages of the run's process


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@functools.cache
def source_tags() -> dict[str, str]:
    """MLflow's source tags of a run (what its UI shows in the Source and User columns):
    its own context providers' (user, source name and type), the command as the CLI names
    it, and the commit of this checkout when it is a git one."""
    from mlflow.tracking.context.registry import resolve_tags

    tags = resolve_tags()
    if os.environ.get(COMMAND_VARIABLE):
        tags["mlflow.source.name"] = os.environ[COMMAND_VARIABLE]
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
    streams per-epoch metrics and pictures from its worker while the driver waits. The URI
    and the run id are all it carries."""

    def __init__(self, tracking_uri: str, run_id: str):
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
    its runs: every Recorder first ends those of this machine whose process is gone."""

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None):
        self.uri = setup(tracking_uri, experiment)
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
        tags = {**source_tags(), "latentatlas.kind": kind, OWNER_TAG: owner(), **(tags or {})}
        # a process that never imported Ray runs none (and need not import it to know)
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            from latentatlas import runtime

            if not runtime.current().verbose:
                tags[RAY_LOG_TAG] = str(runtime.current().log_path)
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
        with mlflow.start_run(run_id=run_id):
            return log_model(model, model_config, input_shape, extra)

    def write(self, run_id: str, record: Record) -> None:
        """Everything a Record holds, into an open run; a non-finite metric is refused
        before anything is written."""
        import matplotlib.pyplot as plt
        from mlflow.entities import Metric, Param, RunTag

        refuse_non_finite_metrics(record)
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
