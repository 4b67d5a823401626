"""Models in the tracking store: logged with a spec and a plain state dict beside MLflow's
own files, registered by name, and rebuilt from the spec by the model registry (never by
unpickling code); what is read back is checked (a state dict of finite tensors that fits)."""

from __future__ import annotations

import errno
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow

from latentatlas.environment import resolve_tracking_uri
from latentatlas.errors import UserError
from latentatlas.outputs import free_bytes, save_tensors

if TYPE_CHECKING:
    import torch

MODEL_SPEC = "model_spec.json"
STATE_DICT = "state_dict.pt"


def log_model(model: torch.nn.Module, model_config: dict, input_shape,
              extra: dict | None = None):
    """Log an MLflow PyTorch model whose extra files hold what `load_model` needs: the model
    spec (registry name + config) and a plain state dict, loadable with weights_only=True."""
    import mlflow.pytorch
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        spec = {"model": model_config, "input_shape": list(input_shape), **(extra or {})}
        (Path(tmp) / MODEL_SPEC).write_text(json.dumps(spec, indent=2))
        size = save_tensors({k: v.detach().cpu() for k, v in model.state_dict().items()},
                            Path(tmp) / STATE_DICT)
        # MLflow pickles the model (its state and a little more) with torch's writer, which
        # names no fault, and copies the state dict beside it
        if (free := free_bytes(Path(tmp))) is not None and free < 2 * size + (1 << 16):
            raise OSError(errno.ENOSPC, "No space left for MLflow's copy of the model",
                          tempfile.gettempdir())
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
    `module.path:function` is a user's generator built by their code; `diffusers:FOLDER` and
    `stylegan2:FILE.pt` pretrained models (latentatlas.models.pretrained).
    `role` names the option or key the address came from in error lines."""
    import torch

    from latentatlas.models import is_external, load_external, rebuild_model
    from latentatlas.models.pretrained import is_pretrained, load_pretrained

    if is_pretrained(uri):
        return load_pretrained(uri, device, role)

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
