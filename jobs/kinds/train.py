"""`kind: train`: one training of an experiment config (jobs/configs), its inputs' addresses
set at the config keys the roles name (e.g. `invert.generator: dcgan`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jobs.kinds import Addressed, Context, Encoding, Model, Role, Step, StepKind, register
from latentatlas.errors import UserError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@cache
def config_file(name: str) -> dict:
    """A config of jobs/configs as read, once per process."""
    from latentatlas.config import read_yaml

    return read_yaml(CONFIGS / name)


def raw_config(name: str, spec) -> dict:
    """The step's config as a nested mapping: its file, then its `set` keys."""
    import copy

    from jobs.graph import settings

    if not spec.config:
        raise UserError(f"{spec.where(name)}: a train step needs config (a YAML file of "
                        "jobs/configs)")
    return settings(spec, copy.deepcopy(config_file(spec.config)))


def with_addresses(raw: dict, addresses: dict[str, str], where: str):
    """The experiment config with each input's address at the key its role names."""
    from latentatlas.config import set_path, validate

    for key, address in addresses.items():
        raw = set_path(raw, key.split("."), address)
    return validate(raw, where)


@dataclass
class TrainOptions:
    raw: dict
    """The config file with the step's `set` keys, before its inputs' addresses."""
    config: object
    """Validated, with placeholders where the inputs' addresses go."""


def val_mse_history(recorder, run_id: str) -> list[float]:
    """The training's validation MSE after each epoch, as its run logged it. An epoch logged
    twice (a worker lost after logging it but before Ray Train registered its checkpoint:
    the restarted worker trains it again) counts once, as last logged by its worker's
    clock: the model went on from that one. A history with an epoch missing is refused."""
    from latentatlas.errors import UserError

    history = recorder.client.get_metric_history(run_id, "val/mse")
    last = {m.step: m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))}
    steps = list(last)
    if steps and steps != list(range(steps[0], steps[0] + len(steps))):
        raise UserError(f"run {run_id}: val/mse is logged for epochs {steps}, with some "
                        "missing; the claims read one value per epoch")
    return list(last.values())


def predicted_variance(cfg, inputs: dict) -> float | None:
    """What a training's learning test scales by: the variance per variable of what a
    second stage's val/mse measures, the posterior means of its held-out codes (var(mu),
    whether it trains on draws or on means), a classifier's accuracy floor; None where the
    family's test reads it from its own metrics."""
    import numpy as np

    from analysis.claims import CLASSIFIER_ACCURACY
    from latentatlas.encode import open_encoding

    if cfg.family == "classifier":
        return CLASSIFIER_ACCURACY
    encodings = [out for out in inputs.values() if isinstance(out, Encoding)]
    if cfg.family != "second_stage" or not encodings:
        return None
    mu = open_encoding(encodings[0].address).arrays(["mu"])["mu"]
    return float(mu.astype(np.float64).var(axis=0).mean())


def trained_setting(ctx: Context, cfg, step: Step, run_id: str, metrics: dict,
                    inputs: dict) -> dict:
    """What a model was trained on, as the claims compare and check it: every family's
    setting (a recoder, a classifier, a second stage are components: their learning tested,
    not compared with the seed's), its step's reduction, its val/mse history."""
    from analysis.claims import architecture, training_setting
    from latentatlas.families import FAMILIES

    family = FAMILIES[cfg.family]
    history = val_mse_history(ctx.recorder, run_id) if family.has_val_mse else None
    return training_setting(
        ctx.dataset, architecture(cfg.model, ctx.pixels), family.loss(cfg) or cfg.family,
        len(history) if history else cfg.train.epochs,  # until_settled may stop earlier
        history, run_id, reduced=step.spec.reduced,
        learning=family.learning(metrics, predicted_variance(cfg, inputs)),
        auxiliary=family.auxiliary)


def what_it_reads(inputs: dict) -> str:
    """A training's inputs in words: a model by its label, an encoding by its codes."""
    return ", ".join(f"{out.label}'s {out.rows} codes" if isinstance(out, Encoding)
                     else out.label for out in inputs.values())


@register
class Train(StepKind):
    name = "train"
    output = Model

    def options(self, name: str, spec) -> TrainOptions:
        raw = raw_config(name, spec)
        placeholders = {key: f"<output of {up}>" for key, up in spec.inputs.items()}
        return TrainOptions(raw, with_addresses(raw, placeholders, spec.where(name)))

    def roles(self, step: Step) -> dict[str, Role]:
        # a training reads the addresses of models and encodings, at the keys it names
        return {key: Role(Addressed, help="an address set at this config key")
                for key in step.spec.inputs}

    def cpus(self, step: Step) -> float:
        """CPUs per worker x workers (unset: a whole node for a lone CPU training)."""
        from latentatlas.train.runner import worker_cpus

        cfg = step.options.config
        return worker_cpus(cfg.train) * cfg.train.num_workers

    def run(self, ctx: Context, step: Step, inputs: dict) -> Model:
        from latentatlas.families import FAMILIES
        from latentatlas.train.runner import train

        cfg = with_addresses(step.options.raw, {k: v.address for k, v in inputs.items()},
                             step.where)
        family = FAMILIES[cfg.family]
        ctx.say(f"training {step.name}: {family.started(cfg, what_it_reads(inputs))}"
                f"{step.reduced}")
        out = train(cfg, tracking_uri=ctx.args.tracking_uri, experiment=ctx.args.experiment,
                    command=ctx.recorder.command,
                    parent_run_id=ctx.parent_run_id)
        line, columns = family.finished(out.metrics)
        registered = f", registered {out.registered}" if out.registered else ""
        ctx.say(f"trained {step.name}: {line}{registered} run {out.run_id}")
        for note in out.notes:
            ctx.say(f"warning: {note}")
        if out.registered:
            columns["registered"] = out.registered
        return Model(label=step.name, address=out.model_uri, run_id=out.run_id,
                     metrics=out.metrics, registered=out.registered, family=cfg.family,
                     model_name=cfg.model.name,
                     setting=trained_setting(ctx, cfg, step, out.run_id, out.metrics, inputs),
                     summary=[{"step": f"train {step.name}", "run_id": out.run_id,
                               **columns}])
