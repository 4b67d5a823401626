"""Sweep specs (a base experiment config and a search space) and the pure arithmetic of a
sweep: trial configs, resources per trial, the best trial. Ray and MLflow live in runner.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from latentatlas.config import (
    ExperimentConfig,
    Strict,
    apply_overrides,
    read_yaml,
    set_path,
    validate,
)
from latentatlas.errors import UserError
from latentatlas.families import FAMILIES as MODEL_FAMILIES

SWEEP_STATE = "latentatlas_sweep.json"
TAG_TRIAL = "latentatlas.trial_id"
TAG_SWEEP = "latentatlas.sweep"
TAG_STOPPED = "latentatlas.stopped_early"
# Resources come from the base config: Tune reserves each trial's process and Ray Train any
# workers beside it, so a swept worker count (or a key that picks between the two, see
# `driver_resources`) would break the concurrency arithmetic.
FIXED_KEYS = ("train", "train.num_workers", "train.cpus_per_worker", "train.use_gpu",
              "train.max_failures", "train.storage_path", "name")
# What each family of model logs per epoch: a sweep's metric and its table come from these.
FAMILY_METRICS = {name: family.logs for name, family in MODEL_FAMILIES.items()}
METRICS = Literal[tuple(dict.fromkeys(m for logs in FAMILY_METRICS.values() for m in logs))]


class Domain(Strict):
    """One swept key: exactly one of a grid, a random choice, or a range."""

    grid: list[Any] | None = Field(default=None, min_length=1)
    """Every value, in a cross product with the other grids."""
    choice: list[Any] | None = Field(default=None, min_length=1)
    """One value drawn per sample."""
    uniform: tuple[float, float] | None = None
    """[low, high): a float drawn uniformly per sample."""
    loguniform: tuple[float, float] | None = None
    """[low, high): a float drawn log-uniformly per sample."""
    randint: tuple[int, int] | None = None
    """[low, high), as numpy and Tune."""

    @model_validator(mode="after")
    def one_kind(self):
        given = [k for k, v in self.__dict__.items() if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of grid, choice, uniform, loguniform, randint")
        low_high = self.uniform or self.loguniform or self.randint
        if low_high and not low_high[0] < low_high[1]:
            raise ValueError(f"range {list(low_high)}: low must be below high")
        if self.loguniform and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs a positive low end")
        return self

    @property
    def kind(self) -> str:
        return next(k for k, v in self.__dict__.items() if v is not None)

    def candidates(self) -> list:
        """Values to validate up front: every listed value, or both ends of a range."""
        if self.grid or self.choice:
            return self.grid or self.choice
        if self.randint:
            return [self.randint[0], self.randint[1] - 1]
        return list(self.uniform or self.loguniform)

    def to_tune(self):
        from ray import tune

        if self.grid:
            return tune.grid_search(self.grid)
        if self.choice:
            return tune.choice(self.choice)
        return getattr(tune, self.kind)(*getattr(self, self.kind))


class AshaConfig(Strict):
    grace_period: int = Field(default=1, ge=1)
    """Epochs every trial gets."""
    reduction_factor: float = Field(default=2, gt=1)
    """The fraction 1/r of trials kept at each rung."""


class SweepStatsConfig(Strict):
    enabled: bool = True
    """Encode and measure each finished VAE trial (latent/* columns)."""
    limit: int | None = Field(default=2000, gt=0)
    """First N images of the validation split."""


class SweepConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """The sweep's directory under storage_path, and its parent run's name."""
    base: dict
    """An ExperimentConfig mapping (a `base:` path is read by `load_sweep`)"""
    space: dict[str, Domain] = Field(min_length=1)
    """Dotted keys of the base config -> one domain each (see the sweep space entry)."""
    num_samples: int = Field(default=1, ge=1)
    """Repeats of the grid, each with fresh draws."""
    metric: METRICS = "val/loss"
    """The final metric trials are ranked by (and ASHA compares); one the base's family logs."""
    mode: Literal["min", "max"] = "min"
    """min or max of metric."""
    scheduler: Literal["fifo", "asha"] = "fifo"
    """fifo (every trial runs to the end) or asha (early stopping at epoch rungs)."""
    asha: AshaConfig = AshaConfig()
    """ASHA's rungs."""
    max_concurrent: int | None = Field(default=None, ge=1)
    """Default: what the cluster fits."""
    driver_cpus: float = Field(default=0.1, gt=0)
    """A trial's own process, beside Ray Train."""
    storage_path: str | None = None
    """Tune + Train run storage; default ./ray_results."""
    stats: SweepStatsConfig = SweepStatsConfig()
    """Latent statistics of the finished trials."""


def trial_config(base: dict, values: dict[str, Any], source: str = "trial") -> ExperimentConfig:
    """The base config with each swept `a.b.c` key set; shallow keys first, so a swept
    `model` block can be refined by a swept `model.latent_dim`."""
    raw = base
    for key in sorted(values, key=lambda k: k.count(".")):
        raw = set_path(raw, key.split("."), values[key])
    cfg = validate(raw, source)
    # Trials share the cluster: an unset worker size is 1 CPU, not a whole node.
    return cfg.model_copy(update={"train": cfg.train.model_copy(
        update={"cpus_per_worker": trial_cpus(cfg.train)})})


def trial_cpus(t) -> float:
    return t.cpus_per_worker or 1.0


def load_sweep(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """Read a sweep YAML; `base:` may be a mapping or a config path relative to the file."""
    path = Path(path)
    own = [o for o in overrides if not o.startswith("base.")]
    raw = apply_overrides(read_yaml(path), own)
    base = raw.get("base")
    if isinstance(base, str):
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        if not base_path.is_file():
            raise UserError(f"{path}: base: config file {base_path} not found")
        raw["base"] = read_yaml(base_path)
    if isinstance(raw.get("base"), dict):  # `--set base.train.epochs=2`, onto the base read
        raw["base"] = apply_overrides(raw["base"], [o[len("base."):] for o in overrides
                                                    if o.startswith("base.")])
    sweep = validate(raw, str(path), SweepConfig)
    check_space(sweep, str(path))
    return sweep


def check_space(sweep: SweepConfig, source: str) -> None:
    """Fail before any trial starts: a bad base, a fixed key, or a value the schema refuses."""
    family = validate(sweep.base, f"{source}: base").family
    if sweep.metric not in FAMILY_METRICS[family]:
        raise UserError(f"{source}: metric: a {family} does not log {sweep.metric!r}; it logs "
                        f"{', '.join(FAMILY_METRICS[family])}")
    for key, domain in sweep.space.items():
        if key in FIXED_KEYS:
            raise UserError(f"{source}: space.{key}: cannot be swept (resources and names come "
                            f"from the base config; set it under base:)")
        for value in domain.candidates():
            trial_config(sweep.base, {key: value}, f"{source}: space.{key}={value!r}")
    if sweep.scheduler == "asha":
        epochs = validate(sweep.base, source).train.epochs
        if sweep.asha.grace_period >= epochs:
            raise UserError(f"{source}: asha.grace_period ({sweep.asha.grace_period}) must be "
                            f"below base.train.epochs ({epochs}) for ASHA to stop anything")


def driver_resources(cfg: ExperimentConfig, driver_cpus: float) -> dict[str, float]:
    """What Tune reserves for a trial's own process. A `train.single_worker` training runs
    in it, so it holds the worker's CPUs (and GPU): no Ray Train start per trial. Otherwise
    it only drives a Ray Train run, which reserves its workers beside it."""
    t = cfg.train
    if t.single_worker:
        return {"CPU": trial_cpus(t), **({"GPU": 1.0} if t.use_gpu else {})}
    return {"CPU": driver_cpus}


def trial_resources(cfg: ExperimentConfig, driver_cpus: float) -> dict[str, float]:
    """What one trial holds at once: its own process, plus any Ray Train workers."""
    t = cfg.train
    if t.single_worker:
        return driver_resources(cfg, driver_cpus)
    return {"CPU": driver_cpus + t.num_workers * trial_cpus(t),
            "GPU": float(t.num_workers if t.use_gpu else 0)}


def fitting_trials(per_trial: dict[str, float], cluster: dict[str, float]) -> int:
    """How many trials the cluster holds at once (at least one)."""
    counts = [math.floor(cluster.get(k, 0.0) / v + 1e-9) for k, v in per_trial.items() if v > 0]
    return max(1, min(counts))


def best_row(rows: list[dict], metric: str, mode: str) -> dict | None:
    """The finished trial with the best final `metric` (non-finite values never win)."""
    done = [r for r in rows if r["status"] == "finished" and _finite(r.get(metric))]
    if not done:
        return None
    pick = min if mode == "min" else max
    return pick(done, key=lambda r: r[metric])


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def trial_status(run_status: str | None, tune_error: bool) -> str:
    """finished: the train run ended and logged its model; stopped_early: the scheduler cut
    it; failed: Tune recorded an error, or the trial never started its run. A trial driver
    re-raises every training error, so Tune records it; a run that ended FAILED without
    one is a driver Tune stopped while it was unwinding (or killed before: RUNNING)."""
    if tune_error or run_status is None:
        return "failed"
    return "finished" if run_status == "FINISHED" else "stopped_early"


def curves(rows: list[dict], x: str, y: str, by: list[str]) -> dict[str, tuple[list, list]]:
    """Mean of `y` over trials sharing (`by` values, `x`), as one sorted line per `by` group;
    rows missing `y` are left out."""
    groups: dict[str, dict] = {}
    for r in rows:
        if not _finite(r.get(y)):
            continue
        label = ", ".join(f"{k.split('.')[-1]}={r[k]}" for k in by) or "all trials"
        groups.setdefault(label, {}).setdefault(r[x], []).append(r[y])
    return {label: (sorted(points), [sum(points[v]) / len(points[v]) for v in sorted(points)])
            for label, points in sorted(groups.items())}
