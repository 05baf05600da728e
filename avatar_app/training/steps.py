"""One meta-learning step, apart from the loop that feeds it (stylegan3's loss.py / training_loop.py split).

E/G step: E embeds the K frames of each episode, G draws the target (ψ = P·ê), and E, G and P take one step on
content + adversarial + feature matching + match; D is only a judge there (its weights and W get no gradient).
D step: the hinge loss on real and (detached) fake frames, plus the match term for the video's row W_i, pulled
towards ê (held fixed). Tests drive these functions directly to check which parameters each one moves.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from avatar_app.training.config import TrainingConfig
from avatar_app.training.losses import discriminator_hinge, embedding_match, feature_matching, generator_adversarial


def _descend(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler=None) -> None:
    """One optimiser step on ``loss`` (through the AMP grad scaler when there is one)."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
        return
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()


@dataclass
class GeneratorStep:
    """What the E/G step leaves for the D step and the log."""

    fake: torch.Tensor  # (B, 3, S, S), detached from nothing yet
    e_hat: torch.Tensor  # (B, E)
    loss: torch.Tensor
    scalars: dict[str, float]
    match_weight: float


def generator_step(eg: nn.Module, disc: nn.Module, content_loss: nn.Module, opt: torch.optim.Optimizer, b: dict,
                   config: TrainingConfig, step: int, disc_for_judging: nn.Module | None = None,
                   scaler=None, autocast=contextlib.nullcontext) -> GeneratorStep:
    """One Adam step of E, G and P on batch ``b``; ``step`` (from 1) sets the match term's ramp."""
    judge = disc_for_judging or disc
    disc.requires_grad_(False)
    with autocast():
        fake, e_hat = eg(b["frames"], b["landmarks"], b["target_landmarks"], b.get("warp"), b.get("driver"))
        fake_score, fake_features = judge(fake, b["target_landmarks"], b["video"])
        with torch.no_grad():
            _, real_features = judge(b["target"], b["target_landmarks"], b["video"])
        content, parts = content_loss(fake, b["target"], b.get("mouth"))
    fake, content = fake.float(), content.float()
    adversarial = generator_adversarial(fake_score.float())
    fm = feature_matching([f.float() for f in fake_features], [f.float() for f in real_features])
    match = embedding_match(e_hat.float(), disc.W(b["video"]).detach())
    match_weight = config.match_weight_at(step)
    loss = content + adversarial + config.feature_matching_weight * fm + match_weight * match
    _descend(loss, opt, scaler)
    disc.requires_grad_(True)
    scalars = {"G": loss.item(), "content": content.item(), **{f"content_{k}": v.item() for k, v in parts.items()},
               "adversarial": adversarial.item(), "feature_matching": fm.item(), "match": match.item(),
               "e_hat_norm": e_hat.detach().norm(dim=1).mean().item()}
    return GeneratorStep(fake, e_hat, loss, scalars, match_weight)


def discriminator_step(disc: nn.Module, opt: torch.optim.Optimizer, b: dict, g: GeneratorStep,
                       disc_run: nn.Module | None = None, scaler=None, autocast=contextlib.nullcontext) -> dict:
    """One Adam step of D (with W) on real and the E/G step's (detached) fake frames; returns its scalars."""
    run = disc_run or disc
    with autocast():
        scores, _ = run(torch.cat([b["target"], g.fake.detach()]), torch.cat([b["target_landmarks"]] * 2),
                        torch.cat([b["video"]] * 2))
    real_score, fake_score = scores.float().chunk(2)
    loss = discriminator_hinge(real_score, fake_score) + \
        g.match_weight * embedding_match(disc.W(b["video"]), g.e_hat.detach().float())
    _descend(loss, opt, scaler)
    return {"D": loss.item(), "real_score": real_score.mean().item(), "fake_score": fake_score.mean().item(),
            "loss": loss}
