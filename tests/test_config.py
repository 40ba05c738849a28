"""Config loading: PaddleVideo's YAML schema, overrides, validation errors, op mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SHARED
from timesformer.data.pipeline import VideoPipeline
from timesformer.engine.config import build_pipeline, load_config, require_file
from timesformer.errors import ConfigError, UserError

PADDLE_CONFIGS = SHARED / "reference" / "paddlevideo_configs"
K400 = ROOT / "configs" / "timesformer_k400_videos.yaml"
DEMO = ROOT / "configs" / "demo_motion.yaml"

# ViT-B/16 TimeSformer as PADDLEVIDEO_BEHAVIOR.md describes it (not read from our code).
VIT_B = dict(
    img_size=224, patch_size=16, in_chans=3, num_classes=400, embed_dim=768, depth=12, num_heads=12,
    mlp_ratio=4.0, qkv_bias=True, norm_eps=1e-6, num_frames=8, attention_type="divided_space_time",
    drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1, grad_checkpointing=False,
)  # fmt: skip


def paddle_config(name: str) -> Path:
    path = PADDLE_CONFIGS / name
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared exists only in the project's workspace)")
    return path


def error_of(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, UserError)
    return message


def write_config(tmp_path: Path, edit) -> Path:
    """The shipped K400 config with `edit(raw)` applied, written to a temporary file."""
    raw = yaml.safe_load(K400.read_text())
    edit(raw)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_paddlevideo_k400_config_loads_unchanged():
    cfg = load_config(paddle_config("timesformer_k400_videos.yaml"))
    assert cfg.model_config() == VIT_B
    assert cfg.MODEL.backbone.pretrained == "data/ViT_base_patch16_224_pretrained.pdparams"
    assert cfg.MODEL.runtime_cfg.test.avg_type == "score"
    assert (cfg.DATASET.batch_size, cfg.DATASET.test_batch_size, cfg.DATASET.num_workers) == (1, 8, 4)
    assert cfg.DATASET.valid_batch_size is None and cfg.DATASET.valid_batch == 1  # PaddleVideo: batch_size
    assert cfg.DATASET.train.file_path == "data/k400/train.list"
    assert cfg.DATASET.test.data_prefix == "data/k400/videos"
    opt = cfg.OPTIMIZER
    assert (opt.name, opt.momentum, opt.use_nesterov, opt.weight_decay.value) == ("Momentum", 0.9, True, 1e-4)
    lr = opt.learning_rate
    assert (lr.name, lr.learning_rate, lr.milestones, lr.gamma) == ("MultiStepDecay", 0.005, [11, 14], 0.1)
    assert cfg.GRADIENT_ACCUMULATION.global_batch_size == 64
    assert cfg.accumulation_steps(world_size=8) == 8
    assert (cfg.epochs, cfg.save_interval, cfg.log_interval) == (15, 3, 20)
    assert cfg.output_path == Path("output/TimeSformer")
    # The pipelines PADDLEVIDEO_BEHAVIOR.md lists: test = short side 224 + 3 uniform crops;
    # train/valid = short side in [256, 320], random 224 crop, flip (valid too, as PaddleVideo).
    test = build_pipeline(cfg, "test")
    assert test == VideoPipeline(num_seg=8, mode="test", short_side_min=224, short_side_max=224,
                                 crop_size=224, crop="uniform", flip=False)  # fmt: skip
    assert test.num_views == 3
    for split in ("train", "valid"):
        assert build_pipeline(cfg, split) == VideoPipeline(
            num_seg=8, mode=split, short_side_min=256, short_side_max=320, crop_size=224, crop="random", flip=True
        )


def test_paddlevideo_ucf101_xpu_config_loads_unchanged():
    cfg = load_config(paddle_config("timesformer_ucf101_videos_xpu.yaml"))
    assert cfg.DATASET.train.suffix == ".avi"
    assert cfg.DATASET.train.data_prefix == ""
    assert cfg.DATASET.valid.file_path == "data/ucf101/ucf101_val_split_1_videos.txt"


def test_shipped_k400_config_equals_paddlevideos():
    assert load_config(K400) == load_config(paddle_config("timesformer_k400_videos.yaml"))


def test_shipped_configs():
    k400 = load_config(K400)
    assert k400.model_config() == VIT_B

    hr = load_config(ROOT / "configs" / "timesformer_k400_videos_hr.yaml")
    assert (hr.model_config()["num_frames"], hr.model_config()["img_size"]) == (16, 448)
    assert build_pipeline(hr, "train").short_side_min == 448 and build_pipeline(hr, "train").short_side_max == 512
    assert build_pipeline(hr, "test").crop_size == 448 and build_pipeline(hr, "test").num_seg == 16

    large = load_config(ROOT / "configs" / "timesformer_k400_videos_l.yaml")
    assert (large.model_config()["num_frames"], large.model_config()["img_size"]) == (96, 224)
    assert build_pipeline(large, "test").num_seg == 96

    ucf = load_config(ROOT / "configs" / "timesformer_ucf101_videos.yaml")
    assert ucf.MODEL.head.num_classes == 101
    assert ucf.DATASET.train.file_path.endswith("ucf101_train_split_1_videos.txt")
    assert ucf.DATASET.valid.file_path.endswith("ucf101_val_split_1_videos.txt")
    assert ucf.DATASET.train.data_prefix == "data/ucf101/videos"

    demo = load_config(DEMO)
    model = demo.model_config()
    assert model["num_frames"] == 8 and model["img_size"] == 32 and model["embed_dim"] <= 96
    assert demo.OPTIMIZER.name == "AdamW"  # PaddleVideo's Momentum stays at chance on this task
    assert demo.DATASET.train.file_path == "demo_run/data/train.list"
    for split in ("train", "valid", "test"):
        pipe = build_pipeline(demo, split)
        # A horizontal flip would turn "right" into "left": never in the motion demo.
        assert not pipe.flip and pipe.num_views == 1 and pipe.num_seg == 8
        assert pipe.crop in ("center", "none") and pipe.short_side_min == pipe.short_side_max == 32


def test_to_dict_round_trips(tmp_path):
    cfg = load_config(DEMO)
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_config(path) == cfg


def test_hidden_check_overrides():
    cfg = load_config(K400, [
        "epochs=1", "MODEL.backbone.drop_path_rate=0.0", "GRADIENT_ACCUMULATION.global_batch_size=8",
        "DATASET.batch_size=4", "DATASET.train.file_path=/tmp/x/train.list", "DATASET.valid.file_path=v.list",
        "DATASET.test.file_path=t.list", "DATASET.test.data_prefix=", "output_dir=/tmp/out dir", "save_interval=1",
        "MODEL.backbone.embed_dim=96", "MODEL.backbone.depth=2", "MODEL.backbone.num_heads=4",
        "MODEL.head.in_channels=96",
    ])  # fmt: skip
    assert cfg.epochs == 1 and cfg.save_interval == 1
    assert cfg.MODEL.backbone.drop_path_rate == 0.0 and isinstance(cfg.MODEL.backbone.drop_path_rate, float)
    assert cfg.GRADIENT_ACCUMULATION.global_batch_size == 8 and cfg.DATASET.batch_size == 4
    assert cfg.accumulation_steps(1) == 2 and cfg.accumulation_steps(2) == 1
    assert cfg.DATASET.train.file_path == "/tmp/x/train.list"
    assert cfg.DATASET.test.data_prefix == ""  # an empty value is the empty string, not None
    assert cfg.output_dir == "/tmp/out dir"
    model = cfg.model_config()
    assert (model["embed_dim"], model["depth"], model["num_heads"]) == (96, 2, 4)


def test_override_values_are_yaml_scalars(tmp_path):
    path = write_config(tmp_path, lambda raw: raw.pop("GRADIENT_ACCUMULATION"))
    cfg = load_config(path, [
        "OPTIMIZER.learning_rate.milestones=[3, 5]", "MODEL.backbone.qkv_bias=false", "MODEL.backbone.epsilon=1e-5",
        "OPTIMIZER.learning_rate.learning_rate=2", "GRADIENT_ACCUMULATION.global_batch_size=16",
        "MODEL.backbone.pretrained=", "PIPELINE.train.transform.4.RandomFlip.p=0",
        "PIPELINE.test.transform.3.UniformCrop.target_size=200",
    ])  # fmt: skip
    assert cfg.OPTIMIZER.learning_rate.milestones == [3, 5]
    assert cfg.MODEL.backbone.qkv_bias is False
    assert cfg.MODEL.backbone.epsilon == 1e-5  # YAML 1.1 reads `1e-5` as a string
    assert cfg.OPTIMIZER.learning_rate.learning_rate == 2.0  # an integer is a valid float
    assert cfg.GRADIENT_ACCUMULATION.global_batch_size == 16  # section absent from the file
    assert cfg.MODEL.backbone.pretrained is None
    assert build_pipeline(cfg, "train").flip is False
    assert build_pipeline(cfg, "test").crop_size == 200


def test_string_float_in_yaml():
    cfg = load_config(K400)  # `epsilon: 1e-6` is a string to YAML 1.1
    assert cfg.MODEL.backbone.epsilon == 1e-6 and isinstance(cfg.MODEL.backbone.epsilon, float)


def test_unknown_override_key_names_it_and_the_nearest_key():
    message = error_of(K400, ["DATASET.test.batchsize=2"])
    assert "DATASET.test.batchsize" in message and "batch_size" in message
    assert message.startswith("-o DATASET.test.batchsize=2:")
    assert "MODEL.backbone.dept" in error_of(K400, ["MODEL.backbone.dept=2"])
    assert "MODEL.backbone.depth" in error_of(K400, ["MODEL.backbone.dept=2"])
    assert "log_interval" in error_of(K400, ["log_intervl=5"])


def test_unknown_yaml_key_names_it_and_the_nearest_key(tmp_path):
    path = write_config(tmp_path, lambda raw: raw["MODEL"]["backbone"].update(num_head=4))
    message = error_of(path)
    assert str(path) in message and "MODEL.backbone.num_head" in message and "MODEL.backbone.num_heads" in message
    path = write_config(tmp_path, lambda raw: raw.update(OPTIMISER={}))
    assert "OPTIMISER" in error_of(path) and "OPTIMIZER" in error_of(path)


def test_transform_ops_are_validated(tmp_path):
    path = write_config(tmp_path, lambda raw: raw["PIPELINE"]["test"]["transform"].append({"TenCrop": None}))
    message = error_of(path)
    assert "PIPELINE.test.transform[4]" in message and "'TenCrop'" in message and "UniformCrop" in message
    message = error_of(K400, ["PIPELINE.train.transform.2.JitterScale.minsize=200"])
    assert "JitterScale.minsize" in message and "min_size" in message
    message = error_of(K400, ["PIPELINE.train.transform.3.RandomCrop.target_size=300"])
    assert "RandomCrop.target_size=300" in message and "256" in message  # larger than the short side
    message = error_of(K400, ["PIPELINE.train.transform.2.JitterScale.min_size=400"])
    assert "min_size=400" in message and "max_size=320" in message
    message = error_of(K400, ["PIPELINE.train.transform.1.Image2Array.data_format=tchw"])
    assert "data_format" in message and "'cthw'" in message


def test_wrong_types_name_key_type_and_value():
    assert error_of(K400, ["epochs=ten"]).endswith("epochs must be an integer, got 'ten'")
    assert "epochs must be an integer, got 1.5" in error_of(K400, ["epochs=1.5"])
    assert "MODEL.backbone.qkv_bias must be true or false, got 1" in error_of(K400, ["MODEL.backbone.qkv_bias=1"])
    assert "MODEL.backbone.mlp_ratio must be a number, got 'four'" in error_of(K400, ["MODEL.backbone.mlp_ratio=four"])
    assert "DATASET.train.file_path must be a string" in error_of(K400, ["DATASET.train.file_path=[a]"])
    assert "OPTIMIZER.learning_rate.milestones[1] must be an integer" in error_of(
        K400, ["OPTIMIZER.learning_rate.milestones=[1, x]"]
    )
    message = error_of(K400, ["MODEL.backbone.attention_type=divided_space"])
    assert "'divided_space_time'" in message and "divided_space" in message
    assert "must be between 1 and 1048576, got 0" in error_of(K400, ["DATASET.batch_size=0"])
    assert "between 0.0 and 1.0" in error_of(K400, ["MODEL.backbone.drop_path_rate=2"])
    assert "MODEL.head must be a section" in error_of(K400, ["MODEL.head=3"])
    assert "epochs is a value, not a section" in error_of(K400, ["epochs.max=3"])
    assert "KEY.PATH=VALUE" in error_of(K400, ["epochs"])


def test_keys_that_must_agree():
    message = error_of(K400, ["MODEL.backbone.embed_dim=96", "MODEL.backbone.num_heads=4"])
    assert "MODEL.head.in_channels=768" in message and "MODEL.backbone.embed_dim=96" in message
    assert "-o MODEL.backbone.embed_dim=96" in message
    message = error_of(K400, ["MODEL.backbone.num_heads=5"])
    assert "embed_dim=768" in message and "num_heads=5" in message
    message = error_of(K400, ["PIPELINE.test.sample.num_seg=4"])
    assert "PIPELINE.test.sample.num_seg=4" in message and "PIPELINE.test.decode.num_seg=8" in message
    assert "global_batch_size=10" in error_of(K400, ["GRADIENT_ACCUMULATION.global_batch_size=10", "DATASET.batch_size=4"])
    with pytest.raises(ConfigError, match="global_batch_size=64 is not a multiple"):
        load_config(K400, ["DATASET.batch_size=2"]).accumulation_steps(world_size=3)


def test_missing_and_duplicate_keys_and_bad_yaml(tmp_path):
    path = write_config(tmp_path, lambda raw: raw.pop("epochs"))
    assert "missing key epochs" in error_of(path)
    path = write_config(tmp_path, lambda raw: raw["PIPELINE"]["train"]["transform"].__setitem__(2, {"JitterScale": {"min_size": 256}}))
    assert "missing key PIPELINE.train.transform[2].JitterScale.max_size" in error_of(path)
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text(K400.read_text() + "epochs: 3\n")
    assert "duplicate key 'epochs'" in error_of(duplicate)
    broken = tmp_path / "broken.yaml"
    broken.write_text("MODEL: [\n")
    assert "not valid YAML" in error_of(broken)
    assert "config file not found" in error_of(tmp_path / "nope.yaml")


def test_missing_pipeline_split(tmp_path):
    path = write_config(tmp_path, lambda raw: raw["PIPELINE"].pop("valid"))
    cfg = load_config(path)  # fine for a run without validation
    with pytest.raises(ConfigError, match="PIPELINE.valid is missing"):
        build_pipeline(cfg, "valid")


def test_paddlevideo_optimizer_shorthands():
    cfg = load_config(K400, ["OPTIMIZER.weight_decay=0.05", "OPTIMIZER.grad_clip={name: ClipGradByGlobalNorm, value: 1}"])
    assert cfg.OPTIMIZER.weight_decay.value == 0.05 and cfg.OPTIMIZER.grad_clip == 1.0


def test_require_file(tmp_path):
    present = tmp_path / "train.list"
    present.write_text("a.mp4 0\n")
    assert require_file(str(present), "DATASET.train.file_path") == present
    with pytest.raises(ConfigError) as info:
        require_file(tmp_path / "missing.list", "DATASET.test.file_path")
    assert "DATASET.test.file_path" in str(info.value) and "missing.list" in str(info.value)
    with pytest.raises(ConfigError, match="MODEL.backbone.pretrained is empty"):
        require_file("", "MODEL.backbone.pretrained")


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A YAML whose list `milestones` expands to width**levels values (9**9 = 387 million) in ~435 bytes."""
    lines = [f"l0: &l0 [{', '.join(['1'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + f"\nOPTIMIZER: {{learning_rate: {{milestones: *l{levels - 1}}}}}\n"


@pytest.mark.parametrize("text", [
    alias_bomb(),
    alias_bomb(levels=6, width=12),  # 3 million
    "OPTIMIZER: " + "[" * 5000 + "]" * 5000 + "\n",  # nesting deeper than any parser recursion allows
    "a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n",
    "a: &a [1, *a]\n",  # an alias inside what it names: a cycle
])  # fmt: skip
def test_yaml_that_expands_or_nests_without_bound_fails_fast_in_one_line(tmp_path, text):
    import time
    import tracemalloc

    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    tracemalloc.start()
    start = time.perf_counter()
    message = error_of(path)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(path) in message and len(message) < 300, message
    assert elapsed < 5 and peak < 100 << 20, (elapsed, peak)
    if "&l0" in text:
        assert "expands to more than" in message


def test_alias_bomb_in_an_override_fails_too():
    message = error_of(K400, ["OPTIMIZER.learning_rate.milestones=" + "[" * 200 + "]" * 200])
    assert "nested more than" in message and len(message) < 300


def test_error_messages_cut_long_values(tmp_path):
    long_value = "x" * 100_000
    message = error_of(K400, [f"MODEL.backbone.attention_type={long_value}"])
    assert "..." in message and len(message) < 400
    message = error_of(K400, ["OPTIMIZER.learning_rate.milestones=[" + ", ".join(["[1]"] * 5000) + "]"])
    assert len(message) < 400
    path = tmp_path / "long_key.yaml"
    path.write_text(f"{'k' * 50_000}: 1\n")
    assert len(error_of(path)) < 600


@pytest.mark.parametrize("override, words", [
    ("MODEL.backbone.depth=1000000000", "MODEL.backbone.depth must be between 1 and 4096"),
    ("MODEL.backbone.num_heads=-3", "MODEL.backbone.num_heads must be between"),
    ("MODEL.backbone.embed_dim=abc", "MODEL.backbone.embed_dim must be an integer"),
    ("MODEL.backbone.drop_path_rate=.nan", "MODEL.backbone.drop_path_rate must be a finite number"),
    ("OPTIMIZER.learning_rate.learning_rate=.inf", "must be a finite number"),
    ("OPTIMIZER.learning_rate.learning_rate=1e999", "must be a finite number"),
    ("OPTIMIZER.momentum=" + "9" * 400, "must be a finite number"),
    ("DATASET.batch_size=" + "9" * 40, "DATASET.batch_size must be between"),
])  # fmt: skip
def test_absurd_sizes_and_types_are_refused_before_anything_is_built(override, words):
    message = error_of(K400, [override])
    assert words in message and len(message) < 300, message


def test_validation_fills_in_no_defaults_and_ignored_paddlevideo_keys_are_listed(caplog):
    import logging

    from timesformer.engine.config import IGNORED_FIELDS, ignored_settings

    cfg = load_config(K400)
    assert cfg.DATASET.valid_batch_size is None and cfg.output_dir == ""
    no_mode = load_config(K400, ["PIPELINE.test.decode.mode=null"])
    assert no_mode.PIPELINE.test.decode.mode is None and build_pipeline(no_mode, "test").mode == "test"
    # The shipped K400 config (PaddleVideo's) sets tensor_shape [1, 1, 1, 3] and valid_mode: True.
    settings = ignored_settings(cfg)
    assert any("Normalization.tensor_shape=[1, 1, 1, 3]" in s for s in settings)
    assert any("sample.valid_mode=True" in s for s in settings)
    assert all(any(f".{name}=" in s for _, name in IGNORED_FIELDS) for s in settings)
    with caplog.at_level(logging.INFO, logger="timesformer.config"):
        load_config(K400, ["MODEL.head.std=0.5"])
        load_config(K400, ["MODEL.head.std=0.5"])
    lines = [r.getMessage() for r in caplog.records if "MODEL.head.std=0.5" in r.getMessage()]
    assert len(lines) == 1 and "no effect" in lines[0]  # logged once
