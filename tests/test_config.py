import pytest
import torch
from torch import nn

from latentatlas.config import (
    ExperimentConfig,
    apply_overrides,
    load_config,
    read_yaml,
    validate,
)
from latentatlas.errors import UserError
from latentatlas.models import build_model


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    p = write(tmp_path, "model:\n  name: dense_vae\n  hiden: [1]\n")
    with pytest.raises(UserError, match=r"c\.yaml: model\.hiden: Extra inputs"):
        load_config(p)


def test_wrong_type_names_key_and_value(tmp_path):
    p = write(tmp_path, "train:\n  epochs: many\n")
    with pytest.raises(UserError, match=r"train\.epochs: .*integer.*'many'"):
        load_config(p)


def test_unknown_model_and_policy_are_rejected(tmp_path):
    with pytest.raises(UserError, match=r"model: .*'transformer'.*'dense_vae', 'conv_vae'"):
        load_config(write(tmp_path, "model: {name: transformer}\n"))
    with pytest.raises(UserError, match=r"kl\.policy"):
        load_config(write(tmp_path, "kl: {policy: cyclic}\n"))


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(UserError, match=r"line 2"):
        load_config(write(tmp_path, "a: 1\nb: c: d\n"))


def test_overrides_parse_yaml_values_and_create_paths():
    raw = apply_overrides({"train": {"epochs": 3}}, ["train.epochs=7", "model.hidden=[8, 4]",
                                                    "kl.policy=beta", "train.use_gpu=true"])
    cfg = validate(raw, "x")
    assert cfg.train.epochs == 7 and cfg.model.hidden == [8, 4]
    assert cfg.kl.policy == "beta" and cfg.train.use_gpu is True


def test_override_without_equals_is_an_error():
    with pytest.raises(UserError, match="key=value"):
        apply_overrides({}, ["train.epochs"])


def linear_widths(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("hidden,latent", [([256, 64, 32], 16), ([256, 64, 16], 3)])
def test_seed_dense_architectures_are_expressible(tmp_path, hidden, latent):
    text = f"model:\n  name: dense_vae\n  hidden: {hidden}\n  latent_dim: {latent}\n"
    cfg = load_config(write(tmp_path, text))
    model = build_model(cfg.model, (1, 28, 28))
    widths = [784, *hidden]
    assert linear_widths(model.encoder) == list(zip(widths[:-1], widths[1:], strict=True))
    assert (model.mu.in_features, model.mu.out_features) == (hidden[-1], latent)
    back = [latent, *reversed(hidden), 784]
    assert linear_widths(model.decoder) == list(zip(back[:-1], back[1:], strict=True))


def test_defaults_are_valid_and_the_shipped_configs_load():
    from pathlib import Path

    ExperimentConfig()
    for path in (Path(__file__).parent.parent / "jobs" / "configs").glob("*.yaml"):
        if path.name.startswith("sweep"):
            continue
        if "steps" in read_yaml(path):  # a declared job: every train step's config loads
            from jobs.graph import load_job, settings

            for name, step in load_job(path).steps.items():
                if step.kind == "train":
                    inputs = [f"{role}=runs:/0/model" for role in step.inputs]  # by the job
                    raw = load_config(path.parent / step.config, inputs).model_dump()
                    cfg = ExperimentConfig.model_validate(settings(step, raw))
                    assert cfg.family in ("vae", "gan", "classifier", "recoder",
                                          "second_stage"), name
            continue
        if "recoder" in path.name:  # it names its generator on the command line
            with pytest.raises(UserError, match="a recoder needs invert.generator"):
                load_config(path)
            assert load_config(path, ["invert.generator=runs:/0/model"]).family == "recoder"
        elif "second_stage" in path.name:  # it names its first stage's codes likewise
            with pytest.raises(UserError, match="a second stage needs second_stage.encoding"):
                load_config(path)
            assert load_config(path, ["second_stage.encoding=enc"]).family == "second_stage"
        else:
            assert load_config(path).family in ("vae", "gan", "classifier")


def test_models_reconstruct_the_input_shape():
    cfg = ExperimentConfig.model_validate({"model": {"name": "conv_vae", "channels": [8, 16]}})
    for shape in [(1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 8, 8)]:
        model = build_model(cfg.model, shape)
        x_hat, mu, logvar = model(torch.rand(2, *shape))
        assert x_hat.shape == (2, *shape) and mu.shape == logvar.shape == (2, 16)
        assert 0 <= x_hat.min() and x_hat.max() <= 1


def test_without_posterior_sampling_the_forward_pass_is_deterministic():
    cfg = ExperimentConfig.model_validate({"model": {"sample_posterior": False}})
    model = build_model(cfg.model, (1, 28, 28))
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model(x)[0], model(x)[0])
    assert torch.equal(model(x)[0], model.decode(model.encode(x)[0]))


def test_every_registry_of_model_families_derives_from_one_list():
    """The model schemas, the training hooks and the families' table (what a model of each
    is, what it logs, its runs columns) name the same families; a sweep's metrics are what
    the families log."""
    from latentatlas import families
    from latentatlas.config import FAMILIES as SCHEMA_FAMILIES
    from latentatlas.train.families import FAMILIES as TRAINING
    from latentatlas.tune.spec import FAMILY_METRICS, METRICS

    assert set(SCHEMA_FAMILIES.values()) == set(families.FAMILIES) == set(TRAINING)
    assert FAMILY_METRICS == {n: f.logs for n, f in families.FAMILIES.items()}
    assert set(METRICS.__args__) == {m for f in families.FAMILIES.values() for m in f.logs}
    # what a model is decides what a config may ask of it
    for name, family in families.FAMILIES.items():
        schema = next(n for n, f in SCHEMA_FAMILIES.items() if f == name)
        raw = {"model": {"name": schema}, "fid": {"extractor": "inception"}}
        if schema == "second_stage":
            raw |= {"second_stage": {"encoding": "x"}, "kl": {"policy": "balanced"}}
        if schema == "recoder":
            raw |= {"invert": {"generator": "runs:/x/model"}}
        if family.generates:
            validate(raw, "t")
        else:
            with pytest.raises(UserError, match="does not generate images"):
                validate(raw, "t")
