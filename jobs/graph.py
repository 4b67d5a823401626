"""A study declared as a graph of steps (jobs/configs/main.yaml, the main job, or another
study file such as jobs/configs/support150.yaml): the spec, its overrides, which steps a rerun
repeats, and the runner that starts every step whose inputs are done, as many at once as the
cluster's CPUs allow. What each kind of step is lives in jobs/kinds."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from latentatlas.config import Strict, parse_override, read_yaml, set_path, validate
from latentatlas.errors import UserError


class StepSpec(Strict):
    kind: str
    """A registered step kind (jobs/kinds, or a module of `imports`)."""
    config: str | None = None
    """A YAML file of the configs folder (train steps)"""
    set: dict[str, Any] = {}
    """Dotted keys of the step's config -> values."""
    inputs: dict[str, str | list[str]] = {}
    """Role -> earlier step(s), or a model or encoding from outside the study (runs:/...,
    models:/..., a model or encoding directory, module:function)"""
    exclusive: list[Literal["data"]] = []
    """Held alone while the step runs."""
    cpus: float | None = Field(default=None, ge=0)
    """Unset: what the step's config asks."""
    reduced: str | None = None
    """Said when the step starts."""
    replicates: int | None = Field(default=None, ge=1)
    """Runs of this seeded step and of every step downstream of it, seeds apart (unset: the
    study's `replicates`)."""
    _job: str = PrivateAttr(default="main.yaml")  # the job file it was read from

    def where(self, name: str) -> str:
        """Where the step is declared, for error lines: `main.yaml: steps.dense-s0`."""
        return f"{self._job}: steps.{name}"


def is_reference(value: str) -> bool:
    """Whether an input names something outside the study (a step name has no ':' or '/')."""
    return ":" in value or "/" in value


def names_of(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


class JobSpec(Strict):
    imports: list[str] = []
    """Python modules imported before the steps are read: they register step kinds of their
    own (jobs.kinds.register)."""
    replicates: int = Field(default=1, ge=1)
    """Runs of every seeded step (a training, a step with a seed option) and of every step
    downstream of one, seeds apart (`latentatlas run --replicates N` says otherwise); the
    claims they feed are judged over them, on intervals."""
    steps: dict[str, StepSpec]
    """Step name -> step, in the report's order and the runner's priority."""

    @model_validator(mode="after")
    def inputs_are_earlier_steps(self):
        seen: list[str] = []
        for name, step in self.steps.items():
            for role, names in step.inputs.items():
                for upstream in names_of(names):
                    if upstream not in seen and not is_reference(upstream):
                        what = "is a later step" if upstream in self.steps else "is no step"
                        raise ValueError(f"steps.{name}.inputs.{role}: {upstream!r} {what}; "
                                         "a step's inputs are earlier steps, or a model or "
                                         "encoding from outside (runs:/..., models:/..., a "
                                         "path, module:function)")
            seen.append(name)
        return self


def upstream(step: StepSpec) -> list[str]:
    """The steps of the study it reads (not its inputs from outside)."""
    return [n for names in step.inputs.values() for n in names_of(names)
            if not is_reference(n)]


def references(job: JobSpec) -> list[tuple[str, str, str]]:
    """(step, role, reference) of every input from outside the study."""
    return [(name, role, n) for name, step in job.steps.items()
            for role, names in step.inputs.items() for n in names_of(names)
            if is_reference(n)]


def load_job(path: str | Path) -> JobSpec:
    """The study file, validated; the step kinds its `imports:` register, imported."""
    from jobs.kinds import registered

    job = validate(read_yaml(path), str(path), JobSpec)
    kinds = registered(job.imports)
    for name, step in job.steps.items():
        if step.kind not in kinds:
            raise UserError(f"{Path(path).name}: steps.{name}.kind: unknown kind {step.kind!r} "
                            f"(known: {', '.join(sorted(kinds))}; a kind of your own: name its "
                            "module in imports:)")
    for step in job.steps.values():
        step._job = Path(path).name
    return job


# Seeds of replicate r are the step's own + r x this: apart from any seed a study names
# itself (the main job's dense-s0 and dense-s1 train with seeds 0 and 1).
REPLICATE_SEEDS = 1000


def replicated(job: JobSpec, n: int, seed_of: Callable[[str, StepSpec], int | None]) -> JobSpec:
    """The study with every seeded step (`seed_of` gives its seed; None: it has none) run `n`
    times, or its own `replicates`, and every step downstream of one as many times as its
    most replicated input; each replicate's copy next to the first in the runner's order:
    replicate r (>= 1) of NAME is NAME@rR, its seed the step's own + r x REPLICATE_SEEDS,
    its inputs the same replicate's steps (an input with fewer replicates: its first).
    Steps that no seed reaches run once and feed every replicate."""
    counts: dict[str, int] = {}
    for name, step in job.steps.items():  # inputs are earlier steps: one pass in order
        seeded = seed_of(name, step) is not None
        if step.replicates and not seeded:
            raise UserError(f"{step.where(name)}.replicates: a step without a seed runs the "
                            "same every time; replicate a training or a step with a seed")
        own = step.replicates or (n if seeded else 1)
        counts[name] = max([own, *(counts[u] for u in upstream(step))])
    if max(counts.values(), default=1) == 1:
        return job
    steps = {}
    for name, step in job.steps.items():
        steps[name] = step
        for r in range(1, counts[name]):
            ups = {u: f"{u}@r{r}" for u in upstream(step) if counts[u] > r}
            inputs = {role: ups.get(v, v) if isinstance(v, str) else [ups.get(u, u) for u in v]
                      for role, v in step.inputs.items()}
            seed = seed_of(name, step)
            keys = {"seed": seed + r * REPLICATE_SEEDS} if seed is not None else {}
            if isinstance(step.set.get("name"), str):  # a training's run name, told apart
                keys["name"] = f"{step.set['name']}@r{r}"
            copy = step.model_copy(update={"inputs": inputs, "set": {**step.set, **keys}})
            copy._job = step._job
            steps[f"{name}@r{r}"] = copy
    return job.model_copy(update={"steps": steps, "replicates": max(counts.values())})


def with_settings(job: JobSpec, extra: dict[str, dict[str, Any]]) -> JobSpec:
    """The job with `extra[step]` keys added to (or replacing) those steps' `set`."""
    return job.model_copy(update={"steps": {
        name: step.model_copy(update={"set": {**step.set, **extra.get(name, {})}})
        for name, step in job.steps.items()}})


def with_overrides(job: JobSpec, overrides: list[str], source: str) -> JobSpec:
    """`--set STEP.key=value` items added to that step's `set`; `--set STEP.inputs.ROLE=X`
    gives the role another input (a model from outside the study, named at run time)."""
    import difflib

    extra: dict[str, dict[str, Any]] = {}
    inputs: dict[str, dict[str, Any]] = {}
    for item in overrides:
        keys, value = parse_override(item)
        if len(keys) < 2 or keys[0] not in job.steps:
            close = difflib.get_close_matches(keys[0], list(job.steps), n=1)
            hint = f"did you mean {close[0]}?" if close else "`latentatlas run --steps` lists them"
            raise UserError(f"--set {item}: expected STEP.key=value with STEP a step of {source} "
                            f"(e.g. --set dense-s0.train.epochs=2); {hint}")
        if keys[1] == "inputs" and len(keys) > 2:
            inputs.setdefault(keys[0], {})[".".join(keys[2:])] = value
        else:
            extra.setdefault(keys[0], {})[".".join(keys[1:])] = value
    job = with_settings(job, extra)
    if not inputs:
        return job
    raw = job.model_dump()
    for name, given in inputs.items():
        raw["steps"][name]["inputs"] = {**raw["steps"][name]["inputs"], **given}
    given = validate(raw, f"{source} with --set", JobSpec)
    for name, step in given.steps.items():
        step._job = job.steps[name]._job
    return given


def settings(step: StepSpec, base: dict | None = None) -> dict:
    """A step's config as a nested mapping: its file (or `base`), then its `set` keys."""
    raw = dict(base or {})
    for key, value in step.set.items():
        raw = set_path(raw, key.split("."), value)
    return raw


def rerun(job: JobSpec, only: list[str], start: str | None, done: set[str]) -> list[str]:
    """The steps a run repeats: `only` exactly; `start` and every step downstream of it;
    neither: those without an output in `done` (the parent run's)."""
    names = list(job.steps)
    for name in [*only, *([start] if start else [])]:
        if name not in job.steps:
            raise UserError(f"--only/--from {name}: no such step (steps: {', '.join(names)})")
    if only:
        chosen = set(only)
    elif start:
        chosen = {start}
        for name in names:  # inputs are earlier steps: one pass in order closes the set
            if chosen & set(upstream(job.steps[name])):
                chosen.add(name)
    else:
        chosen = {n for n in names if n not in done}
    for name in chosen:
        missing = [u for u in upstream(job.steps[name]) if u not in chosen and u not in done]
        if missing:
            raise UserError(f"step {name}: its input(s) {', '.join(missing)} have no output in "
                            "the resumed run; rerun them too (--from)")
    return [n for n in names if n in chosen]


def to_start(job: JobSpec, waiting: list[str], done, cpus: Callable[[str], float],
             total_cpus: float, used: float, held: set[str]) -> list[str]:
    """The waiting steps to start now, in the spec's order (its priority): those whose
    inputs are `done`, whose exclusive resources are not `held` and whose CPUs fit beside
    the `used` ones (a step asking more than the cluster has runs alone). A ready step that
    waits for CPUs holds back every later step that asks CPUs, so that small later steps
    cannot starve it."""
    chosen, reserved = [], False
    held = set(held)
    for name in waiting:
        step = job.steps[name]
        if any(u not in done for u in upstream(step)):
            continue
        need = min(cpus(name), total_cpus)
        if used > 1e-9 and used + need > total_cpus + 1e-9:  # (float sums drift)
            reserved = True
            continue
        if (reserved and need > 0) or held & set(step.exclusive):
            continue
        chosen.append(name)
        used += need
        held |= set(step.exclusive)
    return chosen


def run_graph(job: JobSpec, todo: list[str], outputs: dict[str, Any],
              run_step: Callable[[str, dict[str, Any]], Any], cpus: Callable[[str], float],
              total_cpus: float, finished: Callable[[str, Any], None] = lambda n, o: None,
              ) -> dict[str, Any]:
    """Run the steps `todo` given the `outputs` of the others, each as `to_start` allows;
    Ray places the work. `run_step(name, inputs)` returns the step's output, `finished(name,
    output)` is called in this thread as each ends. The first failure stops new starts; it
    is raised once the running steps end."""
    outputs = dict(outputs)
    waiting = list(todo)
    running: dict[Future, tuple[str, float]] = {}  # -> (step, its CPUs)
    held: set[str] = set()
    used = 0.0
    error: BaseException | None = None
    with ThreadPoolExecutor(max(1, len(todo)), thread_name_prefix="step") as pool:
        while waiting or running:
            starting = [] if error else to_start(job, waiting, outputs, cpus, total_cpus,
                                                 used, held)
            for name in starting:
                step = job.steps[name]
                inputs = {role: outputs[n] if isinstance(n, str) else [outputs[m] for m in n]
                          for role, n in step.inputs.items()}  # (references: resolved)
                need = min(cpus(name), total_cpus)
                used += need
                held |= set(step.exclusive)
                waiting.remove(name)
                running[pool.submit(run_step, name, inputs)] = (name, need)
            if not running:
                if error is None and waiting:
                    raise UserError(f"steps {', '.join(waiting)} cannot start (their inputs "
                                    "never finished)")
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name, need = running.pop(future)
                used -= need
                held -= set(job.steps[name].exclusive)
                if future.exception() is not None:
                    error = error or future.exception()
                    continue
                outputs[name] = future.result()
                finished(name, outputs[name])
    if error is not None:
        raise error
    return outputs
