"""Blocks shared by the networks: spectral-normed convolutions, residual blocks, AdaIN, self-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn_conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2))


def sn_linear(cin: int, cout: int) -> nn.Module:
    return spectral_norm(nn.Linear(cin, cout))


def adain(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance norm: normalise each channel of each image, then scale by 1 + gamma and shift by beta.

    x: (B, C, H, W); gamma, beta: (B, C). The scale is 1 + gamma, not gamma: ψ = P·ê starts centred on 0, and a
    raw gamma would make the output's contrast proportional to |ê|, so a shrinking ê (the embedding-match term
    pulls it towards D's small rows) flattened every face to grey.
    """
    # F.instance_norm exports as one ONNX InstanceNormalization (a fused kernel in onnxruntime).
    return F.instance_norm(x, eps=eps) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class SelfAttention(nn.Module):
    """SAGAN self-attention; the output starts as the input (gamma = 0) and learns how much to attend."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = sn_conv(channels, inner, 1)
        self.key = sn_conv(channels, inner, 1)
        self.value = sn_conv(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, N, c')
        k = self.key(x).flatten(2)  # (B, c', N)
        attn = torch.softmax(q @ k, dim=-1)  # (B, N, N)
        v = self.value(x).flatten(2)  # (B, C, N)
        out = (v @ attn.transpose(1, 2)).view(b, c, h, w)
        return x + self.gamma * out


class ResBlockDown(nn.Module):
    """Residual downsampling block (optionally instance-normed), halving the resolution."""

    def __init__(self, cin: int, cout: int, norm: bool = False):
        super().__init__()
        self.conv1 = sn_conv(cin, cout)
        self.conv2 = sn_conv(cout, cout)
        self.skip = sn_conv(cin, cout, 1)
        self.norm1 = nn.InstanceNorm2d(cin, affine=True) if norm else nn.Identity()
        self.norm2 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        h = self.conv2(F.relu(self.norm2(h)))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


class DownBlock(nn.Module):
    """Instance-normed residual block that halves the resolution first: its convolutions run at the lower
    resolution (a quarter of ResBlockDown's cost), which is what keeps the U-Net generators (warp_generator.py,
    mouth_generator.py) inside a CPU's frame budget."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.norm2 = nn.InstanceNorm2d(cin, affine=True), nn.InstanceNorm2d(cout, affine=True)
        self.conv1, self.conv2, self.skip = sn_conv(cin, cout), sn_conv(cout, cout), sn_conv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 2)
        h = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(h))) + self.skip(x)


class AdaINResBlock(nn.Module):
    """Residual block whose two normalisations are AdaIN; `up` doubles the resolution first.

    It takes its AdaIN parameters as one flat slice: [gamma1, beta1, gamma2, beta2].
    """

    def __init__(self, cin: int, cout: int, up: bool = False):
        super().__init__()
        self.up = up
        self.cin, self.cout = cin, cout
        self.conv1 = sn_conv(cin, cout)
        self.conv2 = sn_conv(cout, cout)
        self.skip = sn_conv(cin, cout, 1) if (cin != cout or up) else nn.Identity()

    @property
    def n_params(self) -> int:
        return 2 * self.cin + 2 * self.cout

    def forward(self, x: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        g1, b1, g2, b2 = torch.split(psi, [self.cin, self.cin, self.cout, self.cout], dim=1)
        h = F.relu(adain(x, g1, b1))
        if self.up:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv1(h)
        h = self.conv2(F.relu(adain(h, g2, b2)))
        return h + self.skip(x)


def encoder_channels(base: int, top: int, blocks: int) -> list[int]:
    """Channels after each of `blocks` downsampling blocks: base, 2·base, ... capped at top."""
    return [min(base * 2**i, top) for i in range(blocks)]


def encoder_trunk(cfg) -> tuple[list[nn.Module], int]:
    """The trunk E and D share: image ⊕ landmarks (6 channels) -> residual down blocks without normalisation,
    self-attention at cfg.encoder_attention. Returns the blocks and the channels they end with."""
    blocks, cin, size = [], 6, cfg.image_size
    for c in encoder_channels(cfg.base_channels, cfg.max_channels, cfg.encoder_blocks):
        blocks.append(ResBlockDown(cin, c))
        size //= 2
        cin = c
        if size == cfg.encoder_attention:
            blocks.append(SelfAttention(c))
    return blocks, cin


def bake_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace spectral-norm parametrisations by the plain weights they compute (for export and inference)."""
    from torch.nn.utils import parametrize

    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module
