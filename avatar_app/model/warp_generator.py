"""Warp-conditioned generator G (the `realtime` configuration): the app's own mesh warp of the portrait to the
target landmarks, with the landmark image, -> a correction: an RGB image and a soft mask that says where to use it.

output = mask · rgb + (1 − mask) · warp, so G repaints only where a warp is wrong (the inside of the mouth, teeth,
lids, the side of a head the portrait hides, seams) and keeps the portrait's own pixels elsewhere. The identity
path is the paper's: ψ = P·ê sets every AdaIN layer, so the repainted part is drawn in the avatar's likeness.
A U-Net: the down path (instance-normed residual blocks) keeps its activations as skips for the up path (AdaIN
residual blocks), so the correction is drawn at the warp's own resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_app.model.config import ModelConfig
from avatar_app.model import layers
from avatar_app.model.layers import AdaINResBlock, DownBlock, adain, sn_conv, sn_linear

# The mask starts nearly shut (sigmoid(-3) = 0.05): an untrained G leaves the warp almost as it is.
MASK_BIAS = -3.0


class WarpGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = list(cfg.gen_channels)
        self.stem = sn_conv(6, c[0], 3)  # warp RGB ⊕ landmark image
        self.down = nn.ModuleList(DownBlock(cin, cout) for cin, cout in zip(c[:-1], c[1:]))
        self.middle = nn.ModuleList(AdaINResBlock(c[-1], c[-1]) for _ in range(cfg.gen_middle_blocks))
        # Up: at each level the upsampled features meet the down path's skip of that level.
        self.up = nn.ModuleList(AdaINResBlock(cdeep + cskip, cskip) for cdeep, cskip in zip(c[:0:-1], c[-2::-1]))
        self.final_channels = c[0]
        out = nn.Conv2d(c[0], 4, 3, padding=1)  # RGB and the mask's logit
        with torch.no_grad():
            out.weight[3].mul_(0.1)
            out.bias[3].fill_(MASK_BIAS)
        self.to_out = layers.spectral_norm(out)
        self.n_psi = sum(b.n_params for b in self.middle) + sum(b.n_params for b in self.up) + 2 * c[0]
        self.project = sn_linear(cfg.embed_dim, self.n_psi)  # P: ê -> ψ, once per avatar

    def forward(self, warp: torch.Tensor, landmarks: torch.Tensor, psi: torch.Tensor):
        """warp (B,3,S,S) RGB in [-1,1], landmarks (B,3,S,S) in [0,1], psi (B, n_psi)
        -> image (B,3,S,S) in [-1,1] (the corrected warp), mask (B,1,S,S) in [0,1]."""
        rgb, mask = self.correction(warp, landmarks, psi)
        return mask * rgb + (1 - mask) * warp, mask

    def correction(self, warp: torch.Tensor, landmarks: torch.Tensor, psi: torch.Tensor):
        """What the exported model runs: -> rgb (B,3,S,S) in [-1,1], mask (B,1,S,S) in [0,1]. The app blends
        rgb over its own full-resolution warp with the mask, so the portrait keeps its detail where G agrees."""
        h = self.stem(torch.cat([warp, landmarks], dim=1))  # (B, c0, S, S)
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
        out = self.to_out(F.relu(adain(h, gamma, beta)))  # (B, 4, S, S)
        return torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:])
