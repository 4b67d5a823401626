"""The study runner behind `latentatlas run` (jobs/run.py): a study file (the main job,
jobs/configs/main.yaml, is one of them) resolved once into validated steps, its inputs from
outside opened and checked, every step run as its kind says (jobs/kinds) once its inputs are
done, and the run that holds them: every step's output (steps.json, what --resume reads), the
summary and the claims as judged (claims.json, what `latentatlas claims` judges again).
Imported once the command line is parsed."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from jobs.graph import (
    REPLICATE_SEEDS,
    JobSpec,
    is_reference,
    load_job,
    names_of,
    references,
    replicated,
    rerun,
    run_graph,
    with_overrides,
    with_settings,
)
from jobs.kinds import KINDS, Context, Output, Step
from jobs.kinds.train import CONFIGS, raw_config
from latentatlas.report import print_steps

MAIN = CONFIGS / "main.yaml"
STEPS_FILE = "steps.json"  # the parent run's outputs of every step: what --resume reads
NOTE = "mlflow.note.content"  # a run's description, shown as Markdown on its page
STUDY_TAG, DIGEST_TAG = "latentatlas.study", "latentatlas.study_digest"


def study_digest(path: Path, job) -> str:
    """The study file's content and that of the configs its train steps name (jobs/configs),
    hashed: what a resumed run must share (its --set may differ: a rerun step's settings
    are the point of a resume)."""
    import hashlib

    digest = hashlib.sha256(Path(path).read_bytes())
    for name in sorted({s.config for s in job.steps.values() if s.kind == "train"}):
        digest.update(b"\0" + name.encode() + b"\0" + (CONFIGS / name).read_bytes())
    return digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """The digest of runs from before the configs joined it: the study file alone."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def same_study(recorder, run_id: str, path: Path, digest: str) -> None:
    """A resumed run is of the same study (as `study_digest` reads it, or, for a run from
    before the configs joined the digest, the same study file), or one line says which it is
    of."""
    from latentatlas.errors import UserError

    try:
        tags = recorder.client.get_run(run_id).data.tags
    except Exception:  # MLflow raises several types for an unknown run
        return  # parent_outputs says it in one line
    theirs = tags.get(DIGEST_TAG)
    if theirs is not None and theirs not in (digest, file_digest(path)):
        raise UserError(f"--resume {run_id}: that run is of study {tags.get(STUDY_TAG)} "
                        f"(digest {theirs}), not of {path.name} and its configs as they are "
                        f"now ({digest}); resume it with the study it ran, or run this one "
                        "afresh")


def pick_dataset(requested: str | None, data_path: str | None = None) -> str:
    """Fashion-MNIST when Debian's package is there; scikit-learn digits as a last resort."""
    from latentatlas.data import load_split
    from latentatlas.errors import UserError

    if requested:
        return requested
    try:
        load_split("fashion-mnist", "test", data_path, limit=1)
        return "fashion-mnist"
    except UserError as e:
        print(f"note: {e}; falling back to scikit-learn digits", flush=True)
        return "digits"


def plain(value):
    """JSON-able: numpy numbers and arrays as Python numbers and lists."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def job_options(job: JobSpec, args, dataset: str) -> JobSpec:
    """The command's own options as keys of its steps (before `--set`, which wins): every
    training that reads images reads the study's dataset (a step's own data.limit stays when
    lower), --epochs sets every training's epochs (`train.epochs`), the regularisation's and
    the sparsity experiment's training before the noise (their `epochs`)."""
    from latentatlas.config import FAMILIES, model_tag
    from latentatlas.families import FAMILIES as MODEL_FAMILIES

    extra: dict[str, dict] = {}
    for name, step in job.steps.items():
        keys = extra.setdefault(name, {})
        if step.kind in ("regularisation", "sparsity") and args.epochs:
            keys["epochs"] = args.epochs
        if step.kind != "train":
            continue
        raw = raw_config(name, step)
        family = MODEL_FAMILIES.get(FAMILIES.get(model_tag(raw.get("model", {}))))
        if family and family.reads_dataset:
            keys["data.name"] = dataset
            if args.data_path:
                keys["data.path"] = args.data_path
            if args.limit:
                own = (raw.get("data") or {}).get("limit")
                keys["data.limit"] = min(args.limit, own or args.limit)
        if args.epochs:
            keys["train.epochs"] = args.epochs
    return with_settings(job, extra)


def resolve(job: JobSpec) -> dict[str, Step]:
    """Every step's options validated, its inputs checked against its kind's roles (the
    output type each reads) and its kind's own checks: before anything starts."""
    from latentatlas.errors import UserError

    resolved = {}
    for name, spec in job.steps.items():
        kind = KINDS[spec.kind]
        step = resolved[name] = Step(name, spec, kind.options(name, spec))
        roles = kind.roles(step)
        for role in spec.inputs:
            if role not in roles:
                raise UserError(f"{step.where}.inputs.{role}: a {spec.kind} step reads "
                                f"{', '.join(roles) or 'no inputs'}")
        for role, expects in roles.items():
            given = spec.inputs.get(role)
            if given is None:
                if expects.required:
                    raise UserError(f"{step.where}.inputs: a {spec.kind} step needs {role}")
                continue
            if expects.many != isinstance(given, list):
                raise UserError(f"{step.where}.inputs.{role}: expected "
                                f"{'a list of steps' if expects.many else 'one step'}")
            for up in (n for n in names_of(given) if not is_reference(n)):
                produces = KINDS[job.steps[up].kind].output
                if not issubclass(produces, expects.type):
                    raise UserError(f"{step.where}.inputs.{role}: {up} is a "
                                    f"{job.steps[up].kind} step; a {role} input is "
                                    f"{expects.type.__name__} ({expects.help or 'see the kind'})")
        kind.check(step, job)
    return resolved


def seed_of(name: str, spec) -> int | None:
    """A step's seed, where it has one: a training's config seed, or its kind's `seed`
    option (what replicates vary: jobs.graph.replicated)."""
    if spec.kind == "train":
        return int(raw_config(name, spec).get("seed", 0))
    fields = KINDS[spec.kind].Options.model_fields
    return int(spec.set.get("seed", fields["seed"].default)) if "seed" in fields else None


def cpus_of(steps: dict[str, Step]) -> dict[str, float]:
    """The CPUs each step holds while it runs: its `cpus:`, else what its kind asks."""
    return {name: KINDS[s.spec.kind].cpus(s) if s.spec.cpus is None else s.spec.cpus
            for name, s in steps.items()}


def open_references(job: JobSpec, steps: dict[str, Step], recorder, shape, pixels) -> dict:
    """The inputs from outside the study, opened and checked, by reference."""
    from jobs.inputs import open_input

    opened = {}
    for name, role, reference in references(job):
        expects = KINDS[job.steps[name].kind].roles(steps[name])[role]
        if not isinstance(opened.get(reference), expects.type):  # each use checks its type
            opened[reference] = open_input(recorder, reference, role, expects, shape, pixels,
                                           f"{steps[name].where}.inputs.{role}")
    return opened


# ---- the job -----------------------------------------------------------------------------

def print_graph(job: JobSpec) -> None:
    """The steps in order: name, kind, config, inputs (earlier steps and from outside)."""
    for name, step in job.steps.items():
        given = [n for names in step.inputs.values() for n in names_of(names)]
        reads = f" <- {', '.join(given)}" if given else ""
        config = f" {step.config}" if step.config else ""
        print(f"{name:36} {step.kind}{config}{reads}")


def parent_outputs(recorder, run_id: str, job: JobSpec) -> dict[str, Output]:
    """The outputs a resumed run kept, typed as their steps' kinds make them."""
    from pydantic import ValidationError

    from latentatlas.errors import UserError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = recorder.client.download_artifacts(run_id, STEPS_FILE, tmp)
        except Exception:  # MLflow raises several types for a missing run or artifact
            raise UserError(f"--resume {run_id}: not a main-job run with {STEPS_FILE} in "
                            f"{recorder.uri}") from None
        try:
            outputs = json.loads(Path(local).read_text())
        except ValueError:  # a write cut short (a full disk under MLflow's artifacts)
            raise UserError(f"--resume {run_id}: its {STEPS_FILE} is damaged (a write cut "
                            "short); run the study afresh") from None
    # Claims in today's shape (analysis.claims.judge): a run of an earlier version cannot
    # be mixed with this one's.
    if any("key" not in c for out in outputs.values() for c in out.get("claims", [])):
        raise UserError(f"--resume {run_id}: its {STEPS_FILE} predates the claims table of "
                        "2026-12-02 (issue #27); run the job afresh")
    typed = {}
    for name, out in outputs.items():
        if name in job.steps:
            try:
                typed[name] = KINDS[job.steps[name].kind].output.model_validate(out)
            except ValidationError:
                raise UserError(f"--resume {run_id}: its output of {name} is not a "
                                f"{job.steps[name].kind} step's (an earlier version of the "
                                "platform, or another study file); run the study afresh") \
                    from None
    return typed


def job_file(given: str | None) -> Path:
    """The declared job to run: `given` (a path, or a file name of jobs/configs), else the
    main job."""
    from latentatlas.errors import UserError

    if given is None:
        return MAIN
    for path in (Path(given), CONFIGS / given):
        if path.is_file():
            return path.resolve()
    raise UserError(f"--config {given}: no such job file (the declared jobs: "
                    f"{', '.join(sorted(p.name for p in CONFIGS.glob('*.yaml') if is_job(p)))})")


def is_job(path: Path) -> bool:
    """A declared job file (top-level `steps:`), not an experiment config."""
    from latentatlas.config import read_yaml

    raw = read_yaml(path)
    return isinstance(raw, dict) and "steps" in raw


def run(args) -> int:
    import numpy as np
    import ray

    from analysis.claims import pool_replicates
    from jobs.verdicts import (
        CLAIMS_FILE,
        claims_file,
        claims_table,
        print_claims,
        step_description,
        study_description,
        verdict_metrics,
    )
    from latentatlas import runtime
    from latentatlas.command import open_recorder
    from latentatlas.data import load_split
    from latentatlas.errors import UserError
    from latentatlas.record import Record
    from latentatlas.tracking_store import runs_url

    path = job_file(args.config)
    job = written = load_job(path)
    if args.steps:
        print_graph(job)
        return 0
    if (args.only or args.start) and not args.resume:
        raise UserError("--only/--from rerun part of a job: give --resume RUN_ID (the main run "
                        "whose outputs the other steps keep)")
    recorder = open_recorder(args)
    dataset = pick_dataset(args.dataset, args.data_path)
    shape = load_split(dataset, "test", args.data_path, limit=1).shape
    pixels = int(np.prod(shape))
    job = with_overrides(job_options(job, args, dataset), args.overrides, path.name)
    if args.replicates is not None and args.replicates < 1:
        raise UserError(f"--replicates {args.replicates}: at least 1")
    job = replicated(job, args.replicates or job.replicates, seed_of)
    steps = resolve(job)
    outside = open_references(job, steps, recorder, shape, pixels)
    digest = study_digest(path, written)  # the study as written, before --set
    if args.resume:
        same_study(recorder, args.resume, path, digest)
    kept = parent_outputs(recorder, args.resume, job) if args.resume else {}
    todo = rerun(job, args.only, args.start, set(kept)) if args.resume else list(job.steps)
    kept = {n: o for n, o in kept.items() if n not in todo}
    runtime.init_ray(args.ray_address)
    cpus = cpus_of(steps)  # a training unset asks a whole node: Ray knows the nodes
    tags = {"latentatlas.machine": runtime.machine(), STUDY_TAG: path.name,
            DIGEST_TAG: digest,
            **({"latentatlas.resumed_from": args.resume} if args.resume else {})}
    with recorder.run(path.stem, "main", tags=tags) as parent_run_id:
        ctx = Context(args, dataset, recorder, parent_run_id, pixels, path.stem)
        ctx.say(f"dataset {dataset}; MLflow {recorder.uri}; parent run {parent_run_id}")
        if not runtime.current().verbose:
            ctx.say(f"Ray's own messages go to {runtime.current().log_path} "
                    "(--verbose prints them)")
        if args.resume:
            ctx.say(f"resuming {args.resume}: rerunning {', '.join(todo) or 'nothing'}; "
                    f"{len(kept)} steps keep its outputs")
        for reference, out in outside.items():
            ctx.say(f"input from outside the study: {reference} ({out.label})")
        if job.replicates > 1:
            ctx.say(f"{job.replicates} replicates of every seeded step and what reads it "
                    f"(NAME@rR: seeds + R x {REPLICATE_SEEDS}); claims judged on "
                    "intervals over them")
        outputs = dict(kept)

        def stored() -> Record:
            return Record("main", path.stem, dicts={
                STEPS_FILE: {n: plain(outputs[n].model_dump()) for n in job.steps
                             if n in outputs},  # in the study's order
                **({"inputs.json": {r: plain(o.model_dump()) for r, o in outside.items()}}
                   if outside else {})})

        def run_step(name: str, inputs: dict) -> Output:
            step = steps[name]
            kind = KINDS[step.spec.kind]
            out = kind.run(ctx, step, inputs)
            if step.spec.reduced and step.spec.kind != "train":  # a training's is its setting's
                from analysis.claims import withhold

                out.claims = [withhold(c, f"{name}: {step.spec.reduced}") for c in out.claims]
            # what a later step reads is what a resumed run would read back from steps.json
            return kind.output.model_validate(plain(out.model_dump()))

        def finished(name: str, output: Output) -> None:  # each step's output, as it ends
            outputs[name] = output
            spec = job.steps[name]
            reads = [f"{role}: {', '.join(n) if isinstance(n, list) else n}"
                     for role, n in spec.inputs.items()]
            for run_id in {output.run_id, *getattr(output, "runs", {}).values()} - {None}:
                recorder.client.set_tag(run_id, NOTE, step_description(
                    name, spec.kind, path.stem, reads, output.claims))
            recorder.write(parent_run_id, stored())

        recorder.write(parent_run_id, stored())
        run_graph(job, todo, {**outside, **kept}, run_step, cpus.__getitem__,
                  ray.cluster_resources().get("CPU", 1.0), finished)
        summary = [row for name in job.steps for row in outputs[name].summary]
        claims = pool_replicates([c for name in job.steps for c in outputs[name].claims])
        # The terminal gets one block per step; the run keeps every number in one table,
        # and the claims as judged (`latentatlas claims RUN_ID` judges them again).
        # The run page tells the study's story: its claims as a description, counts as
        # metrics, a table the UI sorts.
        link = lambda run_id: runs_url(recorder.uri, recorder.experiment_id, run_id)  # noqa: E731
        recorder.write(parent_run_id, Record("main", path.stem, tables={
            "summary.json": {c: [row.get(c) for row in summary]
                             for c in dict.fromkeys(k for row in summary for k in row)},
            "claims_table.json": claims_table(claims)},
            metrics=verdict_metrics(claims),
            tags={NOTE: study_description(path.stem, claims, link)},
            files={CLAIMS_FILE: claims_file(claims)}))
    print_steps(summary, title="main job" if path == MAIN else f"study {path.name}")
    print_claims(claims)
    print(f"\nMLflow run id: {parent_run_id}  ({ctx.say.seconds / 60:.1f} min)")
    if recorder.uri.startswith("sqlite:"):
        print(f"browse: mlflow ui --backend-store-uri {recorder.uri}, then "
              f"{runs_url(recorder.uri, recorder.experiment_id)}")
    else:
        print(f"browse: {runs_url(recorder.uri, recorder.experiment_id)}")
    return 0
