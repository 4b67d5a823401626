"""A verb and the step kind doing the same work take one options model: each field of the
kind's `Options` is a flag of the verb (its help the field's docstring), and the flags parse
into the same validated model the step gets (jobs/options.py)."""

import importlib

import pytest

from jobs.cli import VERBS
from jobs.kinds import KINDS, registered
from jobs.reference import verb_parser

# verb -> the module and class of its kind's options (train's is its config file and --set)
OPTIONS = {"stats": "stats.StatsOptions", "sectors": "sectors.SectorOptions",
           "support-set": "sectors.SupportSetOptions", "relocate": "relocate.RelocateOptions",
           "range": "range.RangeOptions", "fid": "fid.FidOptions",
           "regularisation": "regularisation.RegularisationOptions",
           "sparsity": "sparsity.SparsityOptions", "encode": "encode.EncodeOptions",
           "translate-study": "translate.TranslateOptions"}


def options_class(verb: str):
    module, name = OPTIONS[verb].split(".")
    return getattr(importlib.import_module(f"jobs.kinds.{module}"), name)


def test_every_kind_with_a_verb_is_checked_here():
    registered(())
    assert {k for k in KINDS if k in VERBS} - {"train"} <= set(OPTIONS)
    assert {kind.Options for kind in KINDS.values()} >= {options_class(v) for v in OPTIONS}


@pytest.mark.parametrize("verb", sorted(OPTIONS))
def test_a_verbs_flags_are_its_kinds_options(verb):
    options = options_class(verb)
    module = importlib.import_module(f"jobs.{verb.replace('-', '_')}")
    flags, skip = getattr(module, "FLAGS", {}), getattr(module, "STUDY_ONLY", ())
    actions = {a.dest: a for a in verb_parser(verb)._actions}
    for name, field in options.model_fields.items():
        if name in skip:
            assert name not in actions, f"{verb}: {name} is the study's alone"
            continue
        action = actions[name]
        assert action.option_strings == [flags.get(name, "--" + name.replace("_", "-"))]
        doc = " ".join(field.description.split()).rstrip(".")
        assert action.help.replace("%%", "%").startswith(doc), (verb, name)
        assert action.default is None  # unset flags leave the model's default


def test_parsed_flags_are_the_model_a_step_gets():
    """Non-default values of every kind of field (int, float, literal, list, optional)
    reach the model as a study's `set:` would give them."""
    from jobs.kinds.range import RangeOptions
    from jobs.kinds.translate import TranslateOptions
    from jobs.options import options_of
    from latentatlas.errors import UserError

    def parsed(verb, argv, **extra):
        module = importlib.import_module(f"jobs.{verb.replace('-', '_')}")
        args = verb_parser(verb).parse_args(argv)
        return options_of(args, options_class(verb), flags=getattr(module, "FLAGS", {}),
                          **extra)

    got = parsed("range", ["--generator", "g", "--data", "d:test", "--support-from", "e",
                           "--refine", "7", "--refine-loss", "l1", "--quantile", "0.9",
                           "--k", "3", "--exclude", "Wearing_Hat=1"])
    assert got == RangeOptions(refine_steps=7, refine_loss="l1", quantile=0.9, k=3,
                               exclude="Wearing_Hat=1")
    got = parsed("translate-study", ["a", "b", "--budget", "0.5", "--budget", "2",
                                     "--anchor", "fps", "--translator", "ols"])
    assert got == TranslateOptions(budgets=[0.5, 2.0], anchors=["fps"], translators=["ols"])
    with pytest.raises(UserError, match=r"^--quantile 1.5: Input should be less than 1$"):
        parsed("range", ["--generator", "g", "--data", "d:test", "--support-from", "e",
                         "--quantile", "1.5"])
