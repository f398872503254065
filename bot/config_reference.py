"""The configuration reference, generated from the settings model so it cannot drift from it.

``incident-bot config reference`` prints it as Markdown; the README carries the same text between
``<!-- config-reference:start -->`` and ``<!-- config-reference:end -->`` and a test checks they agree.
Each setting is listed with its YAML path, type, default and the ``#:`` comment written above it in
``bot/config.py`` (or the first line of its section's docstring); the environment variables that win
over the file and the secrets (environment only) are listed after.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bot.config import _PLAIN_ENV, _SECRET_ENV, Secrets, Settings

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
PIPE = "\\|"  # a | inside a Markdown table cell
_COMMENT = re.compile(r"^\s*#:\s?(.*)$")
_FIELD = re.compile(r"^\s*(\w+)\s*:")


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """``#:`` comments written right above each field of ``model`` (and of its bases)."""
    found: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            comment = _COMMENT.match(line)
            if comment:
                pending.append(comment.group(1).strip())
                continue
            field = _FIELD.match(line)
            if field and pending:
                found[field.group(1)] = " ".join(pending)
            pending = []
    return found


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args if a is not type(None)) + (
            " (optional)" if type(None) in args else ""
        )
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type(args[1])}" if len(args) == 2 else "map"
    if origin is typing.Annotated:
        return _type(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is timedelta:
        return "duration (`90s`, `10m`, `2h`)"
    if annotation is date:
        return "date"
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel) or value in ({}, []):
            return ""
    else:
        value = info.default
    if value is PydanticUndefined:
        return "required"
    if value is None or value == "":
        return ""
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        return f"`{seconds // 60}m`" if seconds % 60 == 0 else f"`{seconds}s`"
    return f"`{value}`"


def _rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    notes = _comments(model)
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        path = f"{prefix}{name}"
        annotation = info.annotation
        inner = _section(annotation)
        yield path, _type(annotation), _default(info), _tidy(notes.get(name, "")) or _doc(inner)
        if inner is not None:
            container = typing.get_origin(annotation) in (dict, list) or _wrapped_container(annotation)
            yield from _rows(inner, f"{path}.{'*.' if container else ''}")


def _wrapped_container(annotation: Any) -> bool:
    return any(typing.get_origin(a) in (dict, list) for a in typing.get_args(annotation))


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (directly, optionally, or as the values of a list or map)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section(arg)
        if found is not None:
            return found
    return None


def _doc(model: type[BaseModel] | None) -> str:
    if model is None or not model.__doc__:
        return ""
    return _tidy(model.__doc__.strip().split("\n\n")[0])


def _tidy(text: str) -> str:
    """One line of Markdown: whitespace collapsed, reST double backticks made single."""
    return " ".join(text.split()).replace("``", "`")


def reference() -> str:
    """The Markdown reference (without the README markers)."""
    out = [
        "| setting | type | default | what it is |",
        "|---|---|---|---|",
    ]
    for path, kind, default, note in _rows(Settings, ""):
        cell = note.replace("|", PIPE)
        out.append(f"| `{path}` | {kind} | {default} | {cell} |")
    out += [
        "",
        "Environment variables that win over the file: `DATABASE_URL` (`database_url`), `INCIDENT_BOT_CONFIG`"
        " (which file), " + ", ".join(f"`{var}` (`{section}.{key}`)" for section, key, var in _PLAIN_ENV) + ".",
        "",
        "Secrets come from the environment only: "
        + ", ".join(f"`{_SECRET_ENV[name]}`" for name in Secrets.model_fields)
        + ".",
    ]
    return "\n".join(out) + "\n"


def in_readme(readme: str) -> str | None:
    """The reference as the README carries it (between the markers), or None when they are missing."""
    if START not in readme or END not in readme:
        return None
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"
