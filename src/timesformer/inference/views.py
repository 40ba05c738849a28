"""The test views of a clip: PaddleVideo's layout (crops stacked on T) and their averaging."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


def average_views(logits: torch.Tensor, num_views: int, avg_type: str = "score") -> torch.Tensor:
    """`[B*V, C]` view logits -> `[B, C]`: mean of the logits ("score") or of their softmaxes ("prob")."""
    views = logits.float().view(-1, num_views, logits.shape[-1])
    if avg_type == "prob":
        return views.softmax(dim=-1).mean(dim=1)
    return views.mean(dim=1)


def stack_views(clip: torch.Tensor) -> torch.Tensor:
    """`[V, 3, T, H, W]` (our pipeline) -> `[3, V*T, H, W]` (PaddleVideo's, crops concatenated on T)."""
    views, channels, frames, height, width = clip.shape
    return clip.transpose(0, 1).reshape(channels, views * frames, height, width)


class MultiViewModel(nn.Module):
    """`[N, 3, V*T, H, W]` (V crops stacked on T, PaddleVideo's layout) -> `[N, classes]`.

    View j is frames `j*T:(j+1)*T`; the model runs each view as one clip and the views are
    averaged: logits (`avg_type="score"`) or softmaxes (`"prob"`), as PaddleVideo's
    RecognizerTransformer does at test time.
    """

    def __init__(self, model: nn.Module, num_seg: int, avg_type: str = "score"):
        super().__init__()
        if avg_type not in ("score", "prob"):
            raise ConfigError(f"MODEL.runtime_cfg.test.avg_type: {avg_type!r} is not 'score' or 'prob'")
        self.model = model
        self.num_seg = num_seg
        self.avg_type = avg_type

    def _clips(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        batch, channels, frames, height, width = x.shape
        views = frames // self.num_seg
        clips = x.view(batch, channels, views, self.num_seg, height, width).transpose(1, 2)
        return clips.reshape(batch * views, channels, self.num_seg, height, width), views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clips, views = self._clips(x)
        return average_views(self.model(clips), views, self.avg_type)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, D]`: the final-norm cls token (`forward_features`) of each view, averaged over the views."""
        clips, views = self._clips(x)
        features = self.model.forward_features(clips).float()
        return features.view(-1, views, features.shape[-1]).mean(dim=1)
