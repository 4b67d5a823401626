"""The sparsity post's quantities (closed forms, torch cross-checks) and its experiment end
to end: a Ray task, one MLflow run with the curves as metric histories, the claim."""

import json

import mlflow
import numpy as np
import pytest
import torch
from conftest import make_idx_dataset

from analysis.sparsity import (
    SparsityPlan,
    choose_variable,
    run_phases,
    variable_kl,
    variable_moments,
)
from analysis.studies.sparsity import perturbed_codes, reconstruction_gains
from latentatlas.errors import UserError
from latentatlas.losses import bernoulli_nll, gaussian_kl
from latentatlas.model_store import load_vae


def test_each_variables_kl_is_its_share_of_the_gaussian_kl():
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(50, 4)), rng.normal(scale=0.5, size=(50, 4))
    per_row = gaussian_kl(torch.from_numpy(mu), torch.from_numpy(logvar)).numpy()
    assert np.isclose(variable_kl(mu, logvar).sum(), per_row.mean())
    # closed forms: the prior itself costs nothing; a unit shift of the mean costs 1/2
    assert variable_kl(np.zeros((3, 2)), np.zeros((3, 2))) == pytest.approx([0, 0])
    assert variable_kl(np.ones((3, 1)), np.zeros((3, 1))) == pytest.approx([0.5])
    var_mu, mean_sigma2 = variable_moments(mu, logvar)
    assert np.allclose(var_mu, mu.var(axis=0)) and np.allclose(mean_sigma2,
                                                               np.exp(logvar).mean(0))


def test_the_damaged_codes_hold_the_inactive_at_zero_and_noise_one_variable():
    mu, logvar = torch.full((5, 3), 2.0), torch.zeros(5, 3)
    eps, noise = torch.ones(5, 3), torch.arange(5.0)
    held = torch.tensor([False, False, True])
    z = perturbed_codes(mu, logvar, eps, held, 1, 0.5, noise)
    assert torch.equal(z[:, 0], torch.full((5,), 3.0))  # mu + sigma * eps
    assert torch.equal(z[:, 1], 3.0 + 0.5 * noise)
    assert torch.equal(z[:, 2], torch.zeros(5))
    assert torch.equal(perturbed_codes(mu, logvar, None, held, 1, 0.0, noise)[:, :2], mu[:, :2])


def test_the_gain_of_a_variable_the_decoder_ignores_is_zero_and_of_one_it_reads_known():
    def decode(z):  # pixel p = sigmoid(z0) everywhere; z1 is ignored
        return torch.sigmoid(z[:, :1]).expand(-1, 6).reshape(-1, 1, 2, 3)

    z = torch.tensor([[1.0, 5.0], [-2.0, -1.0]])
    x = decode(z)
    nats, mse = reconstruction_gains(decode, z, x, 1)
    assert nats == pytest.approx(0, abs=1e-6) and mse == pytest.approx(0, abs=1e-12)
    nats, mse = reconstruction_gains(decode, z, x, 0)
    half = torch.full_like(x, 0.5)  # z0 = 0 decodes to 1/2
    assert mse == pytest.approx(float((half - x).pow(2).mean()))
    assert nats == pytest.approx(float((bernoulli_nll(x, half) - bernoulli_nll(x, x)).mean()),
                                 rel=1e-5)


def scripted(rows: list[tuple[float, float, bool]]):
    """`epoch(phase, noise)` answering with the scripted (gain, kl, inactive) rows in turn,
    and the (phase, noise) calls it was made with."""
    calls, rows = [], iter(rows)

    def epoch(phase, noise):
        calls.append((phase, noise))
        gain, kl, inactive = next(rows)
        return {"gain_nats": gain, "kl": kl, "inactive": inactive}
    return epoch, calls


PLAN = SparsityPlan(noise_step=0.5, max_increments=4, hold_epochs=3, revival_epochs=3)


def test_the_phases_cross_hold_until_inactive_then_free_until_active():
    epoch, calls = scripted([(5, 1, False), (0.9, 1, False),  # crossed at the 2nd increment
                             (0.5, 1, False), (0.1, 1, True),  # inactive after 2 holds
                             (0, 0, True), (2, 1, False)])  # active again after 2 epochs
    e = run_phases(PLAN, epoch)
    assert (e.crossed_at, e.collapsed_early, e.collapse_epochs, e.revival_epochs) == (
        2, False, 2, 2)
    assert calls == [("increase", 0.5), ("increase", 1.0), ("hold", 1.0), ("hold", 1.0),
                     ("revive", 0.0), ("revive", 0.0)]


def test_a_variable_inactive_at_the_crossing_collapsed_in_no_hold_epoch():
    epoch, calls = scripted([(0.1, 1, True), (3, 1, False)])
    e = run_phases(PLAN, epoch)
    assert (e.crossed_at, e.collapse_epochs, e.revival_epochs) == (1, 0, 1)
    assert [c[0] for c in calls] == ["increase", "revive"]


def test_a_variable_that_never_crosses_or_never_collapses_is_not_freed():
    epoch, calls = scripted([(5, 1, False)] * 4)
    e = run_phases(PLAN, epoch)
    assert (e.crossed_at, e.collapsed_early, e.collapse_epochs) == (None, False, None)
    assert len(calls) == 4 and e.revival_epochs is None
    epoch, calls = scripted([(0.5, 1, False)] + [(0.4, 1, False)] * 3)
    e = run_phases(PLAN, epoch)
    assert (e.crossed_at, e.collapse_epochs, e.revival_epochs) == (1, None, None)
    assert [c[0] for c in calls] == ["increase"] + ["hold"] * 3


def test_a_collapse_before_the_crossing_is_told_apart():
    epoch, calls = scripted([(5, 1, False), (2, 1, True), (0, 0, True), (0, 0, True),
                             (0, 0, True)])
    e = run_phases(PLAN, epoch)
    assert (e.crossed_at, e.collapsed_early, e.collapse_epochs, e.revival_epochs) == (
        None, True, None, None)
    assert [c[0] for c in calls] == ["increase"] * 2 + ["revive"] * 3


def test_the_damaged_variable_is_an_active_one_whose_gain_exceeds_its_kl():
    gain, kl = np.array([9.0, 0.5, 3.0, 0.0]), np.array([2.0, 1.0, 1.0, 0.0])
    held = np.array([False, False, False, True])
    assert choose_variable(SparsityPlan(latent_dim=4), gain, kl, held) == 2  # not 1: 0.5 < 1
    assert choose_variable(SparsityPlan(latent_dim=4, variable=0), gain, kl, held) == 0
    with pytest.raises(UserError, match=r"--variable 3 is inactive after training; active: "
                                        r"\[0, 1, 2\]"):
        choose_variable(SparsityPlan(latent_dim=4, variable=3), gain, kl, held)
    with pytest.raises(UserError, match="--variable 1: its gain 0.5 nats is already below"):
        choose_variable(SparsityPlan(latent_dim=4, variable=1), gain, kl, held)
    with pytest.raises(UserError, match="no variable is active after training"):
        choose_variable(SparsityPlan(latent_dim=4), gain, kl, np.ones(4, bool))


def test_a_plan_out_of_range_is_refused_in_one_line():
    """The verb's flags are the step's options (SparsityPlan): one line naming the flag."""
    from jobs.kinds.sparsity import SparsityOptions
    from jobs.options import options_of
    from jobs.sparsity import parse

    with pytest.raises(UserError, match="--max-increments 0: Input should be greater than 0"):
        options_of(parse(["--max-increments", "0"]), SparsityOptions)
    with pytest.raises(UserError, match="variable 16 is not one of the 16 latent variables"):
        options_of(parse(["--variable", "16"]), SparsityOptions)
    assert options_of(parse(["--epochs", "3"]), SparsityOptions).plan() == SparsityPlan(epochs=3)


def test_the_verb_runs_the_experiment_and_logs_its_curves_and_claim(
        ray_session, mlflow_store, tmp_path, capsys):
    """A thousand blob images: the experiment's shape, not its science (25 epochs of 8
    minibatches at lr 0.003 make a few variables active). Noise of std 30 makes the damaged variable
    useless at the first increment (zeroing it removes noise: its gain drops below its KL at
    once), so the increments stop after one."""
    from jobs import sparsity

    folder = make_idx_dataset(tmp_path / "blobs", n_train=1024, n_test=64)
    code = sparsity.main(["--dataset", "mnist", "--data-path", str(folder), "--epochs", "25",
                          "--lr", "0.003", "--every", "4", "--probe", "64", "--noise-step", "30",
                          "--hold-epochs", "2", "--revival-epochs", "2",
                          "--tracking-uri", mlflow_store])
    out, err = capsys.readouterr()
    assert code == 0, err
    (run,) = mlflow.search_runs(filter_string="tags.`latentatlas.kind` = 'sparsity'",
                                output_format="list")
    m = run.data.metrics
    assert m["sparsity/crossed"] == 1 and m["sparsity/increments"] == 1
    assert m["sparsity/crossing_noise"] == 30 and m["sparsity/active"] >= 1
    client = mlflow.MlflowClient()
    per_epoch = sorted(client.get_metric_history(run.info.run_id, "sparsity/gain_nats"),
                       key=lambda h: h.step)
    epochs = 25 + 1 + m.get("sparsity/collapse_epochs", 2) + m.get(
        "sparsity/revival_epochs", 2 if m["sparsity/collapsed"] else 0)
    assert [h.step for h in per_epoch] == list(range(1, int(epochs) + 1))
    # a point of every variable's curve every 4 minibatches, and one at the end
    minibatches = int(epochs) * 1024 // 128
    history = client.get_metric_history(run.info.run_id, "sparsity/var_mu_15")
    assert sorted(h.step for h in history) == [*range(0, minibatches, 4), minibatches]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"variance_curves.png", "collapse.png", "claims.json", "variables.json",
            "sparsity_epochs.json"} <= artifacts
    model, _ = load_vae(f"runs:/{run.info.run_id}/model")  # the damaged, revived model
    assert model.encode(torch.zeros(2, 1, 28, 28))[0].shape == (2, 16)
    (claim,) = json.loads(open(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="claims.json")).read())
    assert claim["key"] == "collapse_reversible" and claim["runs"] == [run.info.run_id]
    assert "a variable collapses once its gain falls below its KL" in out
    assert f"MLflow run id: {run.info.run_id}" in out


def test_a_training_that_leaves_no_variable_active_is_refused_in_one_line(ray_session, mlflow_store,
                                                            idx_folder, capsys):
    """Two minibatches leave every variable inactive: the experiment has nothing to damage
    and says so, from inside its Ray task, in one line."""
    from jobs import sparsity

    code = sparsity.main(["--dataset", "mnist", "--data-path", str(idx_folder), "--epochs",
                          "2", "--tracking-uri", mlflow_store])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[0].startswith("error: sparsity: no variable is active after "
                                           "training"), err
    # one line of error; where a Ray of this process has written its own messages, the
    # next points there (not the Ray task's traceback)
    assert all(line.startswith("Ray's own messages: ") for line in err[1:]), err
