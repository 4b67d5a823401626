"""Adversarial training (dcgan, style_gan) and recoder training on generated pairs."""

from __future__ import annotations

import numpy as np
import ray.train.torch
import torch
import torch.nn.functional as F

from latentatlas.config import ExperimentConfig
from latentatlas.errors import UserError
from latentatlas.images import mean_pairwise_mse, readable_grid, readable_rows, to_unit_float
from latentatlas.models import build_model, rebuild_model, share_model
from latentatlas.record import Record
from latentatlas.train.common import Sums, epoch_batches, restore_optimizer, unwrap
from latentatlas.train.family import (
    Family,
    Inputs,
    Published,
    Trained,
    dataset_inputs,
    merged,
    sample_scores,
)

GRID = 64  # fixed-noise samples per epoch picture
# Samples less diverse than this fraction of real images (mean pairwise MSE) are "alike":
# a collapsed generator, flagged in its run.
COLLAPSE_FRACTION = 0.1


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss of the discriminator: -log D(x) - log(1 - D(G(z)))."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """The generator's non-saturating loss: -log D(G(z))."""
    return F.softplus(-fake).mean()


def r1_penalty(real_logits: torch.Tensor, inputs: torch.Tensor, n: int) -> torch.Tensor:
    """Mesheder et al.'s R1: mean squared norm of d logit / d x over the n real images (the
    first n rows of `inputs`), differentiable for the discriminator's update."""
    grad, = torch.autograd.grad(real_logits.sum(), inputs, create_graph=True)
    return grad[:n].pow(2).flatten(1).sum(dim=1).mean()


@torch.no_grad()
def sample_grid(gan, noise: torch.Tensor, psi: float = 1.0) -> np.ndarray:
    """Samples of fixed noise (decoded without noise inputs; style codes truncated by psi)."""
    codes = gan.codes(noise)
    if psi != 1.0 and hasattr(gan.generator, "truncate"):
        codes = gan.generator.truncate(codes, psi)
    return readable_grid(gan.decode(codes).cpu().numpy(), ncols=8)


class GANObjective:
    """Alternating discriminator and generator Adam steps, both networks data-parallel.
    Real and fake images go through the discriminator in one batch (it has no BatchNorm)."""

    def __init__(self, cfg, data: dict, device, rank: int, world: int):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.train_x, self.val_x = data["train"], data["val"]
        self.gan = build_model(cfg.model, self.train_x.shape[1:])
        self.val_shard = self.val_x[rank::world][: len(self.val_x) // world or None]
        self.fixed_noise = self.gan.sample_noise(GRID, torch.Generator().manual_seed(cfg.seed))

    def load_state_dict(self, state: dict) -> None:
        self.gan.load_state_dict(state["model"])

    def prepare(self, state: dict | None, start_epoch: int,
                wrap=ray.train.torch.prepare_model) -> None:
        t, g = self.cfg.train, self.cfg.gan
        self.generator = wrap(self.gan.generator)
        self.discriminator = wrap(self.gan.discriminator)
        self.gan.to(self.device)
        betas = (g.beta1, g.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=t.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=g.d_lr or t.lr,
                                      betas=betas)
        restore_optimizer(self.opt_g, state and state["opt_g"], t.lr)
        restore_optimizer(self.opt_d, state and state["opt_d"], g.d_lr or t.lr)

    def state_dict(self) -> dict:
        return {"model": self.gan.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict()}

    def step(self, x: torch.Tensor) -> tuple[float, ...]:
        n, gamma = len(x), self.cfg.gan.r1_gamma
        with torch.no_grad():
            fake = self.generator(self.gan.sample_noise(n, device=self.device))
        inputs = torch.cat([x, fake]).requires_grad_(gamma > 0)
        logits = self.discriminator(inputs).squeeze(1)
        real_logits, fake_logits = logits[:n], logits[n:]
        d_loss = discriminator_loss(real_logits, fake_logits)
        r1 = r1_penalty(real_logits, inputs, n) if gamma > 0 else torch.zeros(())
        self.opt_d.zero_grad(set_to_none=True)
        (d_loss + 0.5 * gamma * r1).backward()
        self.opt_d.step()

        g_loss = generator_loss(self.discriminator(
            self.generator(self.gan.sample_noise(n, device=self.device))).squeeze(1))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return (d_loss.item(), g_loss.item(), torch.sigmoid(real_logits).mean().item(),
                torch.sigmoid(fake_logits).mean().item(), r1.item())

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        self.generator.train()
        self.discriminator.train()
        sums = Sums("gan/d_loss", "gan/g_loss", "gan/d_real", "gan/d_fake", "gan/r1")
        for idx in epoch_batches(len(self.train_x), epoch, cfg.seed, self.rank, self.world,
                                 cfg.train.batch_size):
            sums.add(len(idx), *self.step(to_unit_float(self.train_x[np.sort(idx)],
                                                        self.device)))
        metrics, count = sums.means(self.device)
        if cfg.gan.r1_gamma == 0:
            del metrics["gan/r1"]
        return {**metrics, "images": count}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """D's mean output on held-out real images (beside gan/d_real: its overfitting), and
        the diversity of the fixed-noise samples (mean pairwise MSE: ~0 when collapsed)."""
        self.discriminator.eval()
        sums = Sums("val/d_real")
        for i in range(0, len(self.val_shard), 1024):
            x = to_unit_float(self.val_shard[i:i + 1024], self.device)
            sums.add(len(x), torch.sigmoid(self.discriminator(x)).mean().item())
        self.gan.eval()
        samples = self.gan.decode(self.gan.codes(self.fixed_noise.to(self.device)))
        return {**sums.means(self.device)[0],
                "gan/sample_pairwise_mse": mean_pairwise_mse(samples.cpu().numpy())}

    @staticmethod
    def line(metrics: dict) -> str:
        return (f"d_loss={metrics['gan/d_loss']:.4g} g_loss={metrics['gan/g_loss']:.4g} "
                f"D(real)={metrics['gan/d_real']:.3f} D(fake)={metrics['gan/d_fake']:.3f}")

    def pictures(self, epoch: int) -> dict[str, np.ndarray]:
        self.gan.eval()
        grid = sample_grid(self.gan, self.fixed_noise.to(self.device),
                           self.cfg.gan.truncation_psi)
        return {"samples": grid}

    def result(self) -> dict:
        return {}


class RecoderObjective:
    """The seed's recoder: an encoder from G(code) back to code, trained on a stream of
    freshly generated pairs (every step new noise, so it cannot overfit); each rank draws
    its own stream from the RNG the loop seeds per (seed, epoch, rank). Scored on a fixed
    held-out set of generated pairs."""

    def __init__(self, cfg, data: dict, device, rank: int, world: int):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        shared = ray.get(data["generator"]) if isinstance(data["generator"], ray.ObjectRef) \
            else data["generator"]
        self.gan = rebuild_model(shared["spec"], shared["state"], device).requires_grad_(False)
        self.recoder = build_model(cfg.model, self.gan.input_shape)
        held = self.gan.sample_noise(cfg.invert.holdout,
                                     torch.Generator().manual_seed(cfg.seed + 1_000_003))
        self.held_noise = held[rank::world][: len(held) // world or None]

    def load_state_dict(self, state: dict) -> None:
        self.recoder.load_state_dict(state["model"])

    def prepare(self, state: dict | None, start_epoch: int,
                wrap=ray.train.torch.prepare_model) -> None:
        self.model = wrap(self.recoder)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.train.lr)
        restore_optimizer(self.optimizer, state and state["optimizer"], self.cfg.train.lr)

    def state_dict(self) -> dict:
        return {"model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict()}

    @torch.no_grad()
    def pairs(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.gan.codes(noise.to(self.device))
        return codes, self.gan.decode(codes)

    def losses(self, model, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                           torch.Tensor | None]:
        """(loss, latent MSE, pixel MSE or None when the pixel term is off)."""
        codes, x = self.pairs(noise)
        guess = model(x)
        latent = (guess - codes).pow(2).mean()
        weight = self.cfg.invert.pixel_weight
        pixel = (self.gan.decode(guess) - x).pow(2).mean() if weight else None
        return (latent + weight * pixel if weight else latent), latent, pixel

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        sums = Sums("train/loss", "train/latent_mse")
        for _ in range(cfg.invert.steps_per_epoch):
            loss, latent, _ = self.losses(self.model, self.gan.sample_noise(cfg.train.batch_size))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            sums.add(cfg.train.batch_size, loss.item(), latent.item())
        metrics, count = sums.means(self.device)
        return {**metrics, "images": count}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        sums = Sums("inversion/latent_mse", "inversion/pixel_mse")
        held = []
        for i in range(0, len(self.held_noise), 512):
            codes, x = self.pairs(self.held_noise[i:i + 512])
            guess = self.model(x)
            sums.add(len(x), (guess - codes).pow(2).mean().item(),
                     (self.gan.decode(guess) - x).pow(2).mean().item())
            held.append(codes)
        # what predicting the mean code would score: the scale of the latent MSE
        variance = torch.cat(held).var(dim=0).mean().item()
        return {**sums.means(self.device)[0], "inversion/code_variance": variance}

    @staticmethod
    def line(metrics: dict) -> str:
        return (f"latent_mse={metrics['train/latent_mse']:.4g} "
                f"held-out latent_mse={metrics['inversion/latent_mse']:.4g} "
                f"pixel_mse={metrics['inversion/pixel_mse']:.4f}")

    def pictures(self, epoch: int) -> dict[str, np.ndarray]:
        return {}

    def result(self) -> dict:
        return {}


@torch.no_grad()
def recoder_pictures(recoder, gan, seed: int, n: int = 8) -> dict[str, np.ndarray]:
    """Generated images over their regenerations G(recoder(G(code)))."""
    codes = gan.sample_codes(n, torch.Generator().manual_seed(seed))
    x = gan.decode(codes)
    return {"regenerations": readable_rows([x.numpy(), gan.decode(recoder(x)).numpy()],
                                           ["generated", "regenerated"])}


def collapse_note(samples_mse: float, real_mse: float) -> str | None:
    """A sentence when samples are far less diverse than real images (mode collapse)."""
    if samples_mse >= COLLAPSE_FRACTION * real_mse:
        return None
    return (f"the generator looks collapsed: its samples' mean pairwise MSE {samples_mse:.2g} "
            f"is below {COLLAPSE_FRACTION:g}x that of real images ({real_mse:.2g})")


def gan_pictures(gan, seed: int, psi: float) -> dict[str, np.ndarray]:
    return {"samples": sample_grid(gan, gan.sample_noise(GRID, torch.Generator().manual_seed(
        seed)), psi)}


def gan_after(trained: Trained) -> Published:
    """FID when configured; the diversity of real images beside the samples', and a warning
    when the generator looks collapsed."""
    real = mean_pairwise_mse(trained.inputs.val_images[:GRID] / 255.0)
    note = collapse_note(trained.metrics["gan/sample_pairwise_mse"], real)
    flags = Record("train", "", metrics={"gan/real_pairwise_mse": real},
                   tags={"latentatlas.collapsed": note} if note else {})
    return Published(merged(sample_scores(trained), flags), [note] if note else [])


GAN = Family("gan", GANObjective, dataset_inputs,
             pictures=lambda t: gan_pictures(t.model, t.cfg.seed, t.cfg.gan.truncation_psi),
             after=gan_after)


def recoder_inputs(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Inputs]:
    """A recoder's generator (whose code size the recoder takes on): its data are the
    generator's own samples, drawn afresh in every worker."""
    from latentatlas import model_store

    gan, spec = model_store.load_model(cfg.invert.generator, role="invert.generator")
    if not hasattr(gan, "discriminator"):
        raise UserError(f"invert.generator: {cfg.invert.generator} is a "
                        f"{spec['model']['name']}, not a generator (dcgan, style_gan)")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"latent_dim": gan.latent_dim})})
    return cfg, Inputs({"generator": share_model(gan, spec)}, gan.input_shape,
                       {"generator": cfg.invert.generator, "dataset": spec.get("dataset"),
                        "seed": cfg.seed}, generator=gan)


RECODER = Family("recoder", RecoderObjective, recoder_inputs,
                 pictures=lambda t: recoder_pictures(t.model, t.inputs.generator, t.cfg.seed))
