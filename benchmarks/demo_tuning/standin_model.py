"""A minimal TimeSformer (PaddleVideo maths and init) used only until the package's model lands."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim, heads, attention_type, zero_fc):
        super().__init__()
        self.attention_type = attention_type
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        if attention_type == "divided_space_time":
            self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.temporal_attn = Attention(dim, heads)
            self.temporal_fc = nn.Linear(dim, dim)
            if zero_fc:
                nn.init.zeros_(self.temporal_fc.weight)
                nn.init.zeros_(self.temporal_fc.bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, b, t, n):
        if self.attention_type != "divided_space_time":
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        d = x.shape[-1]
        xt = x[:, 1:].reshape(b * n, t, d)
        r = self.temporal_fc(self.temporal_attn(self.temporal_norm1(xt)).reshape(b, n * t, d))
        xt = x[:, 1:] + r
        cls = x[:, :1].repeat(1, t, 1).reshape(b * t, 1, d)
        xs = xt.reshape(b, n, t, d).transpose(1, 2).reshape(b * t, n, d)
        s = self.attn(self.norm1(torch.cat([cls, xs], 1)))
        cls_out = s[:, 0].reshape(b, t, d).mean(1, keepdim=True)
        s = s[:, 1:].reshape(b, t, n, d).transpose(1, 2).reshape(b, n * t, d)
        x = torch.cat([x[:, :1], xt], 1) + torch.cat([cls_out, s], 1)
        return x + self.mlp(self.norm2(x))


class TimeSformer(nn.Module):
    def __init__(self, img_size=32, patch_size=8, in_chans=3, num_classes=4, embed_dim=64, depth=2,
                 num_heads=2, num_frames=8, attention_type="divided_space_time", **_):
        super().__init__()
        self.attention_type = attention_type
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        n = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim))
        if attention_type != "space_only":
            self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, attention_type, i > 0) for i in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for blk in self.blocks[1:]:
            if attention_type == "divided_space_time":
                nn.init.zeros_(blk.temporal_fc.weight)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x):
        b, _, t, h, w = x.shape
        x = self.patch_embed(x.transpose(1, 2).reshape(b * t, -1, h, w)).flatten(2).transpose(1, 2)
        n, d = x.shape[1], x.shape[2]
        x = torch.cat([self.cls_token.expand(b * t, -1, -1), x], 1) + self.pos_embed
        if self.attention_type == "space_only":
            for blk in self.blocks:
                x = blk(x, b, t, n)
            x = x.reshape(b, t, n + 1, d).mean(1)
        else:
            cls = x[:b, :1]
            x = x[:, 1:].reshape(b, t, n, d).transpose(1, 2).reshape(b * n, t, d) + self.time_embed
            x = torch.cat([cls, x.reshape(b, n * t, d)], 1)
            for blk in self.blocks:
                x = blk(x, b, t, n)
        return self.head(self.norm(x)[:, 0])


def build_model(**fields) -> TimeSformer:
    return TimeSformer(**fields)
