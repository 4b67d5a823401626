"""The documentation's generated references, so that they cannot drift from the code: every
verb's options read from its argparse parser, every config key from the pydantic schemas
(type, default, constraint, help). `make docs` writes them; a test fails when the files in
docs/reference/ differ from what this module generates.

    python -m jobs.reference docs/reference
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
import typing
from pathlib import Path

from jobs.cli import VERBS

SUPPRESSED = argparse.SUPPRESS


class Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def verb_parser(verb: str) -> argparse.ArgumentParser:
    """The parser `latentatlas VERB` builds, caught as it starts to parse: the verbs build
    their parsers inside `main`, and this reads them without running anything."""
    module = importlib.import_module(f"jobs.{verb.replace('-', '_')}")
    original = argparse.ArgumentParser.parse_known_args

    def capture(self, args=None, namespace=None):
        raise Captured(self)

    argparse.ArgumentParser.parse_known_args = capture
    try:
        module.main([])
    except Captured as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_known_args = original
    raise RuntimeError(f"latentatlas {verb}: main() returned without parsing its arguments")


def documented_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not isinstance(a, argparse._HelpAction) and a.help != SUPPRESSED]


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def action_row(action: argparse.Action) -> str:
    if action.option_strings:
        flags = ", ".join(action.option_strings)
        if action.nargs != 0:
            metavar = action.metavar or action.dest.upper()
            metavar = " ".join(metavar) if isinstance(metavar, tuple) else metavar
            flags += f" {metavar}"
    else:
        flags = action.metavar or action.dest
    default = action.default
    shown = "" if default in (None, False, [], SUPPRESSED) or action.nargs == 0 else \
        f"`{default}`"
    if action.choices:
        shown += (" " if shown else "") + "one of " + ", ".join(f"`{c}`" for c in action.choices)
    help_text = (action.help or "") % {"default": default, "prog": "", "dest": action.dest} \
        if action.help and "%(" in action.help else (action.help or "")
    return f"| `{cell(flags)}` | {cell(shown)} | {cell(help_text)} |"


def one_line_usage(parser: argparse.ArgumentParser) -> str:
    """The usage line at any terminal width (argparse wraps at the terminal's)."""
    formatter = argparse.HelpFormatter(parser.prog, width=100_000)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return " ".join(formatter.format_help().split())


def cli_reference() -> str:
    lines = ["# Command-line reference", "",
             "Generated from each verb's argparse parser by `jobs/reference.py` (`make docs`); "
             "`latentatlas VERB --help` prints the same.", "",
             "| verb | what it does |", "| --- | --- |"]
    lines += [f"| [`{verb}`](#{verb}) | {cell(text)} |" for verb, text in VERBS.items()]
    for verb in VERBS:
        parser = verb_parser(verb)
        usage = one_line_usage(parser)
        lines += ["", f"## {verb}", "", "```text", usage.removeprefix("usage: "), "```", ""]
        if parser.description:
            lines += [" ".join(parser.description.split()), ""]
        lines += ["| option | default | help |", "| --- | --- | --- |"]
        lines += [action_row(a) for a in documented_actions(parser)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- config schemas

def type_name(annotation) -> str:
    """A field's type as a YAML writer reads it."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation)]
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None)) + \
            (" or null" if type(None) in args else "")
    if origin in (list, tuple, dict):
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    named = getattr(annotation, "model_fields", {}).get("name")
    if named is not None and isinstance(named.default, str):  # a model block, by its name
        return f"`{named.default}` block"
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


CONSTRAINTS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "length >=",
               "max_length": "length <=", "pattern": "matches"}


def constraint(field) -> str:
    found = []
    for meta in field.metadata:
        for key, sign in CONSTRAINTS.items():
            value = getattr(meta, key, None)
            if value is not None:
                found.append(f"{sign} `{value}`")
    for arg in typing.get_args(field.annotation):  # list[Annotated[int, Field(gt=0)]]
        for inner in typing.get_args(arg)[1:]:
            for meta in getattr(inner, "metadata", [inner]):
                for key, sign in CONSTRAINTS.items():
                    value = getattr(meta, key, None)
                    if value is not None:
                        found.append(f"items {sign} `{value}`")
    return ", ".join(found)


def schema_rows(model: type, prefix: str) -> list[str]:
    from pydantic import BaseModel

    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            rows += schema_rows(field.annotation, f"{key}.")  # a section: its keys, dotted
            continue
        default = field.get_default(call_default_factory=True)
        if hasattr(default, "model_dump"):
            default = default.model_dump()
        shown = "" if field.is_required() else f"`{default!r}`".replace("'", "")
        rows.append(f"| `{key}` | {type_name(field.annotation)} | {cell(shown)} | "
                    f"{cell(constraint(field))} | {cell(field.description or '')} |")
    return rows


def schema_section(title: str, model: type, prefix: str, text: str) -> list[str]:
    return ["", f"## {title}", "", text, "",
            "| key | type | default | constraint | help |", "| --- | --- | --- | --- | --- |",
            *schema_rows(model, prefix)]


def config_schemas() -> list[tuple[str, type, str, str]]:
    """(title, schema, key prefix, what it is) of every YAML the platform reads."""
    from jobs.graph import JobSpec, StepSpec
    from latentatlas import config as c
    from latentatlas.tune.spec import Domain, SweepConfig

    experiment = [("experiment", c.ExperimentConfig, "",
                   "An experiment YAML (`latentatlas train CONFIG`, a sweep's `base:`, a "
                   "train step of the main job). `model:` takes one of the model blocks "
                   "below, picked by its `name` (default `dense_vae`).")]
    models = [(f"model: {name}", schema, "model.", (schema.__doc__ or "").strip()
               if schema.__doc__ and not schema.__doc__.startswith(schema.__name__ + "(")
               else f"`model.name: {name}`.")
              for name, schema in c.MODEL_CONFIGS.items()]
    return [*experiment, *models,
            ("sweep", SweepConfig, "", "A sweep YAML (`latentatlas sweep CONFIG`)."),
            ("sweep space entry", Domain, "space.KEY.",
             "One swept key of `space:`: exactly one of these."),
            ("main job", JobSpec, "", "The main job's YAML (`latentatlas run --config`)."),
            ("main job step", StepSpec, "steps.NAME.", "One step of `steps:`."),
            *kind_schemas()]


def kind_schemas() -> list[tuple[str, type, str, str]]:
    """A section per shipped step kind with options of its own: the keys of its `set:`
    (the train kind's are its experiment config's, above)."""
    from pydantic import BaseModel

    from jobs.kinds import BUILTIN, KINDS, registered

    registered(())
    shipped = sorted((BUILTIN.index(module), name, kind) for name, kind in KINDS.items()
                     if (module := kind.__module__.removeprefix("jobs.kinds.")) in BUILTIN)
    return [(f"step kind: {name}", kind.Options, "steps.NAME.set.",
             f"`kind: {name}`: the keys of its `set:`; where a verb does the same work, its "
             "flags (`--key-name`).")
            for _, name, kind in shipped
            if isinstance(kind.Options, type) and issubclass(kind.Options, BaseModel)
            and kind.Options.model_fields]


def config_reference() -> str:
    lines = ["# Configuration reference", "",
             "Generated from the pydantic schemas by `jobs/reference.py` (`make docs`). Keys "
             "are dotted as `--set KEY=VALUE` takes them; a YAML nests them. An unknown key "
             "is an error naming it."]
    for title, model, prefix, text in config_schemas():
        lines += schema_section(title, model, prefix, text)
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    return {"cli.md": cli_reference(), "config.md": config_reference()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.reference", description=__doc__)
    p.add_argument("folder", type=Path, help="where to write cli.md and config.md")
    args = p.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    for name, text in pages().items():
        tmp = args.folder / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(args.folder / name)
        print(f"wrote {args.folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
