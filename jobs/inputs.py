"""Inputs from outside a study: a step's role may name, instead of an earlier step, a model
(`runs:/...`, `models:/...`, an MLflow model directory, a `module:function` generator or
recoder) or an encoding directory. Each is opened and checked before any step runs (it exists,
it loads, its images fit the study's dataset) and becomes the typed output a step of the study
would hand on, with the setting the claims compare (read back from the training run when there
is one)."""

from __future__ import annotations

import re
from pathlib import Path

from jobs.kinds import Encoding, Model, Output, Role
from latentatlas.errors import UserError


def label_of(text: str) -> str:
    """A label usable as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "input"


def run_of(recorder, address: str) -> str | None:
    """The run that logged a `runs:/` or `models:/` model, else None."""
    if address.startswith("runs:/"):
        return address.removeprefix("runs:/").split("/")[0]
    if address.startswith("models:/"):
        name, sep, version = address.removeprefix("models:/").partition("/")
        if not sep:
            name, _, alias = name.partition("@")
            return recorder.client.get_model_version_by_alias(name, alias).run_id
        return recorder.client.get_model_version(name, version).run_id
    return None


def unknown_setting(what: str, auxiliary: bool = False) -> dict:
    """The setting of a model the platform did not train: nothing of it compares."""
    from analysis.claims import training_setting

    return training_setting("unknown", what, "unknown", None, None, None,
                            auxiliary=auxiliary)


def trained_setting(recorder, run_id: str, spec: dict, pixels: int) -> dict:
    """What a LatentAtlas training run says it trained: dataset, architecture, loss, epochs,
    its val/mse history."""
    from types import SimpleNamespace

    from analysis.claims import architecture, training_setting
    from jobs.kinds.train import val_mse_history
    from latentatlas.config import FAMILIES
    from latentatlas.families import FAMILIES as MODEL_FAMILIES

    params = recorder.client.get_run(run_id).data.params
    model = spec["model"]
    family = MODEL_FAMILIES.get(FAMILIES.get(model.get("name")))
    # the family's loss reads the config as the run logged it (`kl.policy`, ...)
    logged = SimpleNamespace(kl=SimpleNamespace(policy=params.get("kl.policy", "elbo")))
    loss = family.loss(logged) if family else None
    history = val_mse_history(recorder, run_id) if family and family.has_val_mse else None
    epochs = len(history) if history else params.get("train.epochs")  # until_settled: fewer
    return training_setting(params.get("data.name", "unknown"),
                            architecture(SimpleNamespace(**model), pixels), loss or "unknown",
                            int(epochs) if epochs else None, history, run_id,
                            auxiliary=bool(family and family.auxiliary))


def external_model(recorder, address: str, role: str, shape: tuple[int, ...], pixels: int,
                   where: str) -> Model:
    from latentatlas.config import FAMILIES
    from latentatlas.model_store import load_model
    from latentatlas.models.pretrained import is_pretrained, with_image

    local = Path(address)
    if local.is_dir():  # an MLflow model directory: what `runs:/<id>/model` downloads to
        address = str(local.resolve())
    if is_pretrained(address):  # it takes the study's images
        address = with_image(address, shape)
        local = Path(address.partition(":")[2].partition("?")[0])
    try:
        model, spec = load_model(address, role="--recoder" if role == "recoder" else "--model")
        run_id = run_of(recorder, address)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    except Exception as e:  # MLflow's errors for an unknown run, model or alias
        raise UserError(f"{where}: {address}: cannot resolve it "
                        f"({str(e).splitlines()[0]})") from None
    given = tuple(spec.get("input_shape") or getattr(model, "input_shape", ()) or ())
    if given and given != tuple(shape):
        raise UserError(f"{where}: {address} takes images of shape {list(given)}; the study's "
                        f"dataset has {list(shape)}")
    name = spec["model"].get("name", "")
    family = FAMILIES.get(name) or spec.get("role", "")
    if spec.get("external"):
        setting = unknown_setting(f"external {address}", auxiliary=role == "recoder")
        label = address.rpartition(":")[2]
    elif run_id:
        setting = trained_setting(recorder, run_id, spec, pixels)
        label = recorder.client.get_run(run_id).info.run_name or run_id[:8]
    else:
        setting = unknown_setting(f"{name} from {local.name}")
        label = local.name
    return Model(label=label_of(label), address=address, run_id=run_id, family=family,
                 model_name=name, setting=setting, input_shape=list(given))


def external_encoding(recorder, address: str, pixels: int, where: str) -> Encoding:
    from latentatlas.encode import open_encoding
    from latentatlas.model_store import load_model

    try:
        enc = open_encoding(address)
        _, spec = load_model(enc.meta.model_uri, role="its model")
        run_id = run_of(recorder, enc.meta.model_uri)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    setting = (trained_setting(recorder, run_id, spec, pixels) if run_id and not
               spec.get("external") else unknown_setting(f"the model of {enc.path.name}"))
    return Encoding(label=label_of(enc.path.name), address=str(enc.path.resolve()),
                    setting=setting, model_name=spec["model"].get("name", ""),
                    rows=enc.meta.rows, latent_dim=enc.latent_dim)


def open_input(recorder, reference: str, role: str, expects: Role, shape, pixels: int,
               where: str) -> Output:
    """The typed output an input from outside the study stands for."""
    if issubclass(Model, expects.type):
        return external_model(recorder, reference, role, shape, pixels, where)
    if issubclass(Encoding, expects.type):
        return external_encoding(recorder, reference, pixels, where)
    raise UserError(f"{where}: {reference!r} is not a step of this study; a {role} input is "
                    f"the output of a step ({expects.type.__name__})")
