"""The losses of meta-learning and fine-tuning (Zakharov et al. 2019), apart from the loop that applies them.

Generator side: content (perceptual, or pixel L1 without perceptual weights; SSIM and a mouth-weighted L1 for
the warp-conditioned G) + adversarial (-r(fake)) + feature
matching on the discriminator's activations (weight 10) + embedding match |W_i - e_hat_i| (weight 80).
Discriminator side: hinge, max(0, 1 + r(fake)) + max(0, 1 - r(real)), plus the same match term pulling the
video's row W_i towards the embedder's e_hat_i (held fixed there), so both embeddings meet; that is what
lets fine-tuning start D's row at w0 + e_hat.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_app.training.perceptual import PerceptualNet


def discriminator_hinge(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def generator_adversarial(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def feature_matching(fake_features: list[torch.Tensor], real_features: list[torch.Tensor]) -> torch.Tensor:
    """Mean over D's layers of the L1 distance between its activations on the output and on the real frame."""
    return sum(F.l1_loss(a, b.detach()) for a, b in zip(fake_features, real_features)) / len(fake_features)


def embedding_match(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per dimension (the paper's L1 norm, averaged so the weight does not scale with 512)."""
    return F.l1_loss(a, b)


class ContentLoss(nn.Module):
    """L1 between perceptual features of output and target, weighted per network as in the paper; with no
    network given, L1 between the pixels instead (training then leans on feature matching for detail)."""

    def __init__(self, vgg19: PerceptualNet | None, vggface: PerceptualNet | None,
                 vgg19_weight: float, vggface_weight: float, l1_weight: float, ssim_weight: float = 0.0,
                 mouth_weight: float = 0.0):
        super().__init__()
        self.vgg19, self.vggface = vgg19, vggface
        self.weights = {"vgg19": vgg19_weight, "vggface": vggface_weight}
        self.l1_weight, self.ssim_weight, self.mouth_weight = l1_weight, ssim_weight, mouth_weight

    @property
    def perceptual(self) -> bool:
        return self.vgg19 is not None or self.vggface is not None

    def forward(self, fake: torch.Tensor, real: torch.Tensor,
                mouth: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """fake, real (B, 3, H, W) in [-1, 1]; mouth (B, 1, H, W), where the pixel L1 counts mouth_weight more."""
        parts: dict[str, torch.Tensor] = {}
        for name, net in (("vgg19", self.vgg19), ("vggface", self.vggface)):
            if net is not None:
                with torch.no_grad():
                    want = net(real)
                got = net(fake)
                parts[name] = self.weights[name] * sum(F.l1_loss(a, b) for a, b in zip(got, want))
        if not parts:
            parts["l1"] = self.l1_weight * F.l1_loss(fake, real)
        if mouth is not None and self.mouth_weight:
            # Mean L1 over the mouth's pixels (a few percent of the crop, so a plain mean would hardly see them).
            err = (fake - real).abs().mean(dim=1, keepdim=True) * mouth
            parts["mouth"] = self.l1_weight * self.mouth_weight * err.sum() / mouth.sum().clamp(min=1.0)
        if self.ssim_weight:
            from pytorch_msssim import ssim

            parts["ssim"] = self.ssim_weight * (1 - ssim((fake + 1) / 2, (real + 1) / 2, data_range=1.0, win_size=7))
        return sum(parts.values()), parts
