"""`kind: encode`: a model's codes of one split of the study's dataset, as a Parquet
encoding (a generator's through its recoder, then gradient steps)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jobs.kinds import Context, Encoding, Model, Role, Step, StepKind, register
from latentatlas.config import Strict


class RefineOptions(Strict):
    """How a generator's codes of images are found after the first guess."""

    refine_steps: int = Field(default=0, ge=0)
    """Adam steps of gradient inversion per image after the first guess (a recoder's; without
    one, the mean code's)."""
    refine_lr: float = Field(default=0.05, gt=0)
    """Their learning rate."""
    refine_loss: Literal["mse", "l1", "bce"] = "mse"
    """Their pixel loss."""

    def refinement(self):
        from latentatlas.inversion import Refinement

        return Refinement(self.refine_steps, self.refine_lr, self.refine_loss)


class EncodeOptions(RefineOptions):
    split: str = "test"
    """The dataset split encoded."""
    batch_size: int = Field(default=1024, gt=0)
    """Images per batch."""
    actors: int | None = Field(default=None, gt=0)
    """Ray Data actors (unset: in the command's process when small, else the cluster's CPUs
    or GPUs)."""


@register
class Encode(StepKind):
    name = "encode"
    Options = EncodeOptions
    inputs = {"model": Role(Model, help="a VAE, or a generator with its recoder"),
              "recoder": Role(Model, required=False, help="a generator's recoder")}
    output = Encoding

    def run(self, ctx: Context, step: Step, inputs: dict) -> Encoding:
        from latentatlas.encode.pipeline import encode

        o, a = step.options, ctx.args
        model, recoder = inputs["model"], inputs.get("recoder")
        folder = model.label if o.split == "test" else f"{model.label}-{o.split}"
        enc = encode(model.address, ctx.dataset, o.split, ctx.encoding_root / folder,
                     limit=a.limit, data_path=a.data_path, tracking_uri=a.tracking_uri,
                     batch_size=o.batch_size, actors=o.actors,
                     recoder_uri=recoder and recoder.address, refine=o.refinement())
        out = Encoding(label=model.label, address=str(enc.path), setting=model.setting,
                       components=[*(recoder.settings if recoder else []), *model.components],
                       model_name=model.model_name, rows=enc.meta.rows,
                       latent_dim=enc.latent_dim)
        if recoder:
            real = float(enc.arrays(["inversion_mse"])["inversion_mse"].mean())
            own = recoder.metrics.get("inversion/pixel_mse")
            beside = f" vs {own:.4f} on its own samples (recoder alone)" if own else ""
            ctx.say(f"inverted the {o.split} split: regeneration mse {real:.4f} (recoder + "
                    f"{o.refine_steps} gradient steps){beside}")
            out.summary = [{"step": f"invert {o.split} split", "run_id": model.run_id,
                            "refine_steps": o.refine_steps, "real_pixel_mse": real}]
        return out
