"""Generic validation: walk a raw mapping along the schema's dataclasses, type and range-check every
value, and name a wrong key with the nearest valid one. Knows no particular key (see `rules` for
rules across keys) and fills in nothing: an absent key takes the dataclass default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import typing
from typing import Any, Literal, Union

from ...errors import ConfigError
from .schema import TRANSFORM_OPS, Config, TransformOp

QUOTE_LIMIT = 80  # characters of a value an error message may quote

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 3, 6, 6, QUOTE_LIMIT, QUOTE_LIMIT


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters (without ever building the whole repr of a huge value)."""
    return cut(_repr.repr(value), limit)


def cut(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` itself when short, else its first `limit - 3` characters and "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Validator:
    """Builds typed dataclasses from raw YAML data; `source` and `origins` say where a value came from."""

    def __init__(self, source: str, origins: dict[str, str]):
        self.source = source
        self.origins = origins  # dotted key set by an override -> the override's text

    def error(self, keys: str | tuple[str, ...], message: str) -> ConfigError:
        """The error, prefixed with the overrides that set these keys (or keys above or below
        them), else with the config file."""
        keys = (keys,) if isinstance(keys, str) else keys
        overrides = [
            override
            for set_key, override in self.origins.items()
            if any(k == set_key or k.startswith(set_key + ".") or set_key.startswith(k + ".") for k in keys)
        ]
        return ConfigError(f"{', '.join(overrides) or self.source}: {message}")

    def build(self, cls: type, raw: Any, key: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise self.error(key, f"{key or 'the config'} must be a section (a mapping), got {quote(raw)}")
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for name, value in raw.items():
            sub = f"{key}.{name}" if key else str(name)
            if name not in known:
                raise self.error(sub, f"unknown key {cut(sub)}{suggest(str(name), key, list(known))}")
            values[name] = self.coerce(hints[name], value, sub)
            self.check_range(known[name], values[name], sub)
        for name, f in known.items():
            if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                sub = f"{key}.{name}" if key else name
                raise self.error(sub, f"missing key {sub}")
        return cls(**values)

    def coerce(self, tp: Any, value: Any, key: str):
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is Union and type(None) in args:  # Optional[X]
            if value is None:
                return None
            return self.coerce(next(a for a in args if a is not type(None)), value, key)
        if tp == list[TransformOp]:
            return self.transforms(value, key)
        if origin is Literal:
            if not any(value == a and type(value) is type(a) for a in args):
                choices = ", ".join(repr(a) for a in args)
                close = difflib.get_close_matches(str(value)[:200], [str(a) for a in args], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(key, f"{key} must be one of {choices}, got {quote(value)}{hint}")
            return value
        if origin is list:
            if not isinstance(value, (list, tuple)):
                raise self.error(key, f"{key} must be a list, got {quote(value)}")
            return [self.coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, key)
        if tp is bool and isinstance(value, bool):
            return value
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if tp is float and not isinstance(value, bool):
            number = None
            if isinstance(value, (int, float)):
                number = float(value) if not isinstance(value, int) or abs(value) < 2**1023 else math.inf
            elif isinstance(value, str):  # YAML 1.1 reads `1e-6` (no dot) as a string
                try:
                    number = float(value)
                except ValueError:
                    pass
            if number is not None:
                if not math.isfinite(number):
                    raise self.error(key, f"{key} must be a finite number, got {quote(value)}")
                return number
        if tp is str:
            if value is None:  # `key:` or `-o key=` means the empty string
                return ""
            if isinstance(value, str):
                return value
        expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[tp]
        raise self.error(key, f"{key} must be {expected}, got {quote(value)}")

    def check_range(self, f: dataclasses.Field, value: Any, key: str) -> None:
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if value is None or (lo is None and hi is None):
            return
        if lo is not None and value < lo or hi is not None and value > hi:
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise self.error(key, f"{key} must be {bound}, got {quote(value)}")

    def transforms(self, value: Any, key: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"{key} must be a list of ops like '- RandomCrop: {{target_size: 224}}', "
                             f"got {quote(value)}")  # fmt: skip
        ops = []
        for i, item in enumerate(value):
            sub = f"{key}[{i}]"
            if isinstance(item, str):  # `- RandomFlip` written without a colon
                item = {item: None}
            if not isinstance(item, dict) or len(item) != 1:
                raise self.error(sub, f"{sub} must be one op like 'RandomCrop: {{target_size: 224}}', got {quote(item)}")
            ((name, args),) = item.items()
            if name not in TRANSFORM_OPS:
                close = difflib.get_close_matches(str(name)[:200], list(TRANSFORM_OPS), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise self.error(sub, f"{sub}: unknown transform op {quote(name)}{hint}; "
                                 f"known ops: {', '.join(TRANSFORM_OPS)}")  # fmt: skip
            ops.append(self.build(TRANSFORM_OPS[name], args, f"{sub}.{name}"))
        return ops


def schema_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, for "did you mean" hints that look beyond the section."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        key = f"{prefix}.{name}" if prefix else name
        keys.append(key)
        inner = [a for a in (typing.get_args(tp) or (tp,)) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            keys += schema_keys(inner[0], key)
    return keys


def suggest(name: str, section: str, siblings: list[str]) -> str:
    """" (did you mean KEY?)" for an unknown key `name` in `section`: a near name in the same
    section, else a key elsewhere whose name is near and whose whole path is nearest
    (`DATASET.test.batchsize` -> `DATASET.test_batch_size`)."""
    name = name[:200]  # difflib is quadratic: a huge key gets no better hint from its tail
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.75)
    if close:
        return f" (did you mean {section + '.' if section else ''}{close[0]}?)"
    full = f"{section}.{name}" if section else name
    scored = []
    for key in schema_keys():
        leaf_ratio = difflib.SequenceMatcher(None, name, key.rsplit(".", 1)[-1]).ratio()
        if leaf_ratio >= 0.75:
            scored.append((leaf_ratio + difflib.SequenceMatcher(None, full, key).ratio(), key))
    if scored:
        return f" (did you mean {max(scored)[1]}?)"
    return f" (valid keys here: {', '.join(siblings)})"
