"""Reading a config: find the file, parse its YAML within bounds, apply `-o KEY.PATH=VALUE` overrides,
then validate (`validate`, `rules`) into a typed `Config`.

YAML aliases let a few hundred bytes describe billions of values; nesting can exhaust the parser's
recursion. Before anything is built, one pass over the parser's events (which needs no recursion)
measures the depth and the size the document expands to, and refuses a config beyond the bounds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from ...errors import ConfigError
from .paddlevideo import expand_optimizer_shorthands, log_ignored_once
from .rules import check_config
from .schema import Config
from .validate import Validator, cut, quote

MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 64  # nested sections / lists
MAX_VALUES = 100_000  # values the document expands to, aliases counted as copies

_COLLECTION_START = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_COLLECTION_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply `KEY.PATH=VALUE` overrides, validate, return it typed."""
    path = find_config(Path(path))
    raw = parse_yaml_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(raw).__name__}")
    origins = {}  # dotted key set by an override -> the override's text, for error messages
    for text in overrides:
        key = apply_override(raw, text)
        origins[re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)] = f"-o {cut(text)}"  # list items print as [i]
    if isinstance(raw.get("OPTIMIZER"), dict):
        raw["OPTIMIZER"] = expand_optimizer_shorthands(raw["OPTIMIZER"])
    validator = Validator(str(path), origins)
    cfg = validator.build(Config, raw, "")
    check_config(validator, cfg)
    log_ignored_once(cfg, str(path))
    return cfg


def find_config(path: Path) -> Path:
    """The config at `path`, or the copy shipped in the package (`configs/x.yaml` from any directory)."""
    if path.is_file():
        return path
    shipped = Path(__file__).resolve().parents[2] / "configs" / path.name
    if not path.is_absolute() and path.parent.name in ("configs", "") and shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {path}")


def require_file(path: str | os.PathLike | None, key: str) -> Path:
    """The file a config key names, or a one-line error naming the key and the path."""
    if not path:
        raise ConfigError(f"{key} is empty: it must name a file")
    if not Path(path).is_file():
        raise ConfigError(f"{key}: file not found: {path}")
    return Path(path)


def parse_yaml_file(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes; a config may hold at most {MAX_CONFIG_BYTES}")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (YAML) file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in `text`, once `check_bounds` has passed; one-line errors naming `source`."""
    try:
        check_bounds(text, source)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}{where}: not valid YAML: {quote(problem)}") from None


def check_bounds(text: str, source: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH, expanding to more than MAX_VALUES values, or
    holding an alias to a collection that contains it (a cycle)."""
    open_sizes: list[int] = []  # values so far in each open collection
    open_anchors: list[str | None] = []
    sizes: dict[str, int] = {}  # anchor -> values it expands to
    total = 0

    def add(count: int) -> None:
        nonlocal total
        if open_sizes:
            open_sizes[-1] += count
        total += count
        if total > MAX_VALUES:
            raise ConfigError(f"{source}: the YAML expands to more than {MAX_VALUES} values (aliases repeat "
                              f"what they name); a config is far smaller")  # fmt: skip

    check_flow_depth(text, source)
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, _COLLECTION_START):
            if len(open_sizes) >= MAX_DEPTH:
                line = event.start_mark.line + 1
                raise ConfigError(f"{source} (line {line}): nested more than {MAX_DEPTH} levels deep")
            open_sizes.append(1)
            open_anchors.append(event.anchor)
            add(0)
        elif isinstance(event, _COLLECTION_END):
            count, anchor = open_sizes.pop(), open_anchors.pop()
            if anchor is not None:
                sizes[anchor] = count
            if open_sizes:
                open_sizes[-1] += count
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            add(1)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise ConfigError(f"{source} (line {event.start_mark.line + 1}): alias *{cut(event.anchor)} "
                                  f"refers to a collection that contains it")  # fmt: skip
            add(sizes.get(event.anchor, 1))


def check_flow_depth(text: str, source: str) -> None:
    """Refuse `[` / `{` nested over MAX_DEPTH, counted outside quotes and comments in one pass over
    the text: PyYAML's scanner spends time quadratic in that depth before it emits an event."""
    depth, quote, comment, line = 0, "", False, 1
    for char in text:
        if char == "\n":
            line, comment = line + 1, False
        elif comment:
            continue
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            comment = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{source} (line {line}): nested more than {MAX_DEPTH} levels deep")
        elif char in "]}":
            depth = max(depth - 1, 0)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {quote(key)}", key_node.start_mark)
            if isinstance(key, str):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def apply_override(raw: dict, text: str) -> str:
    """Set `KEY.PATH=VALUE` in the raw mapping; the value is parsed as a YAML scalar."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"-o {cut(text)}: an override must look like KEY.PATH=VALUE")
    try:
        check_bounds(value_text, f"-o {cut(text)}")
        value = yaml.safe_load(value_text)
    except yaml.YAMLError:
        value = value_text  # e.g. a path with ': ' in it: take the text as it is
    parts = key.split(".")
    if len(parts) > MAX_DEPTH:
        raise ConfigError(f"-o {cut(text)}: the key is nested more than {MAX_DEPTH} levels deep")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            index = _list_index(node, part, parts[: depth + 1], text)
            if node[index] is None:
                node[index] = {}
            node = node[index]
            continue
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, (dict, list)):
            raise ConfigError(f"-o {cut(text)}: {'.'.join(parts[: depth + 1])} is a value, not a section")
        node = child
    if isinstance(node, list):
        node[_list_index(node, parts[-1], parts, text)] = value
    else:
        node[parts[-1]] = value
    return key


def _list_index(node: list, part: str, parts: list[str], text: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"-o {cut(text)}: {cut('.'.join(parts))}: no item {cut(part)} in a list of {len(node)}")
    return int(part)
