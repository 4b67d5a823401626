"""A verb's options from its step kind's `Options` model: one flag per field, the field's
docstring as its help, its type, choices and bounds as the model says, and the parsed flags
validated into the same model a study step gets. A verb and its step then call one function
with one options object (jobs/kinds/*). A verb adds flags of its own only for what a step
takes as inputs (the encodings, the models) or leaves to the study (GPUs, actors)."""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal


def flag_of(name: str, flags: dict[str, str]) -> str:
    return flags.get(name, "--" + name.replace("_", "-"))


def add_options(p: argparse.ArgumentParser, options: type, *, flags: dict[str, str] | None = None,
                skip: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> None:
    """A flag per field of the pydantic model `options` (but `skip`): `--field-name`, or the
    name `flags` gives it; `defaults` are what an unset field means to the verb, said in the
    help (the step takes them from its inputs or the study)."""
    flags, defaults = flags or {}, defaults or {}
    for name, field in options.model_fields.items():
        if name in skip:
            continue
        kind, many, choices = plain_type(field.annotation)
        flag = flag_of(name, flags)
        shown = defaults.get(name, field.default)
        said = [] if shown is None or shown is False else \
            [f"default {', '.join(map(str, shown))}" if many else
             f"default {shown:g}" if isinstance(shown, float) else f"default {shown}"]
        help_text = " ".join((field.description or "").split()).rstrip(".")
        if many:
            said.insert(0, "repeatable")
        if said:
            help_text += f" ({'; '.join(said)})"
        kwargs: dict[str, Any] = {"dest": name, "default": None,
                                  "help": (help_text + ".").replace("%", "%%")}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=kind, choices=choices, metavar=None if choices else
                          flag.lstrip("-").replace("-", "_").upper())
            if many:
                kwargs["action"] = "append"
        p.add_argument(flag_of(name, flags), **kwargs)


def plain_type(annotation) -> tuple[type, bool, list | None]:
    """(element type, whether a list, its choices) of a field's annotation: `int | None`,
    `list[float] | None`, `Literal["a", "b"]`."""
    many = False
    args = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is \
        typing.Union else [annotation]
    (inner,) = args
    if typing.get_origin(inner) in (list, tuple):
        many, inner = True, typing.get_args(inner)[0]
    if typing.get_origin(inner) is Literal:
        choices = list(typing.get_args(inner))
        return type(choices[0]), many, choices
    return inner, many, None


def options_of(args: argparse.Namespace, options: type, *, flags: dict[str, str] | None = None,
               **given):
    """The parsed flags (those set, and `given`) as the model `options`, validated; a value
    out of bounds is one line naming its flag."""
    from pydantic import ValidationError

    from latentatlas.errors import UserError

    values = {name: getattr(args, name) for name in options.model_fields
              if getattr(args, name, None) is not None}
    try:
        return options.model_validate({**values, **given})
    except ValidationError as e:
        err = e.errors()[0]
        said = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a rule between options says which
            raise UserError(said) from None
        name = str(err["loc"][0])
        raise UserError(f"{flag_of(name, flags or {})} {values.get(name, '')}: {said}") \
            from None
