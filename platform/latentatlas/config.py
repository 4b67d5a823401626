"""Typed, validated experiment specs: YAML in, one clear line out when it is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from latentatlas.errors import UserError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Strict):
    name: str = "fashion-mnist"
    path: str | None = None  # folder holding the dataset files; each source has a default
    train_split: str = "train"
    val_split: str = "test"
    limit: int | None = Field(default=None, gt=0)  # first N items of each split


class DenseVAEConfig(Strict):
    name: Literal["dense_vae"] = "dense_vae"
    hidden: list[Annotated[int, Field(gt=0)]] = [256, 64, 32]
    latent_dim: int = Field(default=16, gt=0)
    # False: z = mu and the KL term keeps only its quadratic penalty on mu (seed's ablation)
    sample_posterior: bool = True


class ConvVAEConfig(Strict):
    name: Literal["conv_vae"] = "conv_vae"
    channels: list[Annotated[int, Field(gt=0)]] = [32, 64, 128]
    hidden: int = Field(default=256, gt=0)
    latent_dim: int = Field(default=16, gt=0)
    sample_posterior: bool = True


MODEL_CONFIGS = {"dense_vae": DenseVAEConfig, "conv_vae": ConvVAEConfig}


def model_tag(value) -> str:
    """`model.name` picks the schema; a model block without a name is the dense VAE."""
    if isinstance(value, dict):
        return value.get("name", "dense_vae")
    return getattr(value, "name", "dense_vae")


ModelConfig = Annotated[
    Annotated[DenseVAEConfig, Tag("dense_vae")] | Annotated[ConvVAEConfig, Tag("conv_vae")],
    Discriminator(model_tag),
]


class KLConfig(Strict):
    policy: Literal["elbo", "beta", "balanced"] = "balanced"
    beta: float = Field(default=1.0, gt=0)  # KL weight of `beta` and `balanced`


class TrainConfig(Strict):
    epochs: int = Field(default=10, gt=0)
    batch_size: int = Field(default=128, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    num_workers: int = Field(default=1, ge=1)
    use_gpu: bool = False
    # Also each worker's torch thread count. Unset: a lone CPU training takes every CPU of
    # the largest node (the whole machine locally); several workers, 1 each.
    cpus_per_worker: float | None = Field(default=None, gt=0)
    max_failures: int = Field(default=0, ge=0)
    checkpoints_to_keep: int = Field(default=2, ge=1)
    storage_path: str | None = None  # Ray Train run storage; default ./ray_results
    # > 0: record the codes of one validation image per class at this many moments of the
    # first epoch (trajectories.png; the seed's 2-D picture)
    trace_points: int = Field(default=0, ge=0)


class ExperimentConfig(Strict):
    name: str = "vae"
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = DenseVAEConfig()
    kl: KLConfig = KLConfig()
    train: TrainConfig = TrainConfig()


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=c` -> (['a', 'b'], c) with c parsed as YAML (numbers, lists, booleans)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_path(raw: dict, path: list[str], value: Any) -> dict:
    """A copy of `raw` with raw[path[0]][path[1]]... = value (missing levels created)."""
    raw = dict(raw)
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        child = dict(child) if isinstance(child, dict) else {}
        node[part] = child
        node = child
    node[path[-1]] = value
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        raw = set_path(raw, *parse_override(item))
    return dict(raw)


def validate(raw: Any, source: str, model: type[BaseModel] = ExperimentConfig):
    """Validate a raw mapping; the first problem becomes one line naming the key path."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        # Drop the union's tag from the path: users write `model.hidden`, not
        # `model.dense_vae.hidden`.
        where = ".".join(str(p) for p in err["loc"] if p not in MODEL_CONFIGS) or "(top level)"
        got = f" (got {err['input']!r})" if err["type"] != "missing" else ""
        more = f"; {len(e.errors()) - 1} more problem(s)" if len(e.errors()) > 1 else ""
        raise UserError(f"{source}: {where}: {err['msg']}{got}{more}") from None


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{line} is not valid YAML ({getattr(e, 'problem', e)})") from None
    return raw if raw is not None else {}


def load_config(path: str | Path, overrides: list[str] = (), model=ExperimentConfig):
    raw = apply_overrides(read_yaml(path), list(overrides))
    return validate(raw, str(path), model)
