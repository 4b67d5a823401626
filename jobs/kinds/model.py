"""`kind: model`: a model from outside the study, named once (its `model` input: runs:/...,
models:/..., a folder, module:function, a pretrained `diffusers:` or `stylegan2:` address)
so that every step reading it names this step, and `--set STEP.inputs.model=ADDRESS` gives
it at run time."""

from __future__ import annotations

from jobs.kinds import Context, Model, Role, Step, StepKind, register


@register
class ModelKind(StepKind):
    name = "model"
    inputs = {"model": Role(Model, help="the model, from outside the study")}
    output = Model

    def run(self, ctx: Context, step: Step, inputs: dict) -> Model:
        model = inputs["model"]
        ctx.say(f"{step.name}: {model.address} ({model.model_name or model.family})")
        return model
