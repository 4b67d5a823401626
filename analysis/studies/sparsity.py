"""The seed's sparsity post, run as it runs it. A dense VAE (784-256-64-32-16, BCE + KL) is
trained while var(mu) and mean(sigma^2) of every variable are measured every few minibatches
(the post's Figure 1). Then the collapse experiment (its Figure 3): one active variable gets
Gaussian noise of growing strength, one epoch of training per increment, the variables
already inactive held at zero in the decoder's input (else the network would revive one of
them to replace the damaged variable); increments stop once the variable's reconstruction
gain falls below its KL term; training goes on at that strength until the variable is
inactive (the collapse); then the noise is removed and training goes on until it is active
again (the revival). Every measurement runs on a fixed probe of validation images; the
whole experiment runs in one Ray task (one process holds the model through its phases)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import ray
import torch

from analysis.figures import collapse_curves, variance_curves
from analysis.latent import inactive
from analysis.sparsity import (
    CollapseEvents,
    SparsityPlan,
    choose_variable,
    run_phases,
    variable_kl,
    variable_moments,
)
from latentatlas.config import DenseVAEConfig
from latentatlas.errors import UserError
from latentatlas.images import to_unit_float
from latentatlas.losses import bernoulli_nll, gaussian_kl
from latentatlas.models import build_model
from latentatlas.record import Record
from latentatlas.train.common import epoch_batches

__all__ = ["SparsityResult", "measure_sparsity", "perturbed_codes",
           "reconstruction_gains"]

def perturbed_codes(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None,
                    held: torch.Tensor, variable: int | None, strength: float,
                    noise: torch.Tensor) -> torch.Tensor:
    """The decoder's input in the collapse experiment: z = mu + sigma * eps (eps None: the
    means), the variables in `held` (a bool mask) zeroed so the decoder cannot revive them,
    and Gaussian noise of std `strength` added to `variable` (`noise` ~ N(0, 1) per row;
    none before the experiment: strength 0, no variable)."""
    z = mu if eps is None else mu + (0.5 * logvar).exp() * eps
    z = z.masked_fill(held, 0.0)  # a new tensor: the noise below changes no input
    if strength:
        z[:, variable] = z[:, variable] + strength * noise
    return z


@torch.no_grad()
def reconstruction_gains(decode, z: torch.Tensor, x: torch.Tensor,
                         variable: int) -> tuple[float, float]:
    """(gain in nats, gain in pixel MSE) of `variable`: the mean per-item BCE summed over
    pixels, and the mean per-item pixel MSE, with the variable zeroed minus with it."""
    zeroed = z.clone()
    zeroed[:, variable] = 0
    x_hat, x_cut = decode(z), decode(zeroed)
    nats = bernoulli_nll(x, x_cut).double().mean() - bernoulli_nll(x, x_hat).double().mean()
    mse = ((x_cut - x).pow(2).double().mean() - (x_hat - x).pow(2).double().mean())
    return float(nats), float(mse)


@dataclass
class SparsityResult:
    plan: SparsityPlan
    variable: int  # the variable the experiment damages
    held: np.ndarray  # bool: inactive after training, held at zero through the experiment
    trained: dict  # per variable after training: var_mu, mean_sigma2, kl, gain_nats, gain_mse
    curve_steps: np.ndarray  # minibatches done at each curve point
    noise_from: int  # minibatches done when the experiment began
    curve_var_mu: np.ndarray  # (points, d)
    curve_mean_sigma2: np.ndarray  # (points, d)
    # one row per epoch: its phase (training: before the experiment; increase: one more noise
    # increment; hold: the last noise kept, waiting for the collapse; revive: no noise,
    # waiting for the revival), the noise, the damaged variable's measures
    epochs: list[dict]
    events: CollapseEvents
    state_dict: dict = field(repr=False, default_factory=dict)  # the final model

    @property
    def model_config(self) -> dict:
        return {"name": "dense_vae", "hidden": list(self.plan.hidden),
                "latent_dim": self.plan.latent_dim}

    def training_val_mse(self) -> list[float]:
        return [row["val_mse"] for row in self.epochs if row["phase"] == "training"]

    @property
    def metrics(self) -> dict[str, float]:
        v, e = self.variable, self.events
        m = {"sparsity/variable": v, "sparsity/active": int((~self.held).sum()),
             "sparsity/inactive": int(self.held.sum()),
             "sparsity/gain_before": self.trained["gain_nats"][v],
             "sparsity/kl_before": self.trained["kl"][v],
             "sparsity/var_mu_before": self.trained["var_mu"][v],
             "sparsity/increments": sum(r["phase"] == "increase" for r in self.epochs),
             "sparsity/crossed": int(e.crossed_at is not None),
             "sparsity/collapsed_early": int(e.collapsed_early),
             "sparsity/collapsed": int(e.collapse_epochs is not None),
             "sparsity/revived": int(e.revival_epochs is not None)}
        if e.crossed_at is not None:
            m["sparsity/crossing_noise"] = e.crossed_at * self.plan.noise_step
        if e.collapsed_early:
            m["sparsity/collapse_noise"] = m["sparsity/increments"] * self.plan.noise_step
        if e.collapse_epochs is not None:
            m["sparsity/collapse_epochs"] = e.collapse_epochs
        if e.revival_epochs is not None:
            m["sparsity/revival_epochs"] = e.revival_epochs
            revived = [r for r in self.epochs if r["phase"] == "revive"][e.revival_epochs - 1]
            m["sparsity/gain_revived"] = revived["gain_nats"]
        return m

    def series(self) -> dict[str, list[tuple[int, float]]]:
        """The curves as MLflow metric histories: per variable against minibatches, the
        damaged variable's measures against the epoch."""
        out = {}
        steps = self.curve_steps.tolist()
        for i in range(self.curve_var_mu.shape[1]):
            for name, curve in (("var_mu", self.curve_var_mu), ("mean_sigma2",
                                                                self.curve_mean_sigma2)):
                out[f"sparsity/{name}_{i:02d}"] = list(zip(steps, curve[:, i].tolist(),
                                                           strict=True))
        for key in ("noise", "gain_nats", "gain_mse", "kl", "var_mu", "mean_sigma2",
                    "val_mse"):
            out[f"sparsity/{key}"] = [(r["epoch"], r[key]) for r in self.epochs]
        return out

    def record(self) -> Record:
        p = self.plan
        d = p.latent_dim
        return Record(
            "sparsity", "sparsity",
            params={**{k: v for k, v in p.model_dump().items() if k != "variable"},
                    "variable": self.variable, "variable_chosen":
                    "given" if p.variable is not None else "least informative active",
                    "held_inactive": np.flatnonzero(self.held).tolist()},
            metrics=self.metrics, series=self.series(),
            tables={"variables.json": {"variable": list(range(d)),
                                       **{k: np.asarray(v).tolist()
                                          for k, v in self.trained.items()},
                                       "inactive": self.held.tolist()},
                    "sparsity_epochs.json": {k: [r[k] for r in self.epochs]
                                             for k in self.epochs[0]}},
            figures={"variance_curves.png": lambda: variance_curves(
                         self.curve_steps, self.curve_var_mu, self.held, p.batch_size,
                         self.variable, self.noise_from),
                     "collapse.png": lambda: collapse_curves(self.epochs, self.variable)})


class Experiment:
    """The model, its optimiser and the probe, through the four phases."""

    def __init__(self, plan: SparsityPlan, train_images: np.ndarray, probe_images: np.ndarray,
                 device: torch.device):
        self.plan, self.images, self.device = plan, train_images, device
        torch.manual_seed(plan.seed)
        self.model = build_model(DenseVAEConfig(hidden=list(plan.hidden),
                                                latent_dim=plan.latent_dim),
                                 train_images.shape[1:]).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=plan.lr)
        self.probe = to_unit_float(probe_images, device)
        # the probe's noise is drawn once: successive measurements differ by the model alone
        self.probe_noise = torch.randn(len(probe_images), generator=torch.Generator()
                                       .manual_seed(plan.seed + 1)).to(device)
        self.held = torch.zeros(plan.latent_dim, dtype=torch.bool, device=device)
        self.steps, self.epoch = 0, 0
        self.curve: list[tuple[int, np.ndarray, np.ndarray]] = []

    @torch.no_grad()
    def probe_codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        mu, logvar = self.model.encode(self.probe)
        self.model.train()
        return mu, logvar

    def curve_point(self) -> None:
        mu, logvar = self.probe_codes()
        var_mu, mean_sigma2 = variable_moments(mu.cpu().numpy(), logvar.cpu().numpy())
        self.curve.append((self.steps, var_mu, mean_sigma2))

    def train_epoch(self, variable: int | None = None, strength: float = 0.0) -> None:
        p = self.plan
        torch.manual_seed(p.seed * 1_000_003 + self.epoch)
        for idx in epoch_batches(len(self.images), self.epoch, p.seed, 0, 1, p.batch_size):
            if self.steps % p.every == 0:
                self.curve_point()
            x = to_unit_float(self.images[np.sort(idx)], self.device)
            mu, logvar = self.model.encode(x)
            z = perturbed_codes(mu, logvar, torch.randn_like(mu), self.held, variable,
                                strength, torch.randn(len(x), device=self.device))
            loss = (bernoulli_nll(x, self.model.decode(z)) + gaussian_kl(mu, logvar)).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps += 1
        self.epoch += 1

    @torch.no_grad()
    def measure(self, variables: list[int], variable: int | None = None,
                strength: float = 0.0) -> dict:
        """Every variable's moments and KL; the gains of `variables`, decoded from the means
        under the noise the decoder trains with; the pixel MSE of that decoding."""
        mu, logvar = self.probe_codes()
        var_mu, mean_sigma2 = variable_moments(mu.cpu().numpy(), logvar.cpu().numpy())
        z = perturbed_codes(mu, logvar, None, self.held, variable, strength, self.probe_noise)
        self.model.eval()
        gains = {v: reconstruction_gains(self.model.decode, z, self.probe, v) for v in variables}
        val_mse = float((self.model.decode(z) - self.probe).pow(2).double().mean())
        self.model.train()
        return {"epoch": self.epoch, "var_mu": var_mu, "mean_sigma2": mean_sigma2,
                "kl": variable_kl(mu.cpu().numpy(), logvar.cpu().numpy()),
                "gains": gains, "val_mse": val_mse}


def run_experiment(plan: SparsityPlan, train_images: np.ndarray, probe_images: np.ndarray,
                   threads: int, use_gpu: bool) -> SparsityResult:
    """The four phases in this process (the Ray task's body)."""
    torch.set_num_threads(max(1, threads))
    device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
    ex = Experiment(plan, train_images, probe_images, device)
    everyone = list(range(plan.latent_dim))

    def row(phase: str, variable: int, strength: float, m: dict) -> dict:
        nats, mse = m["gains"][variable]
        out = {"epoch": m["epoch"], "phase": phase, "noise": strength, "gain_nats": nats,
               "gain_mse": mse,
               **{k: float(m[k][variable]) for k in ("kl", "var_mu", "mean_sigma2")},
               "val_mse": m["val_mse"]}
        bad = [k for k, v in out.items() if isinstance(v, float) and not np.isfinite(v)]
        if bad:  # a diverged training: stop here rather than judge NaN against NaN
            raise UserError(f"sparsity: epoch {m['epoch']} ({phase}, noise {strength:g}) gave "
                            f"a non-finite {', '.join(bad)} for variable {variable}")
        return {**out, "inactive": bool(inactive(m["var_mu"], m["mean_sigma2"])[variable])}

    trained_epochs = []
    for _ in range(plan.epochs):
        ex.train_epoch()
        trained_epochs.append(ex.measure(everyone))
    last = trained_epochs[-1]
    trained = {"var_mu": last["var_mu"], "mean_sigma2": last["mean_sigma2"], "kl": last["kl"],
               "gain_nats": np.array([last["gains"][v][0] for v in everyone]),
               "gain_mse": np.array([last["gains"][v][1] for v in everyone])}
    held = inactive(trained["var_mu"], trained["mean_sigma2"])
    variable = choose_variable(plan, trained["gain_nats"], trained["kl"], held)
    rows = [row("training", variable, 0.0, m) for m in trained_epochs]
    ex.held = torch.as_tensor(held, device=device)
    noise_from = ex.steps

    def epoch(phase: str, strength: float) -> dict:
        ex.train_epoch(variable, strength)
        rows.append(row(phase, variable, strength, ex.measure([variable], variable, strength)))
        return rows[-1]

    events = run_phases(plan, epoch)
    ex.curve_point()
    steps, var_mu, mean_sigma2 = zip(*ex.curve, strict=True)
    return SparsityResult(plan, variable, held, trained, np.array(steps), noise_from,
                          np.stack(var_mu), np.stack(mean_sigma2), rows, events,
                          {k: v.cpu() for k, v in ex.model.state_dict().items()})


def measure_sparsity(plan: SparsityPlan, train_images: np.ndarray, val_images: np.ndarray, *,
                     cpus: float = 1.0, use_gpu: bool = False) -> SparsityResult:
    """The experiment as one Ray task holding `cpus` (and a GPU when asked)."""
    if min(len(val_images), len(train_images)) < 2:
        raise UserError(f"sparsity: {len(train_images)} training and {len(val_images)} "
                        "validation images; at least 2 of each are needed")
    task = ray.remote(num_cpus=cpus, num_gpus=1 if use_gpu else 0)(run_experiment)
    return ray.get(task.remote(plan, train_images, val_images[:plan.probe],
                               max(1, int(cpus)), use_gpu))
