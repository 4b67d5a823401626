"""`kind: encode`: a model's codes of one split of the study's dataset, as a Parquet
encoding (a generator's through its recoder, then gradient steps)."""

from __future__ import annotations

from pydantic import Field

from jobs.kinds import Context, Encoding, Model, Role, Step, StepKind, register
from latentatlas.config import Strict


class EncodeOptions(Strict):
    split: str = "test"
    """The dataset split encoded."""
    actors: int | None = Field(default=None, gt=0)
    """Ray Data actors (unset: in the job's process when small, else the cluster's CPUs)."""
    refine_steps: int = Field(default=0, ge=0)
    """Gradient steps after a generator's recoder."""


@register
class Encode(StepKind):
    name = "encode"
    Options = EncodeOptions
    inputs = {"model": Role(Model, help="a VAE, or a generator with its recoder"),
              "recoder": Role(Model, required=False, help="a generator's recoder")}
    output = Encoding

    def run(self, ctx: Context, step: Step, inputs: dict) -> Encoding:
        from latentatlas.encode.pipeline import encode
        from latentatlas.inversion import NO_REFINEMENT, Refinement

        o, a = step.options, ctx.args
        model, recoder = inputs["model"], inputs.get("recoder")
        folder = model.label if o.split == "test" else f"{model.label}-{o.split}"
        refine = Refinement(o.refine_steps) if o.refine_steps else NO_REFINEMENT
        enc = encode(model.address, ctx.dataset, o.split, ctx.encoding_root / folder,
                     limit=a.limit, data_path=a.data_path, tracking_uri=a.tracking_uri,
                     actors=o.actors, recoder_uri=recoder and recoder.address, refine=refine)
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
