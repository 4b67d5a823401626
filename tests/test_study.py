"""A study is a file a researcher writes: a step kind of their own, defined in their module and
named in the study's `imports:`, runs through `latentatlas run --config` by its registration
alone; its typed output reaches the steps that read it and the parent run's steps.json; its
inputs are checked against the roles' types before anything runs; models from outside the
study (a `module:function` generator) enter as inputs."""

import json
import sys
import textwrap

import mlflow
import numpy as np
import pytest
from conftest import make_idx_dataset
from test_generative_range import HALF_BLOBS

from jobs.kinds import KINDS
from jobs.run import main as run_job
from latentatlas.encode import open_encoding

MY_KINDS = '''
"""A researcher's own step kinds: the mean p-norm of an encoding's codes, and a check that
reads it (typed) downstream."""

import numpy as np
from pydantic import Field

from jobs.kinds import Context, Encoding, Output, Role, Step, StepKind, register
from latentatlas.config import Strict
from latentatlas.encode import open_encoding
from latentatlas.record import Record


class NormOptions(Strict):
    power: float = Field(default=2.0, gt=0)
    """The norm's p."""


class Norms(Output):
    mean_norm: float
    rows: int


@register
class CodeNorm(StepKind):
    name = "code-norm"
    Options = NormOptions
    inputs = {"encoding": Role(Encoding, help="the codes whose norms are averaged")}
    output = Norms

    def run(self, ctx: Context, step: Step, inputs: dict) -> Norms:
        enc = inputs["encoding"]
        mu = open_encoding(enc.address).arrays(["mu"])["mu"]
        norm = float((np.abs(mu) ** step.options.power).sum(axis=1).mean()
                     ** (1 / step.options.power))
        run_id = ctx.recorder.record(Record("code-norm", f"norms {enc.label}",
                                            metrics={"norms/mean": norm}), ctx.parent_run_id)
        ctx.say(f"mean norm of {enc.label}'s codes: {norm:.4f}")
        return Norms(run_id=run_id, mean_norm=norm, rows=len(mu),
                     summary=[{"step": step.name, "run_id": run_id, "mean_norm": norm}])


class PlantedOptions(Strict):
    seed: int = 0
    """Draws the planted numbers."""


@register
class PlantedVariance(StepKind):
    """A variance-loss measurement of planted numbers: delta_var and mse near 0.02, drawn
    from the step's seed (replicates draw others)."""

    name = "planted-variance"
    Options = PlantedOptions

    def run(self, ctx: Context, step: Step, inputs: dict) -> Output:
        from analysis.claims import from_run, judge

        rng = np.random.default_rng(step.options.seed)
        m = {"variance_loss/delta_var_recon": 0.02 + 2e-4 * rng.normal(),
             "variance_loss/mse_recon": 0.02 + 2e-4 * rng.normal()}
        run_id = ctx.recorder.record(Record("planted", step.name, metrics=m),
                                     ctx.parent_run_id)
        numbers, sources = from_run(run_id, m, {"delta_var": "variance_loss/delta_var_recon",
                                                "mse": "variance_loss/mse_recon"})
        return Output(run_id=run_id, metrics=m, claims=[judge(
            "variance_loss", f"planted {step.name}", [], numbers, "planted", sources)],
            summary=[{"step": step.name, "seed": step.options.seed}])


@register
class NormCheck(StepKind):
    name = "norm-check"
    inputs = {"norms": Role(Norms)}

    def run(self, ctx: Context, step: Step, inputs: dict) -> Output:
        norms = inputs["norms"]
        assert isinstance(norms, Norms)  # typed, not a dict
        return Output(summary=[{"step": step.name, "checked_rows": norms.rows}])
'''

STUDY = """
imports: [my_kinds]
steps:
  encode-byo:
    kind: encode
    inputs: {model: "half_blobs:make"}
  norms:
    kind: code-norm
    inputs: {encoding: encode-byo}
    set: {power: 1}
  check:
    kind: norm-check
    inputs: {norms: norms}
"""


@pytest.fixture
def researcher(tmp_path, monkeypatch, request):
    """The researcher's modules on the path: their generator and their step kinds."""
    (tmp_path / "half_blobs.py").write_text(textwrap.dedent(HALF_BLOBS))
    (tmp_path / "my_kinds.py").write_text(MY_KINDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: [sys.modules.pop(m, None) for m in ("half_blobs", "my_kinds")])
    request.addfinalizer(lambda: [KINDS.pop(k, None) for k in ("code-norm", "norm-check",
                                                               "planted-variance")])
    return tmp_path


def test_a_step_kind_of_a_researchers_module_runs_by_its_registration_alone(
        ray_session, workdir, researcher, capsys):
    data = make_idx_dataset(workdir / "idx", n_train=64, n_test=200)
    study = researcher / "norms.yaml"
    study.write_text(STUDY)
    uri = f"sqlite:///{workdir}/mlflow.db"
    common = ["--tracking-uri", uri, "--experiment", "study", "--dataset", "mnist",
              "--data-path", str(data)]
    assert run_job(["--config", str(study), "--steps"]) == 0
    assert "norms                                code-norm <- encode-byo" in \
        capsys.readouterr().out
    assert run_job(["--config", str(study), *common]) == 0
    out = capsys.readouterr().out
    assert "input from outside the study: half_blobs:make (make)" in out
    parent_id = out.split("MLflow run id: ")[1].split()[0]
    steps = json.loads(open(mlflow.artifacts.download_artifacts(
        run_id=parent_id, artifact_path="steps.json", tracking_uri=uri)).read())
    assert list(steps) == ["encode-byo", "norms", "check"]
    enc = open_encoding(steps["encode-byo"]["address"])
    mu = enc.arrays(["mu"])["mu"]
    assert steps["norms"]["mean_norm"] == pytest.approx(np.abs(mu).sum(axis=1).mean(),
                                                        rel=1e-6)
    assert steps["check"]["summary"] == [{"step": "check", "checked_rows": 200}]
    norms_run = mlflow.MlflowClient(uri).get_run(steps["norms"]["run_id"])
    assert norms_run.data.tags["mlflow.parentRunId"] == parent_id
    assert norms_run.data.metrics["norms/mean"] == steps["norms"]["mean_norm"]
    assert "mean norm of make's codes" in out

    # resumed with the study file edited since: refused in one line before a step runs
    from jobs.study import load_job, study_digest

    written = study_digest(study, load_job(study))
    study.write_text(STUDY.replace("power: 1", "power: 2"))
    runs_before = len(mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("study").experiment_id]))
    assert run_job(["--config", str(study), *common, "--resume", parent_id]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == [f"error: --resume {parent_id}: that run is of study norms.yaml (digest "
                   f"{written}), not of norms.yaml and its configs as they are now "
                   f"({study_digest(study, load_job(study))}); resume it with the study it "
                   "ran, or run this one afresh"]
    assert len(mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("study").experiment_id])) == runs_before
    study.write_text(STUDY)

    # the roles' types are checked before anything runs: a model is not an encoding
    bad = researcher / "bad.yaml"
    bad.write_text(STUDY.replace("inputs: {encoding: encode-byo}",
                                 'inputs: {encoding: "half_blobs:make"}'))
    runs_before = len(mlflow.search_runs(experiment_names=["study"], output_format="list"))
    assert run_job(["--config", str(bad), *common]) == 2
    err = capsys.readouterr().err
    assert ("error: bad.yaml: steps.norms.inputs.encoding: half_blobs:make: encoding "
            "directory not found") in err, err
    bad.write_text(STUDY.replace("inputs: {norms: norms}", "inputs: {norms: encode-byo}"))
    assert run_job(["--config", str(bad), *common]) == 2
    assert ("steps.check.inputs.norms: encode-byo is a encode step; a norms input is Norms"
            in capsys.readouterr().err)
    bad.write_text(STUDY.replace("imports: [my_kinds]", "imports: [no_such_kinds]"))
    assert run_job(["--config", str(bad), *common]) == 2
    assert "imports: no_such_kinds: cannot import it" in capsys.readouterr().err
    assert len(mlflow.search_runs(experiment_names=["study"], output_format="list")) == \
        runs_before  # nothing ran


def test_an_unknown_step_or_kind_is_one_line(tmp_path):
    from jobs.graph import load_job
    from latentatlas.errors import UserError

    spec = tmp_path / "s.yaml"
    spec.write_text("steps:\n  a: {kind: stats, inputs: {encoding: b}}\n")
    with pytest.raises(UserError, match=r"steps.a.inputs.encoding: 'b' is no step; a step's "
                                        r"inputs are earlier steps, or a model or encoding "
                                        r"from outside"):
        load_job(spec)
    spec.write_text("steps:\n  a: {kind: statz}\n")
    with pytest.raises(UserError, match=r"s.yaml: steps.a.kind: unknown kind 'statz' \(known: "
                                        r"encode, fid, .*; a kind of your own: name its "
                                        r"module in imports:\)"):
        load_job(spec)


def test_resuming_checks_the_run_is_of_the_same_study_file(tmp_path):
    """A resumed run must be of the study file as it is now (its --set may differ); a run of
    another file, or of this file since edited, is refused in one line naming both."""
    from jobs import study
    from latentatlas.errors import UserError
    from latentatlas.tracking import Recorder

    recorder = Recorder(f"sqlite:///{tmp_path}/mlflow.db", "resume")
    mine = tmp_path / "mine.yaml"
    mine.write_text(STUDY)
    digest = study.file_digest(mine)  # no train steps: the file alone
    run_id = recorder.client.create_run(recorder.experiment_id, tags={
        study.STUDY_TAG: "mine.yaml", study.DIGEST_TAG: digest}).info.run_id
    study.same_study(recorder, run_id, mine, digest)  # the same file: resumed
    mine.write_text(STUDY.replace("power: 1", "power: 2"))
    edited = study.file_digest(mine)
    assert edited != digest
    with pytest.raises(UserError, match=rf"--resume {run_id}: that run is of study mine.yaml "
                                        rf"\(digest {digest}\), not of mine.yaml and its "
                                        rf"configs as they are now \({edited}\)"):
        study.same_study(recorder, run_id, mine, edited)
    untagged = recorder.client.create_run(recorder.experiment_id).info.run_id
    study.same_study(recorder, untagged, mine, edited)  # a run from before the digest


def test_a_study_digest_covers_the_configs_its_train_steps_name(tmp_path, monkeypatch):
    """The same study file over an edited config of one of its trainings is another study;
    a config no step names is not part of it."""
    from jobs import study
    from latentatlas.errors import UserError
    from latentatlas.tracking import Recorder

    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("a.yaml", "unused.yaml"):
        (configs / name).write_text("train: {epochs: 3}\n")
    monkeypatch.setattr(study, "CONFIGS", configs)
    spec = tmp_path / "s.yaml"
    spec.write_text("steps:\n  vae: {kind: train, config: a.yaml}\n")
    written = study.load_job(spec)
    first = study.study_digest(spec, written)
    assert first == study.study_digest(spec, written) != study.file_digest(spec)
    (configs / "unused.yaml").write_text("train: {epochs: 4}\n")
    assert study.study_digest(spec, written) == first
    (configs / "a.yaml").write_text("train: {epochs: 4}\n")
    now = study.study_digest(spec, written)
    assert now != first
    # a run from before the configs joined the digest (its tag: the file alone) resumes
    recorder = Recorder(f"sqlite:///{tmp_path}/mlflow.db", "resume")
    older, other = (recorder.client.create_run(recorder.experiment_id, tags={
        study.STUDY_TAG: "s.yaml", study.DIGEST_TAG: d}).info.run_id
        for d in (study.file_digest(spec), first))
    study.same_study(recorder, older, spec, now)
    with pytest.raises(UserError, match=rf"that run is of study s.yaml \(digest {first}\)"):
        study.same_study(recorder, other, spec, now)


def test_replicates_run_every_seeded_step_and_what_reads_it_seeds_apart():
    from jobs import study
    from jobs.graph import JobSpec, replicated
    from jobs.kinds import registered

    registered(())
    job = JobSpec.model_validate({"steps": {
        "vae": {"kind": "train", "config": "fmnist_dense.yaml", "set": {"seed": 3}},
        "enc": {"kind": "encode", "inputs": {"model": "vae"}},
        "stats": {"kind": "stats", "inputs": {"encoding": "enc"}},
        "reg": {"kind": "regularisation"},  # no seed and nothing seeded upstream: once
        "byo": {"kind": "encode", "inputs": {"model": "half_blobs:make"}},
        "range": {"kind": "range", "inputs": {"generator": "half_blobs:make", "reference": "enc",
                                              "stats": "stats"}}}})
    out = replicated(job, 3, study.seed_of)
    assert list(out.steps) == ["vae", "vae@r1", "vae@r2", "enc", "enc@r1", "enc@r2", "stats",
                               "stats@r1", "stats@r2", "reg", "byo", "range", "range@r1",
                               "range@r2"]
    assert [out.steps[n].set.get("seed") for n in ("vae", "vae@r1", "vae@r2")] == \
        [3, 1003, 2003]
    assert out.steps["enc@r1"].inputs == {"model": "vae@r1"}
    assert out.steps["range@r2"].inputs["reference"] == "enc@r2"
    assert out.steps["range@r2"].set["seed"] == 2000  # its own seed option, 0 by default
    assert out.replicates == 3 and replicated(job, 1, study.seed_of) is job


def test_a_study_with_replicates_judges_its_claims_on_intervals(
        ray_session, workdir, researcher, capsys):
    """`replicates: 3`: the seeded step runs three times, seeds apart; its claim is one,
    judged on the interval over the three, stored, and judged again by `latentatlas claims`
    from the three runs."""
    from jobs import claims as claims_verb

    data = make_idx_dataset(workdir / "idx", n_train=16, n_test=16)
    study = researcher / "planted.yaml"
    study.write_text("imports: [my_kinds]\nreplicates: 3\nsteps:\n"
                     "  planted: {kind: planted-variance, set: {seed: 7}}\n")
    uri = f"sqlite:///{workdir}/mlflow.db"
    common = ["--tracking-uri", uri, "--experiment", "study", "--dataset", "mnist",
              "--data-path", str(data)]
    assert run_job(["--config", str(study), *common]) == 0
    out = capsys.readouterr().out
    parent_id = out.split("MLflow run id: ")[1].split()[0]
    load = lambda name: json.loads(open(mlflow.artifacts.download_artifacts(  # noqa: E731
        run_id=parent_id, artifact_path=name, tracking_uri=uri)).read())
    steps = load("steps.json")
    assert [s["summary"][0]["seed"] for s in steps.values()] == [7, 1007, 2007]
    (claim,) = load("claims.json")
    assert claim["subject"] == "planted planted" and len(claim["replicates"]) == 3
    deltas = [s["metrics"]["variance_loss/delta_var_recon"] for s in steps.values()]
    assert claim["measured"]["delta_var"] == pytest.approx(np.mean(deltas))
    lo, hi = claim["intervals"]["delta_var"]
    assert lo < min(deltas) and hi > max(deltas)  # t(0.975, 2) x sd / sqrt(3) > the range
    assert claim["rule_outcome"] == "holds" and "over 3 seeds" in claim["summary"]
    assert claims_verb.main([parent_id, "--tracking-uri", uri, "--experiment", "study"]) == 0
    assert "over 3 seeds" in capsys.readouterr().out


def test_a_step_of_its_own_replicates_replicates_what_reads_it():
    """A step's `replicates` (the main job's dense-VAE seeds): it and its downstream steps
    run that many times; a step reading it and an unreplicated step reads the latter's
    only copy; a step without a seed cannot ask for replicates."""
    from jobs import study
    from jobs.graph import JobSpec, replicated
    from jobs.kinds import registered
    from latentatlas.errors import UserError

    registered(())
    job = JobSpec.model_validate({"steps": {
        "a": {"kind": "train", "config": "fmnist_dense.yaml", "replicates": 3},
        "b": {"kind": "train", "config": "fmnist_dense.yaml", "set": {"seed": 1}},
        "enc-a": {"kind": "encode", "inputs": {"model": "a"}},
        "enc-b": {"kind": "encode", "inputs": {"model": "b"}},
        "move": {"kind": "relocate", "inputs": {"source": "enc-a", "target": "enc-b"}}}})
    out = replicated(job, 1, study.seed_of)
    assert list(out.steps) == ["a", "a@r1", "a@r2", "b", "enc-a", "enc-a@r1", "enc-a@r2",
                               "enc-b", "move", "move@r1", "move@r2"]
    assert out.steps["move@r2"].inputs == {"source": "enc-a@r2", "target": "enc-b"}
    assert out.steps["move@r1"].set["seed"] == 1000 and out.replicates == 3
    bad = JobSpec.model_validate({"steps": {"e": {"kind": "encode", "replicates": 2,
                                                  "inputs": {"model": "half_blobs:make"}}}})
    with pytest.raises(UserError, match=r"steps.e.replicates: a step without a seed runs the "
                                        "same every time"):
        replicated(bad, 1, study.seed_of)
