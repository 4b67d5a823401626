"""The tracking store: where it is (chosen once, in the driver), its experiment, and the
UI's address of its runs."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import mlflow

from latentatlas.environment import experiment_name, resolve_tracking_uri
from latentatlas.errors import UserError

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# Where MLflow's client reads a login when the environment gives none (mlflow.utils.credentials)
CREDENTIALS_FILE = "~/.mlflow/credentials"


def check_credentials_file() -> None:
    """A login kept in a file is read by its owner alone: one readable by the group or by
    others is refused before it is used."""
    path = Path(CREDENTIALS_FILE).expanduser()
    if path.is_file() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"{path}: holds a tracking login but others may read it (mode "
                        f"{stat.S_IMODE(path.stat().st_mode):o}); chmod 600 {path}")


LOGIN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def login(uri: str) -> dict | None:
    """The driver's login to an HTTP tracking server (its environment, else its credentials
    file), for the job's Ray workers that write runs (a training's rank 0, a sweep's trials):
    they get it with their task, never through a file or the job's environment. None for a
    local store or no login."""
    if not uri.startswith(("http://", "https://")):
        return None
    from mlflow.utils.credentials import read_mlflow_creds

    creds = read_mlflow_creds()
    return dict(zip(LOGIN_VARIABLES, (creds.username, creds.password), strict=True)) \
        if creds.username else None


def use_login(given: dict | None) -> None:
    """A worker's MLflow client logs in with the driver's `login` (none: as it is)."""
    os.environ.update({k: v for k, v in (given or {}).items() if v is not None})


def refusal(uri: str, error: Exception) -> str | None:
    """The one line for a tracking server that refuses this client (HTTP 401: no login or a
    wrong one; 403: a login without the permission), or None for any other error."""
    code = getattr(error, "error_code", None)  # MLflow's name of the HTTP status
    if code not in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return None
    from mlflow.utils.credentials import read_mlflow_creds

    user = read_mlflow_creds().username  # the environment's, else the credentials file's
    if code == "UNAUTHENTICATED":
        if not (user or os.environ.get("MLFLOW_TRACKING_TOKEN")
                or Path(CREDENTIALS_FILE).expanduser().is_file()):
            return (f"{uri}: the tracking server asks for a login; set "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or keep them in "
                    f"{CREDENTIALS_FILE}, mode 600)")
        return (f"{uri}: the tracking server refused the login"
                + (f" of {user!r}" if user else "") + " (HTTP 401): check the password")
    return (f"{uri}: the tracking server refused " + (repr(user) if user else "this login")
            + " the request (HTTP 403): ask its admin for EDIT permission")


def setup(uri: str | None = None, experiment: str | None = None) -> str:
    """Point MLflow at the store and create the experiment once, in the driver, before any
    parallel writer exists (SQLite locks otherwise). Returns the absolute URI. MLflow's
    process-wide URI and experiment are set for the calls that take no store (model loading
    by `runs:/` address, `mlflow.pytorch.log_model`); MLflow itself exports them to this
    process's environment (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID) for its subprocesses."""
    # "Creating initial MLflow database tables..." on a new store: routine, not news
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    uri = resolve_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        check_credentials_file()
    try:
        return create_experiment(uri, experiment_name(experiment))
    except mlflow.exceptions.MlflowException as e:
        line = refusal(uri, e)
        if line is None:
            raise
        raise UserError(line) from None


def create_experiment(uri: str, name: str) -> str:
    mlflow.set_tracking_uri(uri)
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
