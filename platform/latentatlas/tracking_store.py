"""The tracking store: where it is (chosen once, in the driver), its experiment, and the
UI's address of its runs."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow

from latentatlas.environment import experiment_name, resolve_tracking_uri

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
