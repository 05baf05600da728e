"""Mouth generator G (the `mouth` configuration): the inside of the mouth - teeth, tongue, the dark cavity, the
inner lip - drawn at the mouth crop (face/crop.py mouth_affine) from the lip landmark image and a degraded view
of the driver's own mouth, in the avatar's likeness through the paper's identity path (ψ = P·ê sets every AdaIN).

The driver's mouth says what is there (teeth showing or not, the tongue, how dark the opening is) but only
blurred, colour-shifted and sometimes missing (its presence is the driver input's fourth channel), so G learns
shape from the landmarks, appearance from ψ, and the rest from the driver's coarse shading. A U-Net like the
warp generator: instance-normed down path with skips, AdaIN bottleneck and up path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_app.model.config import ModelConfig
from avatar_app.model.layers import AdaINResBlock, DownBlock, adain, sn_conv, sn_linear

DRIVER_CHANNELS = 4  # the driver's mouth (RGB in [-1, 1], zeros when absent) and its presence (1 or 0)


class MouthGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = list(cfg.gen_channels)
        self.stem = sn_conv(3 + DRIVER_CHANNELS, c[0], 3)  # landmark image ⊕ driver's mouth ⊕ its presence
        self.down = nn.ModuleList(DownBlock(cin, cout) for cin, cout in zip(c[:-1], c[1:]))
        self.middle = nn.ModuleList(AdaINResBlock(c[-1], c[-1]) for _ in range(cfg.gen_middle_blocks))
        self.up = nn.ModuleList(AdaINResBlock(cdeep + cskip, cskip) for cdeep, cskip in zip(c[:0:-1], c[-2::-1]))
        self.final_channels = c[0]
        self.to_rgb = sn_conv(c[0], 3)
        self.n_psi = sum(b.n_params for b in self.middle) + sum(b.n_params for b in self.up) + 2 * c[0]
        self.project = sn_linear(cfg.embed_dim, self.n_psi)  # P: ê -> ψ, once per avatar

    def forward(self, landmarks: torch.Tensor, driver: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """landmarks (B,3,S,S) in [0,1], driver (B,4,S,S), psi (B, n_psi) -> the mouth crop (B,3,S,S) in [-1,1]."""
        h = self.stem(torch.cat([landmarks, driver], dim=1))  # (B, c0, S, S)
        skips = []
        for block in self.down:
            skips.append(h)
            h = block(h)  # halves the resolution
        offset = 0
        for block in self.middle:
            h = block(h, psi[:, offset : offset + block.n_params])
            offset += block.n_params
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), psi[:, offset : offset + block.n_params])
            offset += block.n_params
        gamma, beta = torch.split(psi[:, offset:], [self.final_channels, self.final_channels], dim=1)
        return torch.tanh(self.to_rgb(F.relu(adain(h, gamma, beta))))  # (B, 3, S, S)
