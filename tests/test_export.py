"""`timesformer export`: PaddleVideo's multi-view layout, ONNX file vs PyTorch, description JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnxruntime as ort  # noqa: E402

from timesformer.cli import main  # noqa: E402
from timesformer.export.onnx import export_onnx  # noqa: E402
from timesformer.export.predictor import InferenceSpec, MultiViewModel, stack_views  # noqa: E402
from timesformer.model.checkpoints import save_model  # noqa: E402
from timesformer.model.timesformer import build_model  # noqa: E402

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_frames=4, num_classes=5, drop_path_rate=0.0)
K400_CFG = Path(__file__).resolve().parents[1] / "configs" / "timesformer_k400_videos.yaml"
FIXTURE_OVERRIDES = [
    "MODEL.backbone.embed_dim=96", "MODEL.backbone.depth=2", "MODEL.backbone.num_heads=4", "MODEL.head.in_channels=96",
]  # fmt: skip


def tiny_model(seed: int = 0, **fields) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(**{**TINY, **fields}).eval()
    with torch.no_grad():  # no parameter trivially zero, so every one matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("avg_type", ["score", "prob"])
def test_multiview_model_averages_the_crops_stacked_on_t(avg_type):
    model = tiny_model()
    x = torch.randn(2, 3, 3 * 4, 32, 32)
    with torch.no_grad():
        got = MultiViewModel(model, num_seg=4, avg_type=avg_type)(x)
        views = [model(x[:, :, j * 4 : (j + 1) * 4]) for j in range(3)]  # crop j = frames j*T:(j+1)*T
    views = [v.softmax(-1) for v in views] if avg_type == "prob" else views
    torch.testing.assert_close(got, sum(views) / 3, rtol=1e-5, atol=1e-6)


def test_stack_views_concatenates_crops_along_t():
    clip = torch.arange(3 * 3 * 2 * 1 * 1, dtype=torch.float32).view(3, 3, 2, 1, 1)  # [V, C, T, H, W]
    stacked = stack_views(clip)
    assert stacked.shape == (3, 6, 1, 1)
    for view in range(3):
        torch.testing.assert_close(stacked[:, 2 * view : 2 * view + 2], clip[view])


def test_export_tiny_model_onnx_matches_torch_with_dynamic_batch(tmp_path):
    model = tiny_model()
    spec = InferenceSpec.from_model(model.config.to_dict())
    result = export_onnx(model, spec, tmp_path / "out", label_file=None)
    assert result.onnx_path == tmp_path / "out" / "TimeSformer.onnx" and result.onnx_path.is_file()
    assert result.max_abs_diff <= 1e-4 and result.check_batch == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["TimeSformer.json", "TimeSformer.onnx"]

    described = json.loads(result.spec_path.read_text())
    assert described["input_shape"] == ["N", 3, 12, 32, 32]
    assert (described["num_seg"], described["views"], described["num_classes"]) == (4, 3, 5)
    assert described["mean"] == [0.45] * 3 and described["std"] == [0.225] * 3
    assert described["avg_type"] == "score" and described["output"] == "logits" and described["label_file"] is None

    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    (input_meta,) = session.get_inputs()
    assert input_meta.shape[1:] == [3, 12, 32, 32] and not isinstance(input_meta.shape[0], int)
    x = torch.randn(3, 3, 12, 32, 32)  # a batch size the export never saw
    with torch.no_grad():
        expected = torch.stack([sum(model(x[i : i + 1, :, 4 * j : 4 * j + 4])[0] for j in range(3)) / 3 for i in range(3)])
    got = session.run(None, {input_meta.name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_export_cli_without_config_from_our_safetensors(tmp_path, capsys):
    model = tiny_model(seed=1)
    weights = save_model(model, tmp_path / "tiny.safetensors")
    out = tmp_path / "inference"
    assert main(["export", "-p", str(weights), "-o", str(out), "--torch_export"]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and str(out / "TimeSformer.onnx") in printed
    # The torch.export artifact runs on any batch size too.
    program = torch.export.load(str(out / "TimeSformer.pt2")).module()
    x = torch.randn(3, 3, 12, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(program(x), MultiViewModel(model, 4)(x), rtol=1e-4, atol=1e-5)


def test_export_refuses_weights_that_do_not_fit_the_config(tmp_path, capsys, paddle_fixture):
    # The K400 config without overrides describes ViT-B; the fixture is 96 wide.
    code = main(["export", "-c", str(K400_CFG), "-p", str(paddle_fixture / "model.pdparams"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "embed_dim" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "o" / "TimeSformer.onnx").exists()


def test_export_needs_exactly_one_output_folder(tmp_path, capsys):
    weights = save_model(tiny_model(), tmp_path / "tiny.safetensors")
    assert main(["export", "-p", str(weights), "-o", "MODEL.backbone.depth=1"]) == 1
    assert "output folder" in capsys.readouterr().err
