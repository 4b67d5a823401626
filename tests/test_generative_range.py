"""The generative range: the pure pieces against hand-made cases (the support set against
random real sets: invariants of the subset means, planted support sets either side), then
`range` end to end (real Ray, real MLflow) with a generator written by the test that by
construction cannot draw the lower half of the image, so the sectors of those images must
come out missed; gradient ascent alone (no recoder, no encoder) on a generator whose range
by construction holds only the upper half; and a VAE as generator, whose real-image error is
its own reconstruction error."""

import json
import sys
import textwrap

import mlflow
import numpy as np
import pytest
import torch
from conftest import make_idx_dataset, mlflow_server, run_cli_module

from analysis.claims import counts
from analysis.generative_range import (
    MEAN_CODE,
    inversions,
    missed_sectors,
    random_subset_means,
    reach_threshold,
    sector_shares,
    subset_test,
)
from analysis.pairs import split_mask
from analysis.sectors import sector_ids
from jobs import encode as encode_verb
from jobs import range as range_verb
from latentatlas import environment, model_store, tracking
from latentatlas.config import validate
from latentatlas.data import load_split
from latentatlas.encode import open_encoding
from latentatlas.errors import UserError
from latentatlas.train.runner import train


def test_sector_shares_and_missed_sectors_by_hand():
    real = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, -1])
    errors = np.array([0.1, 0.1, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    generated = np.array([0, 0, 0, 0, 2, 2, -1, 0])
    shares = sector_shares(real, errors, generated, 4, threshold=0.2)
    assert shares["real"].tolist() == [6, 5, 1, 0]
    np.testing.assert_allclose(shares["data_share"], [6 / 13, 5 / 13, 1 / 13, 0])
    np.testing.assert_allclose(shares["reached_share"], [2 / 6, 1, 1, 0])
    np.testing.assert_allclose(shares["generator_share"], [5 / 8, 0, 2 / 8, 0])
    # sector 1 has 5 real images and no sample; sector 2 too few images to judge
    assert missed_sectors(shares).tolist() == [1]
    assert reach_threshold(np.arange(101.0), 0.95) == pytest.approx(95.0)


def test_random_subset_means_invariants():
    errors = np.random.default_rng(1).exponential(size=10_000)
    means = random_subset_means(errors, 16, 2000, seed=3)
    assert means.shape == (2000,)
    assert errors.min() <= means.min() and means.max() <= errors.max()
    # unbiased: the mean of 2000 means of 16 rows within 5 of its standard errors (at most
    # std / sqrt(16 * 2000): drawing without replacement only narrows it)
    assert abs(means.mean() - errors.mean()) < 5 * errors.std() / np.sqrt(16 * 2000)
    np.testing.assert_array_equal(means, random_subset_means(errors, 16, 2000, seed=3))
    assert not np.array_equal(means, random_subset_means(errors, 16, 2000, seed=4))
    np.testing.assert_allclose(random_subset_means(np.full(50, 0.3), 7, 100), 0.3, rtol=1e-12)
    # all rows: the population mean exactly (up to summation order) only if none repeats
    rows = np.arange(40.0)
    np.testing.assert_allclose(random_subset_means(rows, 40, 200), rows.mean(), rtol=1e-12)
    with pytest.raises(ValueError, match="outside 1..40"):
        random_subset_means(rows, 41, 1)


def test_random_subsets_are_distinct_rows_each_equally_likely():
    # powers of two: a subset's sum names its rows, and 3 distinct rows set exactly 3 bits
    n, size, draws = 10, 3, 4000
    sums = np.rint(random_subset_means(2.0 ** np.arange(n), size, draws, seed=5) * size)
    bits = (sums.astype(np.int64)[:, None] >> np.arange(n)) & 1
    assert (bits.sum(axis=1) == size).all()
    share = size / n  # each row's chance to be in a subset
    np.testing.assert_array_less(np.abs(bits.mean(axis=0) - share),
                                 5 * np.sqrt(share * (1 - share) / draws))


def test_subset_test_planted_support_sets_either_side():
    population = np.random.default_rng(0).normal(size=10_000)
    ordered = np.sort(population)
    top = ordered[-16:]  # the 16 hardest rows: far outside what random sets of 16 reach
    high = subset_test(top, population)
    assert high["p"] < 0.025 and top.mean() > high["hi"]
    # the 16 rows around the median: their mean ~ the population's, a typical set's
    middle = ordered[len(ordered) // 2 - 8:len(ordered) // 2 + 8]
    typical = subset_test(middle, population)
    assert 0.2 < typical["p"] < 0.8
    assert typical["lo"] < middle.mean() < typical["hi"]
    assert typical["lo"] < typical["mean"] < typical["hi"]
    # the interval is that of means of 16 unit-variance rows: +-1.96 / 4 around 0
    assert typical["hi"] - typical["lo"] == pytest.approx(2 * 1.96 / 4, rel=0.1)
    # a tie counts as >=: constant errors are never "outside"
    assert subset_test(np.full(4, 0.5), np.full(100, 0.5), draws=50) == {
        "lo": 0.5, "hi": 0.5, "p": 1.0, "mean": 0.5}


def test_regeneration_lines_headline_the_first_guess():
    m = {"range/support_size": 16, "range/random_draws": 2000}
    for kind, (own, real, support, p) in {"guess_": (0.026, 0.1, 0.251, 0.0),
                                          "": (0.01, 0.02, 0.0406, 0.31)}.items():
        m.update({f"range/{kind}mse_generated": own, f"range/{kind}mse_real": real,
                  f"range/{kind}mse_support": support, f"range/{kind}ratio_real": real / own,
                  f"range/{kind}ratio_support": support / own, f"range/{kind}random_lo": 0.035,
                  f"range/{kind}random_hi": 0.045, f"range/{kind}random_p": p})
    first, first_test, refined, refined_test = range_verb.regeneration_lines(m, "recoder", 20)
    assert first.startswith("recoder only: ") and "support set 0.2510 (x9.65)" in first
    assert first_test.endswith("p<0.0005")
    assert refined.startswith("recoder + 20 gradient steps: ")
    assert refined_test.strip() == ("support set 0.0406 vs random real sets of 16: 95% of "
                                    "their means in [0.0350, 0.0450], p=0.310")
    # without refinement the errors are the first guess's: one block
    assert len(range_verb.regeneration_lines(m, "its own encoder", 0)) == 2
    # no first guess that inverts: gradient ascent is the headline, the only block, and it
    # reads range/* (the mean code's own numbers are not even looked up)
    del m["range/guess_mse_support"]
    ascent, ascent_test = range_verb.regeneration_lines(m, MEAN_CODE, 20)
    assert ascent == ("gradient ascent, 20 steps from the mean code: regeneration MSE own "
                      "samples 0.0100, real 0.0200 (x2.00), support set 0.0406 (x4.06)")


def test_what_inverted_makes_the_headline_and_the_mean_code_alone_is_refused():
    assert inversions("recoder", 0) == [("recoder only", "guess_")]
    assert inversions("recoder", 10) == [("recoder only", "guess_"),
                                         ("recoder + 10 gradient steps", "")]
    assert inversions("its own encoder", 5)[0] == ("its own encoder only", "guess_")
    assert inversions(MEAN_CODE, 30) == [("gradient ascent, 30 steps from the mean code", "")]
    with pytest.raises(UserError, match="the mean code alone is not an inversion; give "
                                        "--recoder and/or --refine STEPS"):
        inversions(MEAN_CODE, 0)


HALF_BLOBS = '''
    """A generator of the test's blobs (class c: a blob at row 2c + 6) that by construction
    never draws classes 5-9, the lower half of the image."""
    import torch


    class HalfBlobs(torch.nn.Module):
        latent_dim = 1

        def sample_w(self, n, generator):  # blob rows 5 to 15: the upper half only
            return torch.rand(n, 1, generator=generator) * 5 - 0.5

        def generate(self, w):
            rows = torch.arange(28.0)
            centre = 2 * w[:, :1, None] + 6
            image = torch.exp(-((rows[None, :, None] - centre) ** 2
                                + (rows[None, None, :] - 14) ** 2) / 20)
            return image[:, None]

        def encode(self, x):
            return ((x[:, 0].mean(dim=2).argmax(dim=1).float() - 6) / 2)[:, None]


    def make():
        return HalfBlobs()


    class RowFinder(torch.nn.Module):
        """The same inverter as a separate recoder module."""

        def forward(self, x):
            return HalfBlobs().encode(x)


    def make_recoder():
        return RowFinder()


    class UpperBlobs(torch.nn.Module):
        """No encoder, and blobs at rows 5.5-15.5 whatever the code: the lower half
        (classes 5-9, rows 16-24) lies outside its range; its codes N(0, 1)."""

        latent_dim = 1

        def generate(self, w):
            rows = torch.arange(28.0)
            centre = 5.5 + 10 * torch.sigmoid(w[:, :1, None])
            image = torch.exp(-((rows[None, :, None] - centre) ** 2
                                + (rows[None, None, :] - 14) ** 2) / 20)
            return image[:, None]


    def make_upper():
        return UpperBlobs()
'''


@pytest.mark.slow
def test_range_finds_the_sectors_a_generator_cannot_draw(ray_session, mlflow_store, tmp_path,
                                                         monkeypatch, capsys, request):
    data = make_idx_dataset(tmp_path / "idx", n_train=2048, n_test=400)
    (tmp_path / "half_blobs.py").write_text(textwrap.dedent(HALF_BLOBS))
    monkeypatch.syspath_prepend(str(tmp_path))
    # encode imports the user's module here: not left in sys.modules for later tests
    request.addfinalizer(lambda: sys.modules.pop("half_blobs", None))
    vae = train(validate({"name": "reference", "seed": 0,
                          "data": {"name": "mnist", "path": str(data)},
                          "model": {"name": "dense_vae", "hidden": [64], "latent_dim": 2},
                          "kl": {"policy": "balanced"},
                          "train": {"epochs": 6, "batch_size": 64, "lr": 0.003}}, "test"))
    uri = environment.resolve_tracking_uri()
    enc = tmp_path / "ref.enc"
    assert encode_verb.main(["--model", vae.model_uri, "--data", "mnist:test",
                             "--data-path", str(data), "--out", str(enc),
                             "--tracking-uri", uri]) == 0
    common = ["--data", "mnist:test", "--data-path", str(data), "--support-from", str(enc),
              "--k", "2", "--threshold", "0.3", "--samples", "500", "--tracking-uri", uri,
              "--experiment", "test"]
    done = run_cli_module(["jobs.range", "--generator", "half_blobs:make", "--recoder",
                           "half_blobs:make_recoder", "--refine", "20", *common], tmp_path,
                          extra_path=str(tmp_path))
    assert done.returncode == 0, done.stderr
    run = mlflow.get_run(done.stdout.split("MLflow run id: ")[1].split()[0])
    m = run.data.metrics
    # the headline is the recoder alone, printed first; refined beside; each with the
    # support set against random real sets of its size
    assert run.data.params["headline"] == "recoder only (first guess)"
    assert run.data.params["headline_metrics"] == "range/guess_*"
    assert 0 <= done.stdout.index("recoder only: ") < done.stdout.index(
        "recoder + 20 gradient steps: ")
    assert done.stdout.count(" vs random real sets of ") == 2
    assert m["range/random_draws"] == 2000
    for kind in ("guess_", ""):
        for name in ("real", "support"):
            assert m[f"range/{kind}ratio_{name}"] == (m[f"range/{kind}mse_{name}"]
                                                     / m[f"range/{kind}mse_generated"])
        assert m[f"range/{kind}random_lo"] <= m[f"range/{kind}random_hi"]
        assert 0 <= m[f"range/{kind}random_p"] <= 1
    table = tracking.Recorder(uri, "test").table(run.info.run_id, "range_sectors.json")
    labels = load_split("mnist", "test", str(data)).labels
    rows = open_encoding(enc).arrays(["index", "mu"])
    variables = [int(v) for v in run.data.params["variables"].split(",")]
    ids = sector_ids(rows["mu"], variables, 0.3)
    lower = {s for s in set(ids.tolist()) - {-1}
             if (ids == s).sum() >= 5 and (labels[ids == s] >= 5).mean() >= 0.8}
    upper = {s for s in set(ids.tolist()) - {-1}
             if (ids == s).sum() >= 5 and (labels[ids == s] < 5).mean() >= 0.8}
    missed = {s for s, flag in zip(table["sector"], table["missed"], strict=True) if flag}
    assert lower and upper, (lower, upper)  # the reference space separates the halves
    assert lower <= missed and not (upper & missed)
    assert m["range/missed_sectors"] == len(missed)
    # half the real images lie where no sample comes near them
    assert m["range/latent_recall"] < 0.6 and m["range/latent_coverage"] < 0.6
    # its own samples invert almost exactly (uint8 rounding); real ones keep their noise
    assert m["range/mse_generated"] < 0.1 * m["range/mse_real"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"range_errors_ecdf.png", "range_sector_shares.png", "range_missed_sectors.png",
            "range_errors.npz", "range_sectors.json"} <= artifacts

    # The user's generator joins encode (its own encode(x) inverts) and relocate.
    from jobs import steps
    from latentatlas.encode.pipeline import encode

    byo = encode("half_blobs:make", "mnist", "test", tmp_path / "byo.enc",
                 data_path=str(data))
    assert byo.meta.family == "gan" and byo.latent_dim == 1
    # ... and a user's recoder module given as --recoder inverts the same way
    recoded = encode("half_blobs:make", "mnist", "test", tmp_path / "byo-rec.enc",
                     data_path=str(data), recoder_uri="half_blobs:make_recoder")
    np.testing.assert_array_equal(recoded.arrays(["mu"])["mu"], byo.arrays(["mu"])["mu"])
    assert recoded.meta.encoder_uri == "half_blobs:make_recoder"
    _, moved = steps.relocate(tracking.Recorder(uri, "test"), str(enc), str(byo.path),
                              estimators=["ols"])
    # the target's own error is the user's generator regenerating the held-out rows
    byo_rows = byo.arrays(["index", "inversion_mse"])
    held = split_mask(byo_rows["index"], "eval")
    assert moved.metrics["relocation/M_target_own"] == pytest.approx(
        byo_rows["inversion_mse"][held].mean(), rel=1e-4)

    # Gradient ascent alone: a generator with no encoder inverts from the mean code by
    # gradient steps only, and that is the headline; the mean code alone is refused.
    capsys.readouterr()
    assert range_verb.main(["--generator", "half_blobs:make_upper", *common]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert ("--generator half_blobs:make_upper: no recoder, no encoder of its own and no "
            "--refine: the mean code alone is not an inversion") in err[0], err
    # where a Ray of this process has written its own messages, the one line points there
    assert all(line.startswith("Ray's own messages: ") for line in err[1:]), err
    # the support set is tested against random real sets of its size among the real images
    assert range_verb.main(["--generator", "half_blobs:make_upper", "--refine", "5",
                            "--real-images", "1", *common]) != 0
    assert "--real-images 1: at least the support set's" in capsys.readouterr().err
    assert range_verb.main(["--generator", "half_blobs:make_upper", "--refine", "100",
                            "--real-images", "200", *common]) == 0
    out = capsys.readouterr().out
    ascent_run = mlflow.get_run(out.split("MLflow run id: ")[1].split()[0])
    m = ascent_run.data.metrics
    assert ascent_run.data.params["headline"] == ("gradient ascent, 100 steps from the mean "
                                                  "code")
    assert ascent_run.data.params["headline_metrics"] == "range/*"
    assert "gradient ascent, 100 steps from the mean code: regeneration MSE" in out
    assert " only: " not in out and not [k for k in m if k.startswith("range/guess_")]
    assert m["range/real_images"] == 200
    errors = np.load(mlflow.artifacts.download_artifacts(
        run_id=ascent_run.info.run_id, artifact_path="range_errors.npz"))
    assert len(errors["real_mse"]) == 200 and "real_guess" not in errors.files
    assert m["range/mse_real"] == pytest.approx(errors["real_mse"].mean(), rel=1e-6)
    upper = errors["real_mse"][labels[:200] < 5].mean()
    lower = errors["real_mse"][labels[:200] >= 5].mean()
    # from one start, gradient ascent reaches its own samples (uint8 rounding and Adam's
    # last steps) and the real images in its range (their noise), not those outside it
    assert m["range/mse_generated"] < 0.2 * upper and lower > 5 * upper, (m, upper, lower)
    # the support set (chosen among all 400 rows) is inverted too, at its rows' errors
    assert m["range/mse_support"] == pytest.approx(errors["support_mse"].mean(), rel=1e-6)
    assert m["range/ratio_support"] == m["range/mse_support"] / m["range/mse_generated"]

    # A VAE as generator, inverted by its own encoder: its real-image error is its
    # reconstruction error of the posterior means, computed here by hand.
    capsys.readouterr()
    assert range_verb.main(["--generator", vae.model_uri, *common]) == 0
    out = capsys.readouterr().out
    vae_run = mlflow.get_run(out.split("MLflow run id: ")[1].split()[0])
    m = vae_run.data.metrics
    model, _ = model_store.load_vae(vae.model_uri)
    x = torch.from_numpy(load_split("mnist", "test", str(data)).images / 255.0).float()
    with torch.no_grad():
        by_hand = (model.decode(model.encode(x)[0]) - x).pow(2).mean().item()
    assert m["range/mse_real"] == pytest.approx(by_hand, rel=1e-4)
    # no recoder, no refinement: the first guess is the encoder's, and is all there is
    assert vae_run.data.params["headline"] == "its own encoder only (first guess)"
    assert "its own encoder only: " in out and "gradient steps" not in out
    assert m["range/guess_ratio_support"] == m["range/ratio_support"]
    assert (m["range/guess_random_lo"], m["range/guess_random_hi"], m["range/guess_random_p"]) \
        == (m["range/random_lo"], m["range/random_hi"], m["range/random_p"])

    # The same models in a study file of the researcher's: their VAE from an earlier
    # experiment (runs:/), their generator and its recoder (module:function) as inputs. It
    # gives verdicts, stored with the run and judged again by `latentatlas claims`.
    from jobs import claims as claims_verb
    from jobs.run import main as run_job

    study = tmp_path / "mine.yaml"
    study.write_text(textwrap.dedent(f"""\
        steps:
          encode-vae: {{kind: encode, inputs: {{model: "{vae.model_uri}"}}}}
          stats-vae: {{kind: stats, inputs: {{encoding: encode-vae}}}}
          range:
            kind: range
            inputs: {{generator: "half_blobs:make", recoder: "half_blobs:make_recoder",
                     vae: "{vae.model_uri}", reference: encode-vae, stats: stats-vae}}
            set: {{samples: 500, refine_steps: 0, k: 2, threshold: 0.3}}
          encode-byo: {{kind: encode, inputs: {{model: "half_blobs:make"}}}}
          sectors-vae:
            kind: sectors
            inputs: {{encoding: encode-vae, stats: stats-vae}}
            set: {{k: 2, threshold: 0.3}}
          support-vae: {{kind: support-set, inputs: {{encoding: encode-vae, sectors: sectors-vae}},
                        set: {{size: 8}}}}
          relocate:
            kind: relocate
            inputs: {{source: encode-vae, target: encode-byo, support: support-vae}}
            set: {{relocation: type 3, estimators: [ols]}}
        """))
    capsys.readouterr()
    mine = ["--tracking-uri", uri, "--experiment", "test", "--dataset", "mnist",
            "--data-path", str(data)]
    assert run_job(["--config", str(study), *mine]) == 0
    out = capsys.readouterr().out
    parent_id = out.split("MLflow run id: ")[1].split()[0]
    stored = json.loads(open(mlflow.artifacts.download_artifacts(
        run_id=parent_id, artifact_path="claims.json")).read())
    by_key = {c["key"]: c for c in stored}
    assert {"variance_loss", "generative_range", "relocation"} <= set(by_key)
    # measured everywhere but the zero-out (this 2-d VAE has no inactive variable to zero)
    assert {c["key"] for c in stored if c["verdict"] == "not measured"} <= {"zero_out"}
    # the VAE's setting is read back from its training run; the user's generator has none
    (reference_setting,) = by_key["variance_loss"]["setting"]["measured"]
    assert reference_setting["run_id"] == vae.run_id and reference_setting["epochs"] == 6
    assert reference_setting["dataset"] == "mnist" and reference_setting["loss"] == \
        "KL balancing"
    generator_setting = by_key["generative_range"]["setting"]["measured"][0]
    assert generator_setting["model"] == "external half_blobs:make"
    # nothing of it compares with the seed's: never a replication (the reference VAE's
    # settledness decides between a generalisation and no verdict)
    ranged = by_key["generative_range"]
    assert "unknown (unknown), the seed's CelebA" in ranged["differences"]
    assert ranged["verdict"] == ("not judged" if ranged["withheld"] else "generalisation")
    # the range claim reads the runs the study made of the inputs it was given
    gen = mlflow.get_run(by_key["generative_range"]["runs"][0])
    assert gen.data.tags["mlflow.parentRunId"] == parent_id
    # the parent run tells the study's story: its claims as its description (with links to
    # the runs holding their numbers), the counts as metrics, a table the UI sorts
    parent = mlflow.get_run(parent_id)
    note = parent.data.tags["mlflow.note.content"]
    assert f"Verdicts: {counts(stored)}." in note
    assert note.count("\n| ") == len(stored) + 2  # header, separator, a row per claim
    assert f"runs/{gen.info.run_id}?workflowType=machine_learning" in note
    verdicts = {k: v for k, v in parent.data.metrics.items() if k.startswith("verdicts/")}
    assert sum(verdicts[f"verdicts/{kind}"] for kind in ("replication", "generalisation",
                                                         "not_judged", "not_measured")) \
        == len(stored)
    table = tracking.Recorder(uri, "test").table(parent_id, "claims_table.json")
    assert table["key"] == [c["key"] for c in stored]
    # ... as MLflow's UI reads them: through a real server's REST API
    import urllib.request

    with mlflow_server(uri, tmp_path / "mlflow-server.log") as base:
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/runs/get?run_id={parent_id}",
                                    timeout=10) as r:
            shown = json.load(r)["run"]["data"]
    assert {t["key"]: t["value"] for t in shown["tags"]}["mlflow.note.content"] == note
    assert {m["key"]: m["value"] for m in shown["metrics"]
            if m["key"].startswith("verdicts/")} == verdicts
    # each step's run says what it measured, on what, and the claims it fed
    assert gen.data.tags["mlflow.note.content"].startswith(
        "Step `range` (range) of study `mine`, reading generator: half_blobs:make, ")
    assert claims_verb.main([parent_id, "--tracking-uri", uri, "--experiment", "test"]) == 0
    again = capsys.readouterr().out
    assert f"verdicts: {counts(stored)}" in again and "(was: " not in again
