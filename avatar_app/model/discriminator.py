"""Projection discriminator D: realism of an image with its landmarks, for one training video.

score = V · (W_i + w0) + b, with V the image's 512-d feature, W_i the video's row of the embedding matrix
(kept in its own module, so checkpoints do not carry it inside every copy of D), w0 and b shared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_app.model.config import ModelConfig
from avatar_app.model.layers import encoder_trunk, sn_linear


class Discriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, num_videos: int):
        super().__init__()
        blocks, cin = encoder_trunk(cfg)
        self.blocks = nn.ModuleList(blocks)
        self.to_v = sn_linear(cin, cfg.embed_dim)
        self.w0_b = sn_linear(cfg.embed_dim, 1)  # its weight is w0, its bias b
        self.W = nn.Embedding(num_videos, cfg.embed_dim)
        nn.init.uniform_(self.W.weight, -0.1, 0.1)

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor, video: torch.Tensor):
        """image (B,3,H,W) in [-1,1], landmarks (B,3,H,W), video (B,) indices -> (score (B,), features list)."""
        h = torch.cat([image, landmarks], dim=1)
        features = []
        for block in self.blocks:
            h = block(h)
            features.append(h)
        v = self.to_v(F.relu(h).sum(dim=(2, 3)))  # (B, embed_dim)
        score = self.w0_b(v).squeeze(1) + (v * self.W(video)).sum(dim=1)
        return score, features
