"""The transcription of PaddleVideo's test pipeline (the yardstick of tests and benchmarks)
against the tensor PaddleVideo itself wrote for example.avi."""

import numpy as np

from timesformer.data.paddlevideo_reference import paddlevideo_test_tensor


def test_transcription_equals_paddlevideos_own_tensor(paddle_fixture, example_avi):
    expected = np.load(paddle_fixture / "video_example.npz")["input"][0]  # [3, 3*8, 224, 224]
    got = paddlevideo_test_tensor(example_avi, num_seg=8).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 2e-3
