"""Configs in PaddleVideo's YAML schema, validated once into typed dataclasses.

A config is read (`load_config`), the `-o KEY.PATH=VALUE` overrides are applied to the raw
mapping, then the whole tree is checked against the dataclasses of `schema`: an unknown key, a
wrong type, a value out of range or two keys that contradict each other raise one `ConfigError`
line that names the key (and the nearest valid key). After that every value has its declared
type, so the engine reads `cfg.MODEL.backbone.embed_dim` without checks.

Modules, one job each: `schema` (the dataclasses and their defaults), `loading` (YAML within
bounds, overrides), `validate` (types, ranges, did-you-mean), `rules` (rules across keys),
`paddlevideo` (PaddleVideo's shorthands, its ignored keys, its transform ops -> `VideoPipeline`).
PaddleVideo's own `timesformer_k400_videos.yaml` and `timesformer_ucf101_videos_xpu.yaml` load
unchanged. Files named in a config are checked where they are used (`require_file`).
"""

from .loading import load_config, require_file
from .paddlevideo import IGNORED_FIELDS, build_pipeline, ignored_settings
from .schema import Config

__all__ = ["Config", "IGNORED_FIELDS", "build_pipeline", "ignored_settings", "load_config", "require_file"]
