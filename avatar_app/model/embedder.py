"""Embedder E: a frame and its landmark image -> a 512-d identity vector; the avatar's ê is the mean over K frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_app.model.config import ModelConfig
from avatar_app.model.layers import encoder_trunk, sn_linear


class Embedder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        blocks, cin = encoder_trunk(cfg)
        self.blocks = nn.Sequential(*blocks)
        self.out = sn_linear(cin, cfg.embed_dim)

    def forward(self, frames: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """frames, landmarks: (B, 3, H, W) in [-1, 1] and [0, 1] -> (B, embed_dim)."""
        h = self.blocks(torch.cat([frames, landmarks], dim=1))  # (B, C, H/2^n, W/2^n)
        return self.out(F.relu(h).sum(dim=(2, 3)))  # sum over positions, then to embed_dim

    def identity(self, frames: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """ê: the mean embedding of K frames of one person, (K, 3, H, W) each -> (1, embed_dim)."""
        return self(frames, landmarks).mean(dim=0, keepdim=True)
