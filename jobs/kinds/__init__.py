"""The shape of a step kind: what a study file's step can be.

A step kind is one module of this package (or of a researcher's own package, named in a study
file's `imports:`) that defines one `StepKind` subclass and registers it with `@register`:

- `name`: the `kind:` a study file writes;
- `Options`: a pydantic model of the keys its `set:` takes, each with help text;
- `inputs`: the roles it reads, each a `Role` naming the output type it expects;
- `run(ctx, step, inputs)`: does the work and returns a typed `Output`;
- what it prints (through `ctx.say`) and which claims it feeds (`Output.claims`).

The study runner (jobs/study.py) validates every step's options and inputs before anything
runs, hands each step the outputs of its inputs, and stores every output (steps.json) so that
a resumed study reads them back. Outputs are pydantic models: their fields are what a later
step may read, and nothing else reaches it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from latentatlas.config import Strict, validate
from latentatlas.errors import UserError
from latentatlas.report import Progress

# The kinds the platform ships, one module each; a study file's `imports:` adds others.
BUILTIN = ("model", "train", "encode", "stats", "sectors", "relocate", "range", "translate",
           "fid", "regularisation", "sparsity")
KINDS: dict[str, StepKind] = {}


# ---- outputs: what a step hands the steps that read it ------------------------------------

class Output(BaseModel):
    """Every step's output: its run, its rows of the study's summary, the claims it judged,
    and why it did nothing when it was skipped."""

    model_config = ConfigDict(extra="forbid")
    run_id: str | None = None
    summary: list[dict] = []
    claims: list[dict] = []
    skipped: str | None = None
    metrics: dict[str, Any] = {}


class Addressed(Output):
    """Something with an address another step or a config key can name: a model or an
    encoding."""

    label: str
    address: str
    setting: dict | None = None
    """What the model was trained on, as the claims compare it (analysis.claims)."""
    components: list[dict] = []
    """The settings of what else its codes depend on (a generator's recoder)."""
    model_name: str = ""

    @property
    def settings(self) -> list[dict]:
        """Its setting and its components': what a claim on its codes is judged with."""
        return [self.setting, *self.components]


class Model(Addressed):
    family: str = ""
    """The model's family: vae, gan, recoder, classifier, second_stage, or external."""
    registered: str | None = None
    input_shape: list[int] = []


class Encoding(Addressed):
    rows: int
    latent_dim: int


class Stats(Output):
    label: str
    inactive_all: bool
    information_gain: list[float] | None = None
    """Per variable, in variable order: what ranks the sector variables downstream."""


class Sectors(Output):
    label: str = ""
    k: int | None = None
    threshold: float | None = None
    information_gain: list[float] | None = None


class SupportSet(Sectors):
    index: list[int] = []
    """The chosen rows of the encoding."""
    seed: int = 0


@dataclass(frozen=True)
class Role:
    """One input of a step kind: the output type it reads, whether it is required, whether
    it takes a list of steps."""

    type: type[Output]
    required: bool = True
    many: bool = False
    help: str = ""


# ---- the kind -----------------------------------------------------------------------------

@dataclass
class Context:
    """What every step reads, resolved once by the command: its options, the study's
    dataset, the recorder, the parent run, progress lines."""

    args: Any
    """The command's parsed options (argparse.Namespace)."""
    dataset: str
    recorder: Any
    """Latentatlas.tracking.Recorder."""
    parent_run_id: str
    pixels: int
    """Values per image of the dataset (784 for 28x28 grayscale)"""
    job: str = "main"
    """The study file's stem: the parent run's name."""
    say: Progress = field(init=False)
    """Progress lines prefixed with the study's name."""

    def __post_init__(self):
        self.say = Progress(self.job)

    @property
    def encoding_root(self) -> Path:
        return Path("encodings") / f"{self.job}-{self.parent_run_id[:8]}"


@dataclass
class Step:
    """A declared step, resolved: its name, its spec (jobs.graph.StepSpec), its options."""

    name: str
    spec: Any
    options: Any

    @property
    def where(self) -> str:
        return self.spec.where(self.name)

    @property
    def reduced(self) -> str:
        """' (why it runs reduced)' or ''."""
        return f" ({self.spec.reduced})" if self.spec.reduced else ""


class StepKind:
    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = Strict
    inputs: ClassVar[dict[str, Role]] = {}
    output: ClassVar[type[Output]] = Output

    def options(self, name: str, spec) -> Any:
        """The step's validated options: its `set:` keys against `Options`."""
        from jobs.graph import settings

        if spec.config:
            raise UserError(f"{spec.where(name)}.config: a {self.name} step takes its keys in "
                            "`set`")
        return validate(settings(spec), spec.where(name), self.Options)

    def roles(self, step: Step) -> dict[str, Role]:
        """The roles this step reads (a training's are its config's address keys)."""
        return self.inputs

    def check(self, step: Step, job) -> None:
        """What `run` needs beyond its options and its roles' types, refused before anything
        runs; `job`: the study (jobs.graph.JobSpec)."""

    def cpus(self, step: Step) -> float:
        """The CPUs it holds while it runs: a Ray Data step's one actor (half a CPU), else
        none (it works in the driver's process)."""
        from latentatlas.batches import ACTOR_CPUS

        return ACTOR_CPUS if "data" in step.spec.exclusive else 0.0

    def run(self, ctx: Context, step: Step, inputs: dict[str, Any]) -> Output:
        raise NotImplementedError


def register(cls: type[StepKind]) -> type[StepKind]:
    """Class decorator: the kind under its `name`, once."""
    if cls.name in KINDS and type(KINDS[cls.name]) is not cls:
        raise ValueError(f"step kind {cls.name!r} is registered twice ({cls.__module__} and "
                         f"{type(KINDS[cls.name]).__module__})")
    KINDS[cls.name] = cls()
    return cls


def registered(imports: list[str] = ()) -> dict[str, StepKind]:
    """Every kind: the platform's and those of `imports` (modules that register their own)."""
    for module in (*(f"jobs.kinds.{m}" for m in BUILTIN), *imports):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UserError(f"imports: {module}: cannot import it ({e})") from None
    return KINDS


def raise_user(message: str):
    raise UserError(message)


def row_of(metrics: dict) -> dict:
    """A summary row's columns from `group/name` metrics: `name`."""
    return {k.split("/")[1]: v for k, v in metrics.items()}


def as_array(values: list | None):
    """A list an output carries (a gain, rows) as the numpy array the analyses take."""
    import numpy as np

    return None if values is None else np.asarray(values)
