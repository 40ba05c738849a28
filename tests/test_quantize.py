"""`timesformer export --quantize int8`: ONNX Runtime dynamic int8 model beside the fp32 one,
taken by `predict` as is, agreeing with fp32 on real (synthetic H.264) videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from timesformer.bench.clips import make_test_video  # noqa: E402
from timesformer.cli import main  # noqa: E402
from timesformer.export.predictor import Predictor  # noqa: E402
from timesformer.model.checkpoints import save_model  # noqa: E402
from timesformer.model.timesformer import build_model  # noqa: E402

TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_frames=4, num_classes=5, drop_path_rate=0.0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantize")
    torch.manual_seed(0)
    model = build_model(**TINY).eval()
    with torch.no_grad():  # logits spread well apart, as a trained model's are
        model.head.weight.mul_(50)
    weights = save_model(model, root / "tiny.safetensors")
    out = root / "inference"
    assert main(["export", "-p", str(weights), "-o", str(out), "--quantize", "int8"]) == 0
    videos = [make_test_video(root / f"clip{i}.mp4", seconds=1.0, width=64 + 32 * i, height=48 + 16 * i) for i in range(2)]
    return root, out, weights, videos


def test_int8_model_is_written_beside_fp32_with_its_description(exported):
    _, out, _, _ = exported
    assert sorted(p.name for p in out.iterdir()) == ["TimeSformer.int8.json", "TimeSformer.int8.onnx", "TimeSformer.json", "TimeSformer.onnx"]
    assert (out / "TimeSformer.int8.json").read_text() == (out / "TimeSformer.json").read_text()
    ops = {node.op_type for node in onnx.load(str(out / "TimeSformer.int8.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops  # the linear layers really run in int8
    assert (out / "TimeSformer.int8.onnx").stat().st_size < 0.6 * (out / "TimeSformer.onnx").stat().st_size


def test_predict_takes_the_int8_model_and_agrees_with_fp32(exported):
    _, out, weights, videos = exported
    fp32 = Predictor.from_onnx(out / "TimeSformer.onnx").predict([str(v) for v in videos], top_k=5)
    int8 = Predictor.from_onnx(out / "TimeSformer.int8.onnx").predict([str(v) for v in videos], top_k=5)
    torch_fp32 = Predictor.from_weights(weights).predict([str(v) for v in videos], top_k=5)
    for a, b, t in zip(fp32, int8, torch_fp32):
        assert a.topk_class[0] == b.topk_class[0] == t.topk_class[0]
        probs = lambda p: np.array(p.topk_scores)[np.argsort(p.topk_class)]  # noqa: E731
        assert np.abs(probs(a) - probs(t)).max() < 1e-4  # ORT fp32 is exact
        assert np.abs(probs(a) - probs(b)).max() < 0.1  # int8 is close: logits x50 here magnify its error


def test_quantize_output_may_not_replace_an_input(exported, capsys):
    root, out, weights, _ = exported
    victim = out / "TimeSformer.int8.json"
    victim.write_bytes(weights.read_bytes())
    before = victim.read_bytes()
    assert main(["export", "-p", str(victim), "-o", str(out), "--quantize", "int8"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--quantize" in err
    assert victim.read_bytes() == before
