"""Presets, YAML files and `key=value` overrides → a validated `Config`, errors in the user's words.

A preset is a YAML mapping in `pipeline/configs/` whose sections mirror `pipeline.config`'s
dataclasses. Overrides use dotted paths (`decode.size=112`, `datasets.youcook.root=/data/yc`);
a value is read as YAML (numbers, booleans, lists such as
`finetune.sweep=[{strategy: median}, {k: 10}]`, mappings) unless its key takes text, which keeps
the value as typed (`finetune.optim.amp=off` stays "off"). Every problem is named
in one line: `<file>: decode.backend: 'opencv' is not one of ffmpeg, decord`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import TypeAdapter, ValidationError

from pipeline.config import Config, ConfigError

PRESET_DIR = Path(__file__).parents[1] / "configs"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def preset_path(name_or_path: str) -> Path:
    """A preset name (`demo`) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        known = ", ".join(preset_names())
        raise ConfigError(f"unknown preset {name_or_path!r}; presets: {known}")
    return preset


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """Load a preset or YAML file, apply `key=value` overrides, and validate every key."""
    path = preset_path(name_or_path)
    with path.open() as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        found = type(raw).__name__
        raise ConfigError(f"{path}: expected a mapping at the top level, found {found}")
    raw.setdefault("name", path.stem)
    for override in overrides:
        apply_override(raw, override)
    source = str(path) + (f" (with overrides {list(overrides)})" if overrides else "")
    return validate_config(raw, source)


_CONFIG = TypeAdapter(Config)


def validate_config(raw: dict[str, Any], source: str) -> Config:
    """`raw` (YAML data) as a Config; every problem is named in one ConfigError."""
    try:
        return _CONFIG.validate_python(raw)
    except ValidationError as error:
        problems = "; ".join(describe_error(item) for item in error.errors())
        raise ConfigError(f"{source}: {problems}") from None


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set the dotted key of `key=value` in the raw YAML data (validated afterwards)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form key=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = _override_value(parts, text)


def _override_value(parts: Sequence[str], text: str) -> Any:
    """The value as YAML reads it (a number, a boolean, a list, a mapping), unless the key takes
    text: then as typed, so `finetune.optim.amp=off` stays "off" (YAML would read a boolean)
    and `synth.out_dir={artifacts}/x` stays a path (YAML would read a broken mapping)."""
    try:
        hint = _type_at(parts)
    except (KeyError, TypeError):  # an unknown key: validation names it
        return text
    choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
    if hint is str or (choices and all(isinstance(choice, str) for choice in choices)):
        return text
    if not text.strip():
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # validation says what the key wants


# ---------------------------------------------------------------- errors in the user's words


def describe_error(item: Any) -> str:
    """One pydantic error as `dotted.key: what is wrong` (the bad value and what is allowed)."""
    location = tuple(item["loc"])
    kind, value = item["type"], item.get("input")
    context = item.get("ctx") or {}
    if kind == "unexpected_keyword_argument":
        known = ", ".join(field.name for field in dataclasses.fields(_type_at(location[:-1])))
        return f"{dotted(location)}: unknown key; known keys here: {known}"
    if kind in ("missing", "missing_argument"):
        return f"{dotted(location)}: missing key"
    where = dotted(location) or "<top level>"
    if kind == "value_error":
        return f"{where}: {context.get('error', item['msg'])}"
    if kind == "literal_error":
        choices = typing.get_args(_type_at(location))
        allowed = ", ".join(str(choice) if choice else '""' for choice in choices)
        return f"{where}: {value!r} is not one of {allowed}"
    if kind in _BOUNDS:
        word, name = _BOUNDS[kind]
        return f"{where}: {value!r} is {word} {context[name]}"
    if kind in _KINDS:
        return f"{where}: {value!r} is not {_KINDS[kind]}"
    return f"{where}: {value!r}: {item['msg']}"


_BOUNDS = {
    "greater_than_equal": ("below the minimum", "ge"),
    "greater_than": ("not above", "gt"),
    "less_than_equal": ("above the maximum", "le"),
    "less_than": ("not below", "lt"),
    "multiple_of": ("not a multiple of", "multiple_of"),
}
_KINDS = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping (a section of keys)",
    "dataclass_type": "a mapping (a section of keys)",
    "dataclass_args_type": "a mapping (a section of keys)",
}


def dotted(location: Sequence[str | int]) -> str:
    """("finetune", "sweep", 0, "k") → "finetune.sweep[0].k"."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _type_at(location: Sequence[str | int]) -> Any:
    """The schema's type at a location: a section class, a field's type or a list's item type."""
    hint: Any = Config
    for part in location:
        origin = typing.get_origin(hint)
        if dataclasses.is_dataclass(hint):
            hint = typing.get_type_hints(hint, include_extras=False)[part]
        elif origin is dict:
            hint = typing.get_args(hint)[1]
        elif origin is tuple:
            hint = typing.get_args(hint)[0]
    return hint
