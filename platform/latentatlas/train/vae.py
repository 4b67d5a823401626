"""The VAE objective: ELBO-style loss under a KL policy, validation, the first-epoch trace."""

from __future__ import annotations

import numpy as np
import ray.train.torch
import torch

from latentatlas.config import ExperimentConfig
from latentatlas.errors import UserError
from latentatlas.images import readable_grid, readable_rows, to_unit_float
from latentatlas.losses import gaussian_kl, make_policy, mu_penalty
from latentatlas.models import build_model
from latentatlas.record import Record
from latentatlas.train.common import all_sum, epoch_batches, restore_optimizer, unwrap
from latentatlas.train.family import (
    Family,
    Inputs,
    Published,
    Trained,
    dataset_inputs,
    merged,
    sample_scores,
)


def vae_terms(model, x, policy):
    """One forward pass: (loss, per-pixel MSE, mean KL) for a batch."""
    x_hat, mu, logvar = model(x)
    kl = gaussian_kl(mu, logvar) if unwrap(model).sample_posterior else mu_penalty(mu)
    return policy.loss(x, x_hat, kl), (x - x_hat).pow(2).mean(), kl.mean()


def train_epoch(model, optimizer, policy, images: np.ndarray, batches, device,
                reduce_mse=None, before_step=None) -> list[float]:
    """One pass of plain PyTorch over `batches` (index arrays into uint8 `images`).
    Returns [sum loss, sum mse, sum kl, count] weighted by batch size. `reduce_mse` averages
    the batch MSE over ranks so a running-MSE policy stays identical on every rank;
    `before_step(i)` runs before step i (the first-epoch trace)."""
    model.train()
    sums = [0.0, 0.0, 0.0, 0.0]
    for step, idx in enumerate(batches):
        if before_step:
            before_step(step)
        x = to_unit_float(images[np.sort(idx)], device)
        loss, mse, kl = vae_terms(model, x, policy)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batch_mse = mse.item()
        if policy.gamma is not None:
            policy.observe(reduce_mse(batch_mse) if reduce_mse else batch_mse)
        n = len(idx)
        sums = [sums[0] + loss.item() * n, sums[1] + batch_mse * n, sums[2] + kl.item() * n,
                sums[3] + n]
    return sums


@torch.no_grad()
def evaluate(model, val_x: np.ndarray, policy, device) -> list[float]:
    model.eval()
    sums = [0.0, 0.0, 0.0, 0.0]
    for i in range(0, len(val_x), 1024):
        x = to_unit_float(val_x[i:i + 1024], device)
        loss, mse, kl = vae_terms(model, x, policy)
        n = len(x)
        sums = [sums[0] + loss.item() * n, sums[1] + mse.item() * n, sums[2] + kl.item() * n,
                sums[3] + n]
    return all_sum(sums, device)


class Trace:
    """The codes (posterior means) of a few fixed images at `points` evenly spaced moments of
    the first epoch, before the first step through after the last: how the latent space
    takes shape."""

    def __init__(self, model, images: np.ndarray, points: int, device):
        self.model, self.x, self.points = model, to_unit_float(images, device), points
        self.snapshots: list[np.ndarray] = []

    def recorder(self, steps: int):
        at = set(np.linspace(0, steps, self.points).astype(int)[:-1].tolist())

        def before_step(step: int) -> None:
            if step in at:
                self.snapshot()
        return before_step

    @torch.no_grad()
    def snapshot(self) -> None:
        was_training = self.model.training
        self.model.eval()
        self.snapshots.append(self.model.encode(self.x)[0].cpu().numpy())
        self.model.train(was_training)

    def codes(self) -> np.ndarray:
        return np.stack(self.snapshots)  # (moments, images, latent_dim)


@torch.no_grad()
def vae_pictures(model, val_images: np.ndarray, seed: int, n: int = 8,
                 device="cpu") -> dict[str, np.ndarray]:
    """Originals over reconstructions (posterior means), and an 8x8 grid of prior samples."""
    x = to_unit_float(val_images[:n], device)
    mu, _ = model.encode(x)
    z = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return {"reconstructions": readable_rows([x.cpu().numpy(), model.decode(mu).cpu().numpy()],
                                             ["original", "reconstruction"]),
            "samples": readable_grid(model.decode(z.to(device)).cpu().numpy(), ncols=8)}


@torch.no_grad()
def split_pictures(model, images: np.ndarray, device="cpu") -> np.ndarray:
    """Split-VAE's decoding of a few images, rows: originals, mask m, x1, x2, the mix."""
    was_training = model.training
    model.eval()
    x = to_unit_float(images, device)
    m, x1, x2 = model.parts(model.encode(x)[0])
    model.train(was_training)
    gray = m.expand_as(x)
    return readable_rows([t.cpu().numpy() for t in (x, gray, x1, x2, m * x1 + (1 - m) * x2)],
                         ["original", "mask m", "x1", "x2", "m x1 + (1-m) x2"])


def posterior_draw(mu: np.ndarray, logvar: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """One draw z = mu + exp(logvar / 2) * eps per row, the same on every rank for a
    (seed, epoch)."""
    eps = np.random.default_rng([seed, epoch, 2]).standard_normal(mu.shape)
    return (mu + np.exp(0.5 * logvar) * eps).astype(np.float32)


class VAEObjective:
    """dense_vae, conv_vae: one Adam over the whole model, the KL policy's loss."""

    def __init__(self, cfg, data: dict, device, rank: int, world: int):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.train_x, self.val_x = data["train"], data["val"]
        # A second stage on posterior samples: `train` holds the means, and every epoch
        # draws z = mu + sigma * eps afresh (as the authors do), fixed by (seed, epoch).
        self.train_mu, self.train_logvar = self.train_x, data.get("train_logvar")
        self.model = build_model(cfg.model, self.train_x.shape[1:])
        self.policy = make_policy(cfg.kl.policy, cfg.kl.beta, self.train_x.shape[1:],
                                  self.model.latent_dim)
        self.val_shard = self.val_x[rank::world][: len(self.val_x) // world or None]
        self.reduce_mse = (lambda v: all_sum([v], device)[0] / world) if world > 1 else None
        self.trace = None
        self.trace_images = data.get("trace_images")

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.policy.load_state_dict(state["policy"])

    def prepare(self, state: dict | None, start_epoch: int,
                wrap=ray.train.torch.prepare_model) -> None:
        """Optimizers after `wrap` (device placement and DDP; identity outside Ray Train)."""
        self.model = wrap(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.train.lr)
        restore_optimizer(self.optimizer, state and state["optimizer"], self.cfg.train.lr)
        if self.trace_images is not None and start_epoch == 0:
            self.trace = Trace(unwrap(self.model), self.trace_images, self.cfg.train.trace_points,
                               self.device)

    def state_dict(self) -> dict:
        return {"model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(), "policy": self.policy.state_dict()}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        if self.train_logvar is not None:
            self.train_x = posterior_draw(self.train_mu, self.train_logvar, cfg.seed, epoch)
        batches = epoch_batches(len(self.train_x), epoch, cfg.seed, self.rank, self.world,
                                cfg.train.batch_size)
        tracer = (self.trace.recorder(len(batches))
                  if self.trace is not None and epoch == 0 and self.rank == 0 else None)
        sums = train_epoch(self.model, self.optimizer, self.policy, self.train_x, batches,
                           self.device, self.reduce_mse, tracer)
        if tracer:
            self.trace.snapshot()  # after the last step of the epoch
        train_sums = all_sum(sums, self.device)
        metrics = {"train/loss": train_sums[0] / train_sums[3],
                   "train/mse": train_sums[1] / train_sums[3],
                   "train/kl": train_sums[2] / train_sums[3],
                   "images": train_sums[3]}
        if self.policy.gamma is not None:
            metrics["train/gamma"] = self.policy.gamma
        return metrics

    def evaluate(self) -> dict[str, float]:
        val_sums = evaluate(self.model, self.val_shard, self.policy, self.device)
        return {"val/loss": val_sums[0] / val_sums[3], "val/mse": val_sums[1] / val_sums[3],
                "val/kl": val_sums[2] / val_sums[3]}

    @staticmethod
    def line(metrics: dict) -> str:
        return f"loss={metrics['train/loss']:.4g} val/mse={metrics['val/mse']:.4f}"

    def pictures(self, epoch: int) -> dict[str, np.ndarray]:
        model = unwrap(self.model)
        was_training = model.training
        model.eval()
        shown = vae_pictures(model, self.val_x[:8], self.cfg.seed, device=self.device) \
            if self.val_x.dtype == np.uint8 else {}  # a second stage's are codes, not images
        model.train(was_training)
        if hasattr(model, "parts"):
            shown["split"] = split_pictures(model, self.val_x[:8], self.device)
        return shown

    def result(self) -> dict:
        return {"trace": self.trace.codes() if self.trace is not None and self.rank == 0
                else None}


def trace_indices(labels: np.ndarray, n: int = 10) -> np.ndarray:
    """The first item of each class (in class order), or the first n items when unlabelled."""
    classes = np.unique(labels[labels >= 0])
    if len(classes) == 0:
        return np.arange(min(n, len(labels)))
    return np.array([np.flatnonzero(labels == c)[0] for c in classes[:n]])


def vae_inputs(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Inputs]:
    """A dataset's splits, and the images whose codes the first epoch traces."""
    cfg, inputs = dataset_inputs(cfg)
    if cfg.train.trace_points:
        inputs.data["trace_images"] = inputs.val_images[trace_indices(inputs.val_labels)]
    return cfg, inputs


def first_epoch_trace(trained: Trained) -> Record:
    """The traced codes (an .npz) and their trajectories, when the loop traced them."""
    trace = (trained.returned or {}).get("trace")
    if trace is None:
        return Record("train", "")
    from latentatlas.plots import trajectories

    labels = trained.inputs.val_labels[trace_indices(trained.inputs.val_labels)]
    return Record("train", "", files={
        "first_epoch_trace.npz": lambda path: np.savez(path, codes=trace, labels=labels)},
        figures={"trajectories.png": lambda: trajectories(trace, labels)})


VAE = Family("vae", VAEObjective, vae_inputs,
             pictures=lambda t: vae_pictures(t.model, t.inputs.val_images, t.cfg.seed),
             after=lambda t: Published(merged(first_epoch_trace(t), sample_scores(t))))


def second_stage_inputs(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Inputs]:
    """A second stage's data: a first stage's codes (posterior means, or one posterior draw
    per item), a fixed share held out; the first stage's moments go into the spec (the
    renormalisation of its samples needs them)."""
    from latentatlas.encode import open_encoding

    s = cfg.second_stage
    enc = open_encoding(s.encoding)
    if enc.meta.family != "vae":
        raise UserError(f"second_stage.encoding: {s.encoding} holds a generator's inverted "
                        "codes; a second stage learns a VAE's codes")
    arrays = enc.arrays(["mu", "logvar"])
    mu, logvar = arrays["mu"].astype(np.float64), arrays["logvar"].astype(np.float64)
    order = np.random.default_rng(cfg.seed).permutation(len(mu))
    held = max(1, int(len(mu) * s.val_fraction))
    if len(mu) - held < 2:
        raise UserError(f"second_stage.encoding: {s.encoding} holds {len(mu)} rows; too "
                        "few to train on")
    d = mu.shape[1]
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"latent_dim": cfg.model.latent_dim or d})})
    extra = {"first_stage": enc.meta.model_uri, "encoding": str(enc.path),
             "dataset": enc.meta.dataset, "seed": cfg.seed, "codes": s.codes,
             "var_mu": mu.var(axis=0).tolist(), "mean_sigma2": np.exp(logvar).mean(0).tolist()}
    train_rows, val_rows = np.sort(order[held:]), np.sort(order[:held])
    data = {"train": mu[train_rows].astype(np.float32), "val": mu[val_rows].astype(np.float32)}
    if s.codes == "sample":  # drawn afresh every epoch by the objective; val/* on the means
        data["train_logvar"] = logvar[train_rows].astype(np.float32)
    return cfg, Inputs(data, (d,), extra)


# A second stage is a VAE whose "images" are a first stage's codes.
SECOND_STAGE = Family("second_stage", VAEObjective, second_stage_inputs)
