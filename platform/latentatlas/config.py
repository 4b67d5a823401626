"""Typed, validated experiment specs: YAML in, one clear line out when it is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from latentatlas.errors import UserError
from latentatlas.families import FAMILIES as MODEL_FAMILIES


class Strict(BaseModel):
    # Attribute docstrings are the keys' help in the generated config reference.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class DataConfig(Strict):
    name: str = "fashion-mnist"
    """The dataset source: fashion-mnist, mnist, digits, celeba, cifar10 (see the datasets
    how-to)."""
    path: str | None = None
    """Folder holding the dataset files; each source has a default."""
    train_split: str = "train"
    """The split a training learns from."""
    val_split: str = "test"
    """The split of the per-epoch val/* metrics."""
    limit: int | None = Field(default=None, gt=0)
    """First N items of each split."""


class DenseVAEConfig(Strict):
    name: Literal["dense_vae"] = "dense_vae"
    """Selects this model block."""
    family: ClassVar[str] = "vae"
    hidden: list[Annotated[int, Field(gt=0)]] = [256, 64, 32]
    """Widths of the encoder's hidden layers, input side first (the decoder mirrors them)."""
    latent_dim: int = Field(default=16, gt=0)
    """The number of latent variables."""
    sample_posterior: bool = True
    """False: z = mu and the KL term keeps only its quadratic penalty on mu (seed's ablation)"""


class ConvVAEConfig(Strict):
    name: Literal["conv_vae"] = "conv_vae"
    """Selects this model block."""
    family: ClassVar[str] = "vae"
    channels: list[Annotated[int, Field(gt=0)]] = [32, 64, 128]
    """Channels of the encoder's stride-2 convolutions, input side first (the decoder mirrors
    them)."""
    hidden: int = Field(default=256, gt=0)
    """Width of the dense layer between the convolutions and the codes."""
    latent_dim: int = Field(default=16, gt=0)
    """The number of latent variables."""
    sample_posterior: bool = True
    """False: z = mu and the KL term keeps only its quadratic penalty on mu (seed's ablation)."""


class ResNetVAEConfig(Strict):
    """BalancingVAE's first stage (Dai & Wipf's Resnet): residual blocks with BatchNorm; a
    side that is not a power of two is padded to the next one (MNIST: 32)."""

    name: Literal["resnet_vae"] = "resnet_vae"
    """Selects this model block."""
    family: ClassVar[str] = "vae"
    base: int = Field(default=16, gt=0)
    """Channels at full resolution, doubled per scale."""
    scales: int = Field(default=3, ge=1)
    """Resolutions of residual blocks (each halves the side)."""
    fc: int = Field(default=512, gt=0)
    """Width of the dense layer before the codes."""
    activation: Literal["swish", "relu"] = "swish"
    """The authors' BalancingVAE code: relu."""
    latent_dim: int = Field(default=32, gt=0)
    """The number of latent variables."""


class SplitVAEConfig(ResNetVAEConfig):
    """Split-VAE: the ResNet VAE whose decoder emits a mask and two images (kl.policy split)."""

    name: Literal["split_vae"] = "split_vae"
    """Selects this model block."""
    family: ClassVar[str] = "vae"


class DCGANConfig(Strict):
    name: Literal["dcgan"] = "dcgan"
    """Selects this model block."""
    family: ClassVar[str] = "gan"
    latent_dim: int = Field(default=64, gt=0)
    """The size of the generator's code z ~ N(0, I)."""
    channels: list[Annotated[int, Field(gt=0)]] = [128, 64]
    """Generator widths from the smallest feature map up; one stride-2 step per entry, so the
    image side must be divisible by 2^len (28: 7 -> 14 -> 28)"""


class StyleGANConfig(Strict):
    name: Literal["style_gan"] = "style_gan"
    """Selects this model block."""
    family: ClassVar[str] = "gan"
    latent_dim: int = Field(default=64, gt=0)
    """The size of w (the W space)"""
    noise_dim: int = Field(default=64, gt=0)
    """The size of z."""
    mapping_layers: int = Field(default=4, ge=1)
    """Dense layers of the mapping network z -> w."""
    channels: list[Annotated[int, Field(gt=0)]] = [64, 32, 16]
    """Synthesis widths per resolution from the base (image side / 2^(len-1)) up."""
    w_avg_beta: float = Field(default=0.995, gt=0, lt=1)
    """Decay of the running mean of w (the truncation's centre)."""


class RecoderConfig(Strict):
    name: Literal["recoder"] = "recoder"
    """Selects this model block."""
    family: ClassVar[str] = "recoder"
    channels: list[Annotated[int, Field(gt=0)]] = [32, 64, 128]
    """Channels of its stride-2 convolutions (image -> code)."""
    hidden: int = Field(default=256, gt=0)
    """Width of the dense layer before the code."""
    latent_dim: int | None = Field(default=None, gt=0)
    """Set from the generator's codes."""


class ClassifierConfig(Strict):
    """The feature network of `classifier-<dataset>` FID (its penultimate layer)."""

    name: Literal["classifier"] = "classifier"
    """Selects this model block."""
    family: ClassVar[str] = "classifier"
    channels: list[Annotated[int, Field(gt=0)]] = [32, 64]
    """Channels of its stride-2 convolutions."""
    hidden: int = Field(default=128, gt=0)
    """The feature size."""
    num_classes: int | None = Field(default=None, gt=1)
    """Set from the labels."""


class SecondStageConfig(Strict):
    """Dai & Wipf's second stage: a dense VAE on a first stage's codes."""

    name: Literal["second_stage"] = "second_stage"
    """Selects this model block."""
    family: ClassVar[str] = "second_stage"
    width: int = Field(default=1024, gt=0)
    """The authors: 2048-4096."""
    depth: int = Field(default=3, ge=1)
    """Dense layers of its encoder and of its decoder."""
    latent_dim: int | None = Field(default=None, gt=0)
    """Unset: the first stage's."""


MODEL_CONFIGS = {"dense_vae": DenseVAEConfig, "conv_vae": ConvVAEConfig,
                 "resnet_vae": ResNetVAEConfig, "split_vae": SplitVAEConfig, "dcgan": DCGANConfig,
                 "style_gan": StyleGANConfig, "recoder": RecoderConfig,
                 "classifier": ClassifierConfig, "second_stage": SecondStageConfig}
# Each model's schema declares its family, one of latentatlas.families (what a model of it is,
# what its training logs and says) and of latentatlas.train.families (what a training of it
# reads, runs and publishes).
FAMILIES = {name: schema.family for name, schema in MODEL_CONFIGS.items()}


def model_tag(value) -> str:
    """`model.name` picks the schema; a model block without a name is the dense VAE."""
    if isinstance(value, dict):
        return value.get("name", "dense_vae")
    return getattr(value, "name", "dense_vae")


ModelConfig = Annotated[
    Annotated[DenseVAEConfig, Tag("dense_vae")] | Annotated[ConvVAEConfig, Tag("conv_vae")]
    | Annotated[ResNetVAEConfig, Tag("resnet_vae")] | Annotated[SplitVAEConfig, Tag("split_vae")]
    | Annotated[DCGANConfig, Tag("dcgan")] | Annotated[StyleGANConfig, Tag("style_gan")]
    | Annotated[RecoderConfig, Tag("recoder")] | Annotated[ClassifierConfig, Tag("classifier")]
    | Annotated[SecondStageConfig, Tag("second_stage")],
    Discriminator(model_tag),
]


class GANConfig(Strict):
    """Adversarial training (dcgan, style_gan): the non-saturating logistic loss."""

    d_lr: float | None = Field(default=None, gt=0)
    """Discriminator's; unset: train.lr."""
    beta1: float = Field(default=0.5, ge=0, lt=1)
    """Adam's, for both networks."""
    beta2: float = Field(default=0.999, ge=0, lt=1)
    """Adam's beta2, for both networks."""
    r1_gamma: float = Field(default=0.0, ge=0)
    """R1 penalty weight on real images' gradients."""
    truncation_psi: float = Field(default=1.0, ge=0, le=1)
    """Sample grids of style_gan."""


class InvertConfig(Strict):
    """Recoder training: a stream of pairs (G(code), code) from a frozen generator."""

    generator: str | None = None
    """MLflow URI of a dcgan / style_gan model."""
    steps_per_epoch: int = Field(default=200, gt=0)
    """Minibatches of fresh generated pairs per epoch."""
    pixel_weight: float = Field(default=0.0, ge=0)
    """+ weight * MSE(G(recoded), G(code))"""
    holdout: int = Field(default=1024, gt=0)
    """Generated pairs scored after each epoch."""


class StageDataConfig(Strict):
    """What a second stage learns: the codes of a first stage's encoding (`latentatlas
    encode` of its training split)."""

    encoding: str | None = None
    """The encoding's directory."""
    codes: Literal["mu", "sample"] = "sample"
    """Posterior draws z ~ q(z|x) (one per item, afresh every epoch: the authors' way, and the
    spread the renormalisations aim at), or the posterior means."""
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    """Rows held out for val/*."""


# What `latentatlas fid` scores; the two-stage ones need a second stage (--second-stage).
SAMPLERS = ("prior", "gmm", "two_stage", "two_stage_renorm_authors", "two_stage_renorm_variable")


class FIDConfig(Strict):
    """FID / KID of a trained generator's samples, scored after training when `extractor`
    is set (`classifier-<dataset>[:version]`, or `inception` with `inception_weights`)."""

    extractor: str | None = None
    """classifier-<dataset>[:version] or inception; unset: no FID after training."""
    inception_weights: str | None = None
    """Path of the Inception weights file (pytorch-fid's or torch-fidelity's); never downloaded."""
    samples: int = Field(default=10000, gt=1)
    """Generated images, and real test images."""
    samplers: list[Literal["prior", "gmm"]] = ["prior"]
    """Where a VAE's samples come from: the prior, or a GMM fitted on its training codes."""
    gmm_components: int = Field(default=100, gt=0)
    """Components of the GMM sampler."""

    @field_validator("samplers", mode="before")
    @classmethod
    def no_renamed_sampler(cls, value):
        if isinstance(value, list) and "two_stage_renorm" in value:
            raise ValueError("two_stage_renorm is now two_stage_renorm_authors (the authors' "
                             "one scale for every variable) or two_stage_renorm_variable (a "
                             "scale per variable); both are scored by `latentatlas fid "
                             "--second-stage URI`, training scores prior and gmm")
        return value


class KLConfig(Strict):
    policy: Literal["elbo", "beta", "balanced", "split"] = "balanced"
    """elbo (Bernoulli likelihood, KL weight 1), beta (Bernoulli likelihood, KL weight
    kl.beta), balanced (Gaussian likelihood with gamma = sqrt(running MSE): KL balancing),
    split (the Split-VAE's balanced loss)."""
    beta: float | Literal["authors"] = 1.0
    """KL weight of `beta` and `balanced`; `authors`: BalancingVAE's k = (2 * image side /
    latent_dim)^2 (4 for CelebA 64x64 with latent 64, 1 for CIFAR-10 with latent 64)."""

    @field_validator("beta")
    @classmethod
    def positive_beta(cls, value):
        if value != "authors" and value <= 0:
            raise ValueError("must be positive, or `authors`")
        return value


class TrainConfig(Strict):
    epochs: int = Field(default=10, gt=0)
    """Passes over the training split (with until_settled: at most)."""
    until_settled: bool = False
    """Stop once val/mse has settled (its trend over the last 3 epochs under 1% of their mean
    per epoch: latentatlas.settling, the rule the claims judge a training by)."""
    batch_size: int = Field(default=128, gt=0)
    """Images per optimiser step, per worker."""
    lr: float = Field(default=1e-3, gt=0)
    """Adam's learning rate."""
    num_workers: int = Field(default=1, ge=1)
    """Ray Train workers (DDP); 1 without restarts runs in one process."""
    use_gpu: bool = False
    """One GPU per worker."""
    cpus_per_worker: float | None = Field(default=None, gt=0)
    """Also each worker's torch thread count. Unset: a lone CPU training takes every CPU of the
    largest node (the whole machine locally); several workers, 1 each."""
    max_failures: int = Field(default=0, ge=0)
    """Restarts of a crashed worker group from the last checkpoint (Ray Train)."""
    checkpoints_to_keep: int = Field(default=2, ge=1)
    """The newest checkpoints kept in the run folder."""
    storage_path: str | None = None
    """Ray Train run storage; default ./ray_results."""
    trace_points: int = Field(default=0, ge=0)
    """> 0: record the codes of one validation image per class at this many moments of the first
    epoch (trajectories.png; the seed's 2-D picture)"""

    @property
    def single_worker(self) -> bool:
        """One worker, no restarts to manage, a local run folder: the loop runs in one
        process (a Ray task, or a Tune trial's own), without Ray Train's controller and
        worker group (~10 s of start-up, bench/RESULTS.md). Same loop, seeds, checkpoints
        and records."""
        return (self.num_workers == 1 and self.max_failures == 0
                and "://" not in (self.storage_path or ""))


class ExperimentConfig(Strict):
    name: str = "vae"
    """The MLflow run's name, and the start of its run folder's."""
    seed: int = 0
    """Seeds the weights, the data order and all noise (a resume is exact)."""
    data: DataConfig = DataConfig()
    """What the model learns from."""
    model: ModelConfig = DenseVAEConfig()
    """One of the model blocks below, picked by its name (default dense_vae)."""
    kl: KLConfig = KLConfig()
    """A VAE's loss."""
    gan: GANConfig = GANConfig()
    """A GAN's training."""
    invert: InvertConfig = InvertConfig()
    """A recoder's training."""
    second_stage: StageDataConfig = StageDataConfig()
    """A second stage's data."""
    fid: FIDConfig = FIDConfig()
    """Sample quality scored after training."""
    train: TrainConfig = TrainConfig()
    """The training loop and its resources."""

    @model_validator(mode="after")
    def recoder_names_its_generator(self):
        if self.model.name == "recoder" and not self.invert.generator:
            raise ValueError("a recoder needs invert.generator (the MLflow URI of a dcgan or "
                             "style_gan model, e.g. runs:/<id>/model)")
        if self.model.name == "second_stage":
            if not self.second_stage.encoding:
                raise ValueError("a second stage needs second_stage.encoding (the directory of "
                                 "a first stage's encoding of its training split)")
            if self.kl.policy != "balanced":
                raise ValueError("a second stage learns unbounded codes: it needs kl.policy "
                                 f"balanced (Gaussian likelihood), not {self.kl.policy}")
            if self.kl.beta == "authors":
                raise ValueError("kl.beta authors: k = (2 * image side / latent_dim)^2 weighs "
                                 "a first stage's KL; a second stage learns codes, not images")
        if self.kl.beta == "authors" and self.family != "vae":
            raise ValueError(f"kl.beta authors: weighs a VAE's KL; a {self.model.name} has none")
        if self.kl.beta == "authors" and self.kl.policy not in ("beta", "balanced"):
            raise ValueError(f"kl.beta authors: kl.policy {self.kl.policy} has no KL weight "
                             "(use beta or balanced)")
        if self.fid.extractor and not MODEL_FAMILIES[self.family].generates:
            raise ValueError(f"fid.extractor: a {self.model.name} does not generate images")
        if "gmm" in self.fid.samplers and not (MODEL_FAMILIES[self.family].encodes
                                                and MODEL_FAMILIES[self.family].generates):
            raise ValueError(f"fid.samplers: gmm fits a VAE's codes; a {self.model.name} has "
                             "no encoder")
        return self

    @property
    def family(self) -> str:
        """vae, gan, recoder, classifier or second_stage (latentatlas.families): what the
        model learns and how it is trained."""
        return FAMILIES[self.model.name]


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=c` -> (['a', 'b'], c) with c parsed as YAML (numbers, lists, booleans)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_path(raw: dict, path: list[str], value: Any) -> dict:
    """A copy of `raw` with raw[path[0]][path[1]]... = value (missing levels created)."""
    raw = dict(raw)
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        child = dict(child) if isinstance(child, dict) else {}
        node[part] = child
        node = child
    node[path[-1]] = value
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        raw = set_path(raw, *parse_override(item))
    return dict(raw)


def validate(raw: Any, source: str, model: type[BaseModel] = ExperimentConfig):
    """Validate a raw mapping; the first problem becomes one line naming the key path."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        # Drop the union's tag from the path: users write `model.hidden`, not
        # `model.dense_vae.hidden`.
        where = ".".join(str(p) for p in err["loc"] if p not in MODEL_CONFIGS) or "(top level)"
        plain = err["type"] in ("missing", "value_error")
        got = "" if plain else f" (got {err['input']!r})"
        more = f"; {len(e.errors()) - 1} more problem(s)" if len(e.errors()) > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")  # a validator's own sentence
        raise UserError(f"{source}: {where}: {msg}{got}{more}") from None


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{line} is not valid YAML ({getattr(e, 'problem', e)})") from None
    return raw if raw is not None else {}


def load_config(path: str | Path, overrides: list[str] = (), model=ExperimentConfig):
    raw = apply_overrides(read_yaml(path), list(overrides))
    return validate(raw, str(path), model)
