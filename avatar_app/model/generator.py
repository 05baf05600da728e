"""Generator G: a landmark image -> the face, its style set by AdaIN parameters ψ = P·ê.

ψ is an input of forward(), so an exported generator takes it per avatar and never recomputes it per frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avatar_app.model.config import ModelConfig
from avatar_app.model.layers import AdaINResBlock, ResBlockDown, SelfAttention, adain, sn_conv, sn_linear


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = list(cfg.gen_channels)
        self.stem = sn_conv(3, c[0], 3, stride=cfg.gen_stem_stride)
        size = cfg.image_size // cfg.gen_stem_stride
        down = []
        for cin, cout in zip(c[:-1], c[1:]):
            down.append(ResBlockDown(cin, cout, norm=True))
            size //= 2
            if size in cfg.gen_attention_down:
                down.append(SelfAttention(cout))
        self.down = nn.Sequential(*down)
        self.middle = nn.ModuleList(AdaINResBlock(c[-1], c[-1]) for _ in range(cfg.gen_middle_blocks))
        # Up path: back through the down path's channels, then through the stem's stride to full size.
        ups = list(reversed(c[:-1])) + [max(c[0] // 2, 8)] * int(math.log2(cfg.gen_stem_stride))
        self.up = nn.ModuleList()
        self.up_attention = nn.ModuleDict()
        cin = c[-1]
        for cout in ups:
            self.up.append(AdaINResBlock(cin, cout, up=True))
            size *= 2
            if size in cfg.gen_attention_up:
                self.up_attention[str(len(self.up) - 1)] = SelfAttention(cout)
            cin = cout
        self.final_channels = cin
        self.to_rgb = sn_conv(cin, 3)
        self.n_psi = sum(b.n_params for b in self.middle) + sum(b.n_params for b in self.up) + 2 * cin
        # P: ê -> ψ. Applied once per avatar (or replaced by a fine-tuned ψ'), never per frame.
        self.project = sn_linear(cfg.embed_dim, self.n_psi)

    def forward(self, landmarks: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """landmarks: (B, 3, H, W) in [0, 1]; psi: (B, n_psi) -> RGB image (B, 3, H, W) in [-1, 1]."""
        h = self.down(self.stem(landmarks))  # (B, C, H/s, W/s)
        offset = 0
        for block in self.middle:
            h = block(h, psi[:, offset : offset + block.n_params])
            offset += block.n_params
        for i, block in enumerate(self.up):
            h = block(h, psi[:, offset : offset + block.n_params])
            offset += block.n_params
            if str(i) in self.up_attention:
                h = self.up_attention[str(i)](h)
        gamma, beta = torch.split(psi[:, offset:], [self.final_channels, self.final_channels], dim=1)
        return torch.tanh(self.to_rgb(F.relu(adain(h, gamma, beta))))
