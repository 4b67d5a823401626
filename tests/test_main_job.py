"""The main job (jobs/configs/main.yaml) end to end on a small synthetic MNIST-format dataset
where every step runs: dense-s0, trained long enough in small batches, keeps active
variables (BCE + KL leaves none active on 8x8 digits, even after 30 epochs), so the sector,
support-set, generative-range and translator steps all run. Each claim kind's rule outcome
is checked against numbers recomputed from what the job logged (encodings, tables, runs);
its verdict is a replication where the setting is the seed's, a generalisation where it
differs, not judged where a component (a reduced step, an unsettled training, a predictor
that did not learn) cannot carry it; the logged claims.json is judged again by
`latentatlas claims`."""

import json
import re

import mlflow
import numpy as np
import pytest
from conftest import make_idx_dataset

from analysis.claims import pool_replicates
from jobs import study
from jobs.run import main as run_job

N_TRAIN, N_TEST = 512, 300
# dense-s0 needs ~200 steps of 32 images to leave the collapsed start on these blobs (an
# in-process check: 14 epochs of 16 steps gave 4 of 4 active variables, 28% of the test
# codes in a sector); that start's val/mse is flat, so a training until settled would stop
# in it: both dense VAEs train 20 epochs here. With 16 variables it keeps 7-14 active,
# mostly noise of small sd, and almost no code lies in a sector of 7 of them; with 4, k <= 4.
# dense-s1 trains the same way (the generative range is measured in its space); every other
# training runs 1 epoch.
# The sparsity experiment's dense VAE needs ~150 steps at lr 0.003 to make a variable active
# on these blobs: 50 epochs of 4 steps.
# The encodes and stats of the job's VAEs run in the job's process here (unset actors: a
# small split's path, whose results equal Ray Data's: tests/test_encode_stats.py), not in one
# Ray Data actor each as on Fashion-MNIST: eight actors' start-ups were ~30 s of this test.
SETTING = ["--epochs", "1", *[f"--set={vae}.{key}" for vae in ("dense-s0", "dense-s1") for key in
                              ("train.epochs=20", "train.until_settled=false",
                               "train.batch_size=32", "model.latent_dim=4")],
           "--set", "range.samples=200", "--set", "sparsity.epochs=50",
           "--set", "sparsity.lr=0.003",
           *[f"--set={kind}-{vae}.actors=null" for kind in ("encode", "stats")
             for vae in ("dense-s0", "dense-s1", "dense-seeds", "conv-s0")]]


@pytest.mark.slow
def test_main_job_runs_every_step_and_its_verdicts_follow_the_logged_numbers(
        ray_session, workdir, capsys):
    data = make_idx_dataset(workdir / "idx", n_train=N_TRAIN, n_test=N_TEST)
    uri = f"sqlite:///{workdir}/mlflow.db"
    common = ["--tracking-uri", uri, "--experiment", "main", "--dataset", "mnist",
              "--data-path", str(data)]
    assert run_job([*common, *SETTING]) == 0
    check_job(capsys.readouterr().out, uri, workdir, common, capsys)


def check_job(out, uri, workdir, common, capsys):
    parent_id = out.split("MLflow run id: ")[1].split()[0]
    mlflow.set_tracking_uri(uri)
    parent = mlflow.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["latentatlas.kind"] == "main"

    kids = children(parent_id)
    kinds = sorted(r.data.tags["latentatlas.kind"] for r in kids)
    assert kinds == (["fid"] * 2 + ["range"] * 3 + ["regularisation"] + ["relocate"] * 5
                     + ["sectors", "sparsity", "support-set"] + ["train"] * 10
                     + ["translate-study"])
    trained = {r.info.run_name: r for r in kids if r.data.tags["latentatlas.kind"] == "train"}
    assert sorted(trained) == ["main-classifier", "main-conv-s0", "main-dcgan", "main-dense-s0",
                               "main-dense-s1", "main-dense-seeds", "main-dense-seeds@r1",
                               "main-dense-seeds@r2", "main-recoder", "main-second-stage"]
    # the three seeds of the dense-VAE claims' replicates, seeds apart
    assert [trained[f"main-dense-seeds{r}"].data.params["seed"] for r in ("", "@r1", "@r2")] \
        == ["100", "1100", "2100"]
    # --set reached the step it names, and only that one; --epochs every other training
    assert trained["main-dense-s0"].data.params["train.epochs"] == "20"
    assert trained["main-dense-s0"].data.params["train.batch_size"] == "32"
    assert trained["main-conv-s0"].data.params["train.batch_size"] == "128"
    assert {r.data.params["train.epochs"] for n, r in trained.items()
            if n not in ("main-dense-s0", "main-dense-s1")} == {"1"}
    assert trained["main-dcgan"].data.params["data.limit"] == "20000"  # its own reduction
    stats_runs = {}
    for name, run in trained.items():  # each VAE's stats run hangs under the model's run
        if any(vae in name for vae in ("dense", "conv")):
            (stats_runs[name.removeprefix("main-")],) = [
                r for r in children(run.info.run_id)
                if r.data.tags["latentatlas.kind"] == "stats"]
    assert trained["main-recoder"].data.metrics["inversion/latent_mse"] < 1  # beats guessing 0
    everything = load_steps(parent_id)
    declared = study.load_job(study.MAIN).steps
    replicates = {f"{n}@r{r}" for n in ("dense-seeds", "encode-dense-seeds",
                                        "stats-dense-seeds") for r in (1, 2)}
    assert set(everything) == set(declared) | replicates
    assert list(everything)[:3] == list(declared)[:3]  # in the study's order
    steps = {name: everything[name] for name in declared}
    claims = {name: out_["claims"] for name, out_ in steps.items()}
    every = pool_replicates([c for s in everything.values() for c in s["claims"]])
    # the dense VAE's own claims over its three seeds: one claim each, its replicates kept
    seeded = [c for c in every if c["subject"] == "dense-seeds"]
    assert {c["key"] for c in seeded} == {"variance_loss", "sparsity_dense", "stationary",
                                          "zero_out"}
    assert all(len(c["replicates"]) == 3 for c in seeded)
    # measured everywhere but the zero-out of a model with no inactive variable, or with
    # fewer active than inactive ones (conv-s0 after one epoch: none active)
    assert {c["key"] for c in every if c["verdict"] == "not measured"} <= {"zero_out"}, every
    for c in (c for c in every if c["verdict"] != "not measured"):
        assert c["verdict"] == ("not judged" if c["withheld"] else "generalisation"
                                if c["differences"] else "replication"), c
        assert c["rule_outcome"] in ("holds", "does not hold", "mixed", "inconclusive") \
            and c["runs"], c
    # a reduced step withholds what it feeds: the translator grid's claims, and those that
    # read the DCGAN, trained at a reduced size
    for c in claims["translators"]:
        assert c["verdict"] == "not judged" and any(
            w.startswith("a reduced step (translators: reduced") for w in c["withheld"]), c
    for c in claims["range"] + claims["relocate-dense-s0-dcgan"]:
        assert any(w.startswith("dcgan ") and "a reduced step" in w
                   for w in c["withheld"]), c
    # every component a claim reads carries its setting: the recoder's and the classifier's
    (ranged,) = claims["range"]
    assert [s["model"].split()[0] for s in ranged["setting"]["measured"]] == [
        "dcgan", "recoder", "dense"]
    assert ranged["setting"]["measured"][1]["auxiliary"]
    assert ranged["setting"]["measured"][1]["learning"]["what"] == "held-out latent MSE"

    check_stats_verdicts(steps, claims, stats_runs)
    check_sector_verdicts(steps, claims, kids)
    check_relocation_verdicts(claims, kids)
    check_range_verdict(claims, kids)
    fids = {r.info.run_name: r for r in kids if r.data.tags["latentatlas.kind"] == "fid"}
    registered = trained["main-classifier"].data.tags["latentatlas.registered"]
    key = f"fid/classifier-mnist-v{registered.rsplit('/', 1)[1]}"
    for label in ("dense-s0", "dense-s1"):
        assert {key, f"{key}/gmm"} <= set(fids[f"fid {label}"].data.metrics)
    check_fid_verdicts(claims["fid-dense-s0"], fids["fid dense-s0"].data.metrics, key)
    check_second_stage(trained["main-second-stage"], trained["main-dense-s0"],
                       fids["fid dense-s0"].data.metrics, steps["encode-dense-s0"]["address"],
                       claims["fid-dense-s0"])
    (translators,) = [r for r in kids if r.data.tags["latentatlas.kind"] == "translate-study"]
    check_translators(translators, claims["translators"])
    (sparsity,) = [r for r in kids if r.data.tags["latentatlas.kind"] == "sparsity"]
    check_sparsity(sparsity, claims["sparsity"])
    (regularity,) = [r for r in kids if r.data.tags["latentatlas.kind"] == "regularisation"]
    check_regularisation_pictures(regularity, children(regularity.info.run_id), workdir,
                                  claims["regularisation"], key.removeprefix("fid/"))

    for heading in ("== main job ==", "the seed's claims beside what was measured",
                    "mlflow ui --backend-store-uri"):
        assert heading in out
    report = out.split("the seed's claims beside what was measured")[1]
    # both sides' settings, the two MSEs named apart, the seed's figures from its table
    assert re.search(r"\(mnist, dense 784-256-64-32-4, BCE \+ KL, \d+ epochs \(val/mse trend "
                     r"[\d.]+% per epoch over the last 3\)\)", report)
    assert "(mnist, conv 16-32-64 latent 16, KL balancing, 1 epoch)" in report
    assert "dense-s0->dcgan (type 3)" in report and "dcgan->dense-s0 (type 3)" in report
    assert "reduced to fit the job" in out
    assert "mse(z=mu)" in report and "prior samples: delta_var" in report
    assert "8 of 16 inactive (MNIST, dense 784-256-64-32-16, BCE + KL)" in report
    # dense-s0 has 4 variables here, the seed's 16: its sparsity is no replication
    assert "dense 784-256-64-32-4, the seed's dense 784-256-64-32-16" in report
    assert f"verdicts: {counts(every)}" in report
    # the claims as judged are in the parent run, and judge again to the same verdicts
    assert json.loads(open(mlflow.artifacts.download_artifacts(
        run_id=parent_id, artifact_path="claims.json")).read()) == every
    from jobs import claims as claims_verb

    assert claims_verb.main([parent_id, *common[:4]]) == 0
    again = capsys.readouterr().out
    assert f"verdicts: {counts(every)}" in again and "(was: " not in again
    assert "val mse(z~q)" in out
    # a terminal's width; every number of the summary stays in the parent run's table
    summary = out.split("== main job ==")[1].split("== the seed's claims")[0]
    assert max(map(len, summary.splitlines())) <= 100
    table = main_job_table(parent_id)
    assert table["step"] == [row["step"] for s in everything.values() for row in s["summary"]]
    assert table["step"][:3] == ["train dense-s0", "stats dense-s0", "train dense-s1"]
    assert set(table) > {"val mse(z~q)", "inactive", "M", "aggregate_kl_sampling",
                         "mse_support", "nonempty"}

    # Part of the job again against this run's outputs: one step reruns, the rest is kept.
    assert run_job([*common, *SETTING, "--resume", parent_id,
                          "--only", "fid-dense-s1"]) == 0
    again = capsys.readouterr().out
    assert f"rerunning fid-dense-s1; {len(everything) - 1} steps keep its outputs" in again
    second_id = again.split("MLflow run id: ")[1].split()[0]
    assert mlflow.get_run(second_id).data.tags["latentatlas.resumed_from"] == parent_id
    assert [r.data.tags["latentatlas.kind"] for r in children(second_id)] == ["fid"]
    rerun = main_job_table(second_id)
    assert rerun["step"] == table["step"]
    changed = [s for s, a, b in zip(table["step"], table["run_id"], rerun["run_id"],
                                    strict=True) if a != b]
    assert changed == ["fid dense-s1"]
    i = table["step"].index("fid dense-s1")  # the same seeds give the same FIDs
    assert rerun["fid_prior"][i] == pytest.approx(table["fid_prior"][i], rel=1e-6)


def test_main_job_errors_name_the_step_and_key(ray_session, workdir, capsys):
    uri = f"sqlite:///{workdir}/mlflow.db"
    common = ["--tracking-uri", uri, "--experiment", "main", "--dataset", "digits"]
    assert run_job([*common, "--only", "range"]) == 2
    assert "--only/--from rerun part of a job: give --resume RUN_ID" in capsys.readouterr().err
    assert run_job([*common, "--set", "classifer.train.epochs=2"]) == 2
    assert "did you mean classifier?" in capsys.readouterr().err
    assert run_job([*common, "--set", "dense-s0.train.epochz=2"]) == 2
    err = capsys.readouterr().err
    assert "main.yaml: steps.dense-s0: train.epochz: Extra inputs are not permitted" in err
    assert run_job([*common, "--set", "stats-dense-s0.gain_rows=0"]) == 2
    assert "steps.stats-dense-s0: gain_rows: Input should be greater than 0" in \
        capsys.readouterr().err
    assert run_job([*common, "--resume", "0" * 32, "--only", "range"]) == 2
    assert "not a main-job run with steps.json" in capsys.readouterr().err
    assert not mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("main").experiment_id])


def test_a_step_reading_a_later_step_is_refused(tmp_path):
    from jobs.graph import load_job
    from latentatlas.errors import UserError

    spec = tmp_path / "job.yaml"
    spec.write_text("steps:\n  a: {kind: stats, inputs: {encoding: b}}\n"
                    "  b: {kind: encode, inputs: {model: c}}\n")
    with pytest.raises(UserError, match=r"steps.a.inputs.encoding: 'b' is a later step"):
        load_job(spec)



GRAPH = """steps:
  t1: {kind: train}
  d1: {kind: encode, inputs: {model: t1}, exclusive: [data]}
  t2: {kind: train}
  d2: {kind: encode, inputs: {model: t2}, exclusive: [data]}
  big: {kind: train}
  small: {kind: train}
  driver: {kind: stats, inputs: {encoding: d2}}
"""
CPUS = {"t1": 1.0, "t2": 1.0, "d1": 0.5, "d2": 0.5, "big": 2.0, "small": 1.0, "driver": 0.0}


def test_steps_start_in_the_specs_order_as_the_cpus_allow(tmp_path):
    """Two 1-CPU trainings on 2 CPUs, a data step after each (half a CPU, one at a time), a
    whole-node training and a small step behind it, a step of no CPU: each event of a run,
    and what starts then."""
    from jobs.graph import load_job, to_start

    spec = tmp_path / "job.yaml"
    spec.write_text(GRAPH)
    job = load_job(spec)
    waiting, done, running = list(job.steps), set(), {}

    def then(ended: str | None, *expected: str):
        if ended:
            done.add(ended)
            del running[ended]
        used = sum(CPUS[n] for n in running)
        held = {"data"} & {r for n in running for r in job.steps[n].exclusive}
        started = to_start(job, waiting, done, CPUS.__getitem__, 2.0, used, held)
        assert started == list(expected)
        for name in started:
            waiting.remove(name)
            running[name] = True

    then(None, "t1", "t2")  # big waits for CPUs; small would not fit either
    then("t1", "d1")  # beside t2; big still waits, and holds small back
    then("t2")  # d2 waits for the data resource; small (1 CPU) would fit: big holds it back
    then("d1", "d2")
    then("d2", "big", "driver")  # no CPU asked: nothing holds it back
    then("driver")
    then("big", "small")
    # A step short of CPUs holds later ones back even when it also waits for a resource.
    assert to_start(job, ["d2", "small"], {"t2"}, {"d2": 1.5, "small": 0.5}.__getitem__,
                    2.0, 1.0, {"data"}) == []
    # A float sum of what ended is not "something running".
    assert to_start(job, ["big"], set(), CPUS.__getitem__, 2.0, 0.1 + 0.2 - 0.3, set()) == \
        ["big"]


def test_the_runner_runs_every_step_and_raises_the_first_failure_after_the_running_end(
        tmp_path):
    import threading

    from jobs.graph import load_job, run_graph

    spec = tmp_path / "job.yaml"
    spec.write_text(GRAPH)
    job = load_job(spec)
    ended = []
    outputs = run_graph(job, list(job.steps), {}, lambda name, inputs: (name, inputs),
                        CPUS.__getitem__, 2.0, lambda name, output: ended.append(name))
    assert sorted(ended) == sorted(job.steps)
    assert outputs["d2"] == ("d2", {"model": ("t2", {})})

    # a fails while b runs beside it; c (the whole node) could start only once both ended,
    # whichever the runner sees end first: it never starts, b's output is still kept.
    spec.write_text("steps:\n  a: {kind: train}\n  b: {kind: train}\n  c: {kind: train}\n")
    job = load_job(spec)
    b_runs, a_fails, ran, ended = threading.Event(), threading.Event(), [], []

    def run_step(name, inputs):
        ran.append(name)
        if name == "a":
            assert b_runs.wait(30)
            a_fails.set()
            raise RuntimeError("a failed")
        b_runs.set()
        assert a_fails.wait(30)
        return name

    with pytest.raises(RuntimeError, match="a failed"):
        run_graph(job, ["a", "b", "c"], {}, run_step, {"a": 1, "b": 1, "c": 2}.__getitem__,
                  2.0, lambda name, output: ended.append(name))
    assert sorted(ran) == ["a", "b"] and ended == ["b"]


def children(of: str) -> list:
    return mlflow.search_runs(experiment_names=["main"], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{of}'",
                              order_by=["attributes.start_time ASC"])


def load_steps(run_id: str) -> dict:
    return json.loads(open(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="steps.json")).read())


def outcome(claims: list[dict], key: str) -> str:
    """What the claim's rule gave on the numbers (its verdict where the settings compare)."""
    (c,) = [c for c in claims if c["key"] == key]
    return c["rule_outcome"]


def holds(ok: bool) -> str:
    return "holds" if ok else "does not hold"


def both(first: bool, second: bool) -> str:
    return holds(True) if first and second else holds(False) if not (first or second) \
        else "mixed"


def counts(claims):
    from analysis.claims import counts

    return counts(claims)


def check_stats_verdicts(steps, claims, stats_runs):
    """Sparsity and stationarity from the encodings' own codes (Asperti's rule: var(mu) <
    0.05 or mean(sigma^2) > 0.95); variance loss and zero-out from the stats runs."""
    from latentatlas.encode import open_encoding

    for label in ("dense-s0", "dense-s1", "conv-s0"):
        rows = open_encoding(steps[f"encode-{label}"]["address"]).arrays(["mu", "logvar"])
        var_mu = rows["mu"].astype(np.float64).var(0)
        sigma2 = np.exp(rows["logvar"].astype(np.float64)).mean(0)
        inactive = int(((var_mu < 0.05) | (sigma2 > 0.95)).sum())
        m = stats_runs[label].data.metrics
        assert m["latent/inactive"] == inactive
        cs = claims[f"stats-{label}"]
        kind = "sparsity_conv" if label.startswith("conv") else "sparsity_dense"
        share = 8 if kind == "sparsity_conv" else 4  # an eighth, a quarter of the variables
        assert outcome(cs, kind) == holds(inactive >= len(var_mu) / share)
        stationary = var_mu + sigma2
        assert m["latent/stationary_mean"] == pytest.approx(stationary.mean(), rel=1e-4)
        assert outcome(cs, "stationary") == holds(
            abs(stationary.mean() - 1) <= 0.1 and bool(np.all(np.abs(stationary - 1) <= 0.25)))
        delta, mse = m["variance_loss/delta_var_recon"], m["variance_loss/mse_recon"]
        assert outcome(cs, "variance_loss") == holds(abs(delta - mse) <= 0.25 * mse)
    assert stats_runs["dense-s0"].data.metrics["latent/inactive"] < 4  # what makes it all run


def check_sector_verdicts(steps, claims, kids):
    """Sector counts recounted from dense-s0's codes on the logged variables; the support
    set's pairwise distances from its run."""
    from latentatlas.encode import open_encoding

    (sectors,) = [r for r in kids if r.data.tags["latentatlas.kind"] == "sectors"]
    variables = [int(v) for v in sectors.data.params["variables"].split(",")]
    threshold = sectors.data.metrics["sectors/threshold"]
    mu = open_encoding(steps["encode-dense-s0"]["address"]).arrays(["mu"])["mu"][:, variables]
    inside = np.all(np.abs(mu) > threshold, axis=1)
    patterns, counts = np.unique(mu[inside] > 0, axis=0, return_counts=True)
    logged = main_job_table(sectors.info.run_id, "sector_counts.json")["count"]
    assert sorted(c for c in logged if c) == sorted(counts.tolist())
    (density,) = claims["sectors-dense-s0"]
    assert density["summary"].startswith(f"{len(patterns)} of {2 ** len(variables)} sectors")
    m = sectors.data.metrics
    # the total variation to the prior's occupancy, from the codes: every sector has
    # probability P(z < -t)^k under N(0, I), the no-sector cell the rest
    from scipy.stats import norm

    k, n = len(variables), len(mu)
    cell = norm.cdf(-threshold) ** k
    tv = 0.5 * (np.abs(counts / n - cell).sum() + (2 ** k - len(counts)) * cell
                + abs((~inside).sum() / n - (1 - 2 ** k * cell)))
    assert m["sectors/tv_to_prior"] == pytest.approx(tv, rel=1e-6)
    assert density["rule_outcome"] == holds(tv >= 0.1 and tv > m["sectors/tv_prior_p99"])
    (support,) = [r for r in kids if r.data.tags["latentatlas.kind"] == "support-set"]
    s = support.data.metrics
    assert outcome(claims["relocate-dense-s0-dense-s1"], "support_far_apart") == holds(
        s["support/pairwise_mse"] > s["support/random_pairwise_mse"])


def by_interval(lo: float, hi: float, threshold: float) -> str:
    """The outcome of 'at most threshold' on an interval: holds below it, does not hold above
    it, inconclusive across it."""
    return "holds" if hi < threshold else "does not hold" if lo > threshold else "inconclusive"


def check_relocation_verdicts(claims, kids):
    """Each relocation's outcome from its own run's M / own interval over the items (the
    bootstrap's 95% interval, logged as metrics; one judged on another pair's numbers would
    fail), the support fit against the full fit; every headline is the authors' recipe for
    the pair: their map on the support set, with their GAN regulariser where a side is the
    DCGAN (its side its recoder's codes); their StyleGAN recipe beside on generated pairs,
    no L2, scored on as many generated images, its verdict withheld as not theirs here."""
    runs = [(r.info.run_name, r.data) for r in kids
            if r.data.tags["latentatlas.kind"] == "relocate"]
    for step, name, fit in (
            ("relocate-dense-s0-dense-s1", "relocate dense-s0->dense-s1", "support"),
            ("relocate-dense-s0-conv-s0", "relocate dense-s0->conv-s0", "support"),
            ("relocate-dense-s0-dcgan", "relocate dense-s0->dcgan", "support"),
            ("relocate-dcgan-dense-s0", "relocate dcgan->dense-s0", "support"),
            ("relocate-dcgan-dense-s0-pairs", "relocate dcgan->dense-s0", "generated")):
        m, params = next((r.metrics, r.params) for n, r in runs
                         if n == name and r.params["headline_fit"] == fit)
        assert params["headline_estimator"] == "ridge_authors"
        assert float(params["ridge_authors_l2"]) == (
            0.0 if fit == "generated" else 0.0015 if "dcgan" in name else 1e-4)
        assert params["scored_on"] == ("generated" if fit == "generated" else "held_out")
        lo, hi = m["relocation/M_over_own_ci_lo"], m["relocation/M_over_own_ci_hi"]
        assert lo <= m["relocation/M"] / m["relocation/M_target_own"] <= hi
        c = next(c for c in claims[step] if c["key"] == "relocation")
        assert c["rule_outcome"] == by_interval(lo, hi, 2.0)
        assert f"M {m['relocation/M']:.4f} vs own {m['relocation/M_target_own']:.4f}" in \
            c["summary"] and f"M {m['relocation/M_ols_full']:.4f}" in c["summary"]
        if fit == "generated":
            assert m["relocation/eval_rows"] == 2000 and c["verdict"] == "not judged"
            assert any("the authors' fit here (transform_with_support): support" in w
                       for w in c["withheld"])
    # support_suffices on the same items' replicates: M_support at most 1.5 M_all in at least
    # 97.5% of them holds, in at most 2.5% does not hold, else inconclusive
    c = next(c for c in claims["relocate-dense-s0-dense-s1"] if c["key"] == "support_suffices")
    r = {k: np.asarray(v) for k, v in c["resampled"].items()}
    share = np.mean(r["M_support"] <= 1.5 * r["M_all"])
    assert c["rule_outcome"] == ("holds" if share >= 0.975 else "does not hold"
                                 if share <= 0.025 else "inconclusive")
    m = next(r.metrics for n, r in runs if n == "relocate dense-s0->dense-s1")
    assert np.percentile(r["M_support"], 2.5) <= m["relocation/M"] <= \
        np.percentile(r["M_support"], 97.5)


def on_items(p_ok: bool, claim: dict, support: np.ndarray, own: np.ndarray) -> str:
    """The range rule judged on the bootstrap over the images: the claim's resamples are
    those of the logged per-image errors (support set and own samples apart), and (b) is
    decided where at least 97.5% of them agree, else inconclusive."""
    from analysis.bootstrap import resampled_mean

    items = {k: np.asarray(v) for k, v in claim["resampled"].items()}
    np.testing.assert_allclose(items["support"], resampled_mean(support, 1), rtol=1e-9)
    np.testing.assert_allclose(items["own"], resampled_mean(own, 0), rtol=1e-9)
    share = np.mean(items["support"] >= 2 * items["own"])
    return (both(p_ok, True) if share >= 0.975 else both(p_ok, False) if share <= 0.025
            else "inconclusive")


def check_range_verdict(claims, kids):
    """The GAN's recoder-only support-set error against random real sets of its size and
    against its own samples, from the range run's per-image errors."""
    from analysis.generative_range import subset_test

    runs = {r.info.run_name: r for r in kids if r.data.tags["latentatlas.kind"] == "range"}
    gan = runs["range dcgan"].data.metrics
    assert runs["range dcgan"].data.params["reference"].endswith("dense-s1")  # a third space
    errors = np.load(mlflow.artifacts.download_artifacts(
        run_id=runs["range dcgan"].info.run_id, artifact_path="range_errors.npz"))
    test = subset_test(errors["support_guess"], errors["real_guess"],
                       draws=int(gan["range/random_draws"]))
    assert test["p"] == pytest.approx(gan["range/guess_random_p"])
    support = errors["support_guess"].mean()
    assert gan["range/guess_mse_support"] == pytest.approx(support, rel=1e-6)
    (c,) = claims["range"]
    assert c["rule_outcome"] == on_items(test["p"] < 0.025, c, errors["support_guess"],
                                         errors["generated_guess"])
    # gradient ascent alone (no recoder) on the same support set, judged by the same rule
    # on its own per-image errors, with the recoder's numbers beside
    ascent_run = runs["range-ascent"]
    ascent = ascent_run.data.metrics
    assert ascent_run.data.params["headline"].startswith("gradient ascent, ")
    assert not [k for k in ascent if k.startswith("range/guess_")]
    errors = np.load(mlflow.artifacts.download_artifacts(
        run_id=ascent_run.info.run_id, artifact_path="range_errors.npz"))
    assert len(errors["real_mse"]) == ascent["range/real_images"]
    test = subset_test(errors["support_mse"], errors["real_mse"],
                       draws=int(ascent["range/random_draws"]))
    assert test["p"] == pytest.approx(ascent["range/random_p"])
    (c,) = claims["range-ascent"]
    assert c["key"] == "range_ascent" and c["rule_outcome"] == on_items(
        test["p"] < 0.025, c, errors["support_mse"], errors["generated_mse"])
    assert c["measured"]["recoder_support"] == pytest.approx(gan["range/guess_mse_support"])


def check_fid_verdicts(claims, m, key):
    kid = key.replace("fid/", "kid/")
    assert outcome(claims, "second_stage") == holds(m[f"{key}/two_stage"] < m[key])
    assert outcome(claims, "renormalisation") == both(
        m[f"{key}/two_stage_renorm_authors"] < m[f"{key}/two_stage"],
        m[f"{kid}/two_stage_renorm_authors"] < m[f"{kid}/two_stage"])


def check_second_stage(stage2, first, fid_metrics, test_encoding, claims):
    """The second stage learned dense-s0's training codes; its spec carries their moments
    (what renormalisation scales to) and names its first stage. Its learning test is its
    val/mse (on held-out posterior means) against the means' variance. Its variance loss on
    the test codes, recomputed from the logged model and encoding, is what the job logged,
    and the authors renormalise when it exceeds a quarter of the latent MSE."""
    import torch

    from latentatlas.encode import open_encoding
    from latentatlas.model_store import load_model

    uri = f"runs:/{stage2.info.run_id}/model"
    spec = mlflow.artifacts.load_dict(f"{uri}/extra_files/model_spec.json")
    assert spec["first_stage"] == f"runs:/{first.info.run_id}/model"
    rows = open_encoding(spec["encoding"]).arrays(["mu", "logvar"])
    assert spec["model"]["latent_dim"] == rows["mu"].shape[1] == 4
    np.testing.assert_allclose(spec["var_mu"], rows["mu"].astype(np.float64).var(0), rtol=1e-5)
    np.testing.assert_allclose(spec["mean_sigma2"], np.exp(rows["logvar"]).mean(0), rtol=1e-4)
    test = next(s["learning"] for s in claims[0]["setting"]["measured"]
                if s["model"].startswith("second_stage"))
    assert test["value"] == pytest.approx(stage2.data.metrics["val/mse"])
    assert test["scale"] == pytest.approx(np.mean(spec["var_mu"]), rel=1e-6)

    model, _ = load_model(uri)
    mu = open_encoding(test_encoding).arrays(["mu"])["mu"]
    with torch.no_grad():
        z_hat = model.decode(model.encode(torch.as_tensor(mu))[0]).double().numpy()
    mse = float(np.mean((mu - z_hat) ** 2))
    delta = float(np.mean(mu.astype(np.float64).var(0)) - np.mean(z_hat.var(0)))
    assert fid_metrics["second_stage/mse"] == pytest.approx(mse, rel=1e-3)
    assert fid_metrics["second_stage/delta_var"] == pytest.approx(delta, rel=1e-3, abs=1e-6)
    assert bool(fid_metrics["second_stage/authors_renormalise"]) == (delta > 0.25 * mse)


def check_translators(run, claims):
    """Twelve ordered pairs of the job's four encodings, the GAN's pairs with the authors'
    GAN regulariser; support-set anchors from every space with active variables."""
    pairs = main_job_table(run.info.run_id, "pairs.json")
    assert len(pairs["source"]) == 12 and set(pairs["source"]) == {
        "dense-s0", "dense-s1", "conv-s0", "dcgan"}
    for src, tgt, l2 in zip(pairs["source"], pairs["target"], pairs["l2"], strict=True):
        assert l2 == (0.0015 if "dcgan" in (src, tgt) else 1e-4)
    rows = main_job_table(run.info.run_id, "translations.json")
    sources = {s for s, a in zip(rows["source"], rows["anchor"], strict=True) if a == "support"}
    assert {"dcgan", "dense-s0"} <= sources
    assert set(rows["budget"]) == {"0.25d", "1d", "4d", "all"}
    m = run.data.metrics
    assert outcome(claims, "support_beats_random") == holds(
        m["translate/support_beats_random"] > 0.5)


def main_job_table(run_id: str, name: str = "summary.json") -> dict:
    from latentatlas.tracking import Recorder

    return Recorder(mlflow.get_tracking_uri(), "main").table(run_id, name)


def check_regularisation_pictures(parent, trained, workdir, claims, extractor):
    """3-D VAEs (BCE + KL) with and without sampling (scatter, prior slices, the prior draws'
    latent coverage of their test codes, FID in the job's classifier features, aggregate KL
    of their test encodings), and a 2-D VAE traced through its first epoch, as children of
    the regularisation run; the sampling verdict from the recomputed coverage and the
    logged FIDs."""
    from analysis.coverage import prdc
    from analysis.regularity import aggregate_gaussian_kl
    from latentatlas.encode import open_encoding
    from latentatlas.model_store import load_vae
    from latentatlas.samplers import prior_codes

    client = mlflow.MlflowClient()
    assert parent.info.status == "FINISHED"
    assert parent.data.params["fid/extractors"] == extractor  # the job's pinned classifier
    by_latent = sorted((r.data.params["model.latent_dim"], r.data.params.get(
        "model.sample_posterior"), r) for r in trained)
    assert [(d, s) for d, s, _ in by_latent] == [("2", "True"), ("3", "False"), ("3", "True")]
    assert {r.data.params["kl.policy"] for r in trained} == {"elbo"}
    coverage, fid = {}, {}
    for latent_dim, sampling, run in by_latent:
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        if latent_dim == "3":
            assert {"codes_3d.png", "prior_slices.png"} <= files
            label = "sampling" if sampling == "True" else "no_sampling"
            for measure in ("aggregate_kl", "prior_coverage", "prior_fid"):
                assert run.data.metrics[f"regularity/{measure}"] == pytest.approx(
                    parent.data.metrics[f"regularity/{measure}_{label}"])
            enc = open_encoding(workdir / "encodings" / f"regularisation-{parent.info.run_id[:8]}"
                                / f"3d-{label.replace('_', '-')}")
            assert enc.meta.rows == N_TEST and enc.meta.model_uri.endswith(
                f"{run.info.run_id}/model")  # the whole test split
            codes = enc.arrays(["mu"])["mu"]
            assert run.data.metrics["regularity/aggregate_kl"] == pytest.approx(
                aggregate_gaussian_kl(codes), rel=1e-6)
            draws = prior_codes(load_vae(enc.meta.model_uri)[0], len(codes), 0)
            coverage[label] = prdc(codes, draws)["coverage"]
            assert run.data.metrics["regularity/prior_coverage"] == pytest.approx(
                coverage[label])
            fid[label] = run.data.metrics["regularity/prior_fid"]
            assert fid[label] > 0
        else:
            assert {"trajectories.png", "first_epoch_trace.npz"} <= files
            trace = np.load(mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="first_epoch_trace.npz"))
            # 512 images in full batches of 128: 4 steps, each traced before it, then once
            # after the last
            assert trace["codes"].shape == (5, 10, 2)
            assert sorted(trace["labels"].tolist()) == list(range(10))
    assert outcome(claims, "sampling_regular") == both(
        fid["sampling"] < fid["no_sampling"], coverage["sampling"] > coverage["no_sampling"])


def check_sparsity(run, claims):
    """The collapse claim follows the events in the run's own per-epoch table."""
    m = run.data.metrics
    assert run.data.params["epochs"] == "50" and run.data.params["limit"] == "20000"  # its own
    table = json.loads(open(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="sparsity_epochs.json")).read())
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    noisy = [r for r in rows if r["phase"] in ("increase", "hold")]
    crossed = any(r["gain_nats"] < r["kl"] for r in noisy if r["phase"] == "increase")
    collapsed = crossed and noisy[-1]["inactive"]
    revived = any(not r["inactive"] for r in rows if r["phase"] == "revive")
    (claim,) = claims
    assert claim["key"] == "collapse_reversible"
    assert m["sparsity/crossed"] == crossed and m["sparsity/collapsed"] == collapsed
    if not crossed and not noisy[-1]["inactive"]:
        assert claim["verdict"] == "not measured"
        return
    assert claim["rule_outcome"] == ("holds" if collapsed and revived else
                                     "mixed" if collapsed else "does not hold")
    assert claim["sources"]["collapsed"] == [run.info.run_id, "sparsity/collapsed"]


def test_a_range_step_names_what_its_claim_reads_beside_it(tmp_path):
    """With a recoder the range claim reads the VAE beside it; without, the gradient-ascent
    claim reads the recoder's range step it is compared with: each refused at the start."""
    import yaml

    from latentatlas.errors import UserError

    main = yaml.safe_load(study.MAIN.read_text())

    def resolved(**range_step):
        spec = tmp_path / "main.yaml"
        spec.write_text(yaml.safe_dump({"steps": {**main["steps"], "r": range_step}},
                                    sort_keys=False))
        return study.resolve(study.load_job(spec))

    common = {"generator": "dcgan", "reference": "encode-dense-s1", "stats": "stats-dense-s1"}
    with pytest.raises(UserError, match=r"steps.r.inputs: a range step with a recoder needs "
                                        "vae"):
        resolved(kind="range", inputs={**common, "recoder": "recoder"})
    with pytest.raises(UserError, match=r"steps.r.inputs: a range step without a recoder "
                                        "needs compare"):
        resolved(kind="range", inputs=common)
    resolved(kind="range", inputs={**common, "compare": "range"}, set={"refine_steps": 10})
    with pytest.raises(UserError, match=r"steps.r.inputs.vae: a range step without a recoder"):
        resolved(kind="range", inputs={**common, "compare": "range", "vae": "dense-s0"})
    with pytest.raises(UserError, match=r"steps.r.set.refine_steps: .* needs refine_steps > 0"):
        resolved(kind="range", inputs={**common, "compare": "range"})  # 0 by default
    # what it is compared with must be a range step (its output type), and the recoder's
    with pytest.raises(UserError, match=r"steps.r.inputs.compare: dcgan is a train step; a "
                                        "compare input is Range"):
        resolved(kind="range", inputs={**common, "compare": "dcgan"})
    with pytest.raises(UserError, match=r"steps.r.inputs.compare: range-ascent is not a range "
                                        "step with a recoder"):
        resolved(kind="range", inputs={**common, "compare": "range-ascent"},
                 set={"refine_steps": 10})
    # each role's type: a stats role fed an encoding, an unknown role, a missing one
    with pytest.raises(UserError, match=r"steps.r.inputs.stats: encode-dense-s1 is a encode "
                                        "step; a stats input is Stats"):
        resolved(kind="range", inputs={**common, "stats": "encode-dense-s1",
                                       "compare": "range"})
    with pytest.raises(UserError, match=r"steps.r.inputs.colour: a range step reads generator"):
        resolved(kind="range", inputs={**common, "compare": "range", "colour": "dcgan"})
    with pytest.raises(UserError, match=r"steps.r.kind: unknown kind 'ranges' \(known: .*imports"):
        resolved(kind="ranges", inputs=common)


def test_the_support150_job_is_declared_and_every_step_validates(capsys):
    """`latentatlas run --config support150.yaml`: the job file loads as a graph, every
    step's config and options validate (as `run` checks them before starting), the seed's
    k = 7 and 150 rows are what it asks, and an unknown job file is one line."""
    from latentatlas.errors import UserError

    path = study.job_file("support150.yaml")
    assert path == study.job_file(str(study.CONFIGS / "support150.yaml"))
    assert study.job_file(None) == study.MAIN
    job = study.load_job(path)
    steps = study.resolve(job)
    assert set(steps) == set(job.steps)
    trained = [s.options.config for s in steps.values() if s.spec.kind == "train"]
    assert [c.seed for c in trained] == [0, 1]
    assert {c.model.latent_dim for c in trained} == {150}
    opts = {n: s.options for n, s in steps.items() if s.spec.kind != "train"}
    assert opts["sectors-s0"].k == opts["support-set-s0"].k == 7
    assert opts["support-set-s0"].size == 150
    assert (opts["relocate-support"].fit, opts["relocate-random"].fit) == ("support", "random")
    assert opts["relocate-random"].rows == 150
    assert job.steps["sectors-s0"].where("sectors-s0") == "support150.yaml: steps.sectors-s0"
    with pytest.raises(UserError, match=r"--config nojob.yaml: no such job file \(the "
                                        r"declared jobs: main.yaml, seed_celeba.yaml, "
                                        r"support150.yaml\)"):
        study.job_file("nojob.yaml")
    from jobs.kinds.relocate import RelocateOptions
    from latentatlas.config import validate

    with pytest.raises(UserError, match=r"rows \(the number of random rows\) needs fit: "
                                        r"random"):
        validate({"fit": "support", "rows": 150}, "x", RelocateOptions)
    assert run_job(["--config", "support150.yaml", "--steps"]) == 0
    assert "relocate-random" in capsys.readouterr().out
