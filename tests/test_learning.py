"""Learning, tested as a user would notice it: each step moves only its own networks; G draws a face rather than
a flat colour; the warp-conditioned G repaints where the warp is wrong and leaves the rest; fine-tuning starts
where the paper says and improves the person's images.

All on the painted clip the tests generate (conftest's `data`), at 64 x 64 with one thread.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training needs torch (pip install -e .[train])")

from avatar_app.model.checkpoint import build_networks  # noqa: E402
from avatar_app.training.config import FinetuneConfig, TrainingConfig  # noqa: E402
from avatar_app.training.dataset import EpisodeDataset, read_index  # noqa: E402
from avatar_app.training.loop import MetaLearner  # noqa: E402
from avatar_app.training.losses import ContentLoss  # noqa: E402
from avatar_app.training.steps import discriminator_step, generator_step  # noqa: E402
from tests.conftest import TINY, TINY_WARP  # noqa: E402

KEYS = ("frames", "landmarks", "target", "target_landmarks", "video", "warp", "mouth")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(items: list[dict]) -> dict:
    return {k: torch.stack([i[k] for i in items]) for k in KEYS if k in items[0]}


class Learner:
    """E, G and D of one configuration with the loop's optimisers, stepped by the loop's own step functions."""

    def __init__(self, cfg, config: TrainingConfig, seed: int = 0):
        nets = build_networks(cfg, num_videos=1, seed=seed)
        self.nets, self.config = nets, config
        self.eg = MetaLearner(nets.embedder, nets.generator)
        self.opt_g = torch.optim.Adam(self.eg.parameters(), lr=config.lr_generator, betas=config.betas)
        self.opt_d = torch.optim.Adam(nets.discriminator.parameters(), lr=config.lr_discriminator, betas=config.betas)
        self.content = ContentLoss(None, None, 0, 0, config.l1_weight)
        self.steps = 0

    def step(self, b: dict):
        self.steps += 1
        g = generator_step(self.eg, self.nets.discriminator, self.content, self.opt_g, b, self.config, self.steps)
        discriminator_step(self.nets.discriminator, self.opt_d, b, g)
        return g

    def draw(self, b: dict):
        """G's output (and, warp-conditioned, its mask) for a batch, without learning."""
        self.eg.eval()
        with torch.no_grad():
            n, k = b["frames"].shape[:2]
            e = self.nets.embedder(b["frames"].flatten(0, 1), b["landmarks"].flatten(0, 1)).view(n, k, -1).mean(1)
            psi = self.nets.generator.project(e)
            if "warp" in b:
                out = self.nets.generator(b["warp"], b["target_landmarks"], psi)
            else:
                out = (self.nets.generator(b["target_landmarks"], psi), None)
        self.eg.train()
        return out


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _moved(module, before: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in module.named_parameters() if not torch.equal(p.detach(), before[n])}


@pytest.mark.parametrize("cfg", [TINY, TINY_WARP], ids=["landmarks", "warp"])
def test_each_step_moves_only_its_own_networks(data, cfg):
    ds = EpisodeDataset(read_index(data), 64, 4, 1, warps=cfg.conditioning == "warp")
    learner = Learner(cfg, TrainingConfig(batch_size=2, shots=4))
    e, g, d = learner.nets.embedder, learner.nets.generator, learner.nets.discriminator
    b = _batch([ds[(0, 1)], ds[(0, 2)]])
    before = {m: _snapshot(m) for m in (e, g, d)}

    step = generator_step(learner.eg, d, learner.content, learner.opt_g, b, learner.config, 1)
    moved_g = _moved(g, before[g])
    # Self-attention starts switched off (gamma = 0, SAGAN), so its query, key and value get no gradient yet.
    attention = {n for n in before[e] if any(f".{w}." in n for w in ("query", "key", "value"))}
    assert _moved(e, before[e]) == set(before[e]) - attention, "the E/G step left part of E untouched"
    assert any(n.startswith("project.") for n in moved_g), "P (e_hat -> psi) did not learn"
    assert any(not n.startswith("project.") for n in moved_g), "G's own layers did not learn"
    assert not _moved(d, before[d]), "the E/G step changed D (or its rows W)"

    after_g = {m: _snapshot(m) for m in (e, g)}
    discriminator_step(d, learner.opt_d, b, step)
    moved_d = _moved(d, before[d])
    assert "W.weight" in moved_d, "the D step did not pull the video's row W_i towards e_hat"
    assert moved_d - {"W.weight"}, "the D step did not train D's own layers"
    assert not _moved(e, after_g[e]) and not _moved(g, after_g[g]), "the D step changed E or G"


def test_g_draws_the_clip_not_a_flat_colour_with_the_papers_learning_rates(data):
    """Overfit the painted clip at 64²: held-out frames of it must come out far closer than the best single
    colour can (a collapsed G, or one whose contrast shrinks with |e_hat|, cannot), with the target's contrast."""
    ds = EpisodeDataset(read_index(data), 64, 4, 1)
    learner = Learner(TINY, TrainingConfig(batch_size=1, shots=4))  # lr 5e-5 (E, G) and 2e-4 (D)
    for step in range(1, 251):
        learner.step(_batch([ds[(0, step)]]))
    val = _batch([ds[(0, 10_000 + i)] for i in range(8)])
    out, _ = learner.draw(val)
    target = val["target"]
    flat = target.flatten(2).median(dim=2).values[:, :, None, None]  # the L1-best colour of each frame
    l1, l1_flat = float((out - target).abs().mean()), float((flat - target).abs().mean())
    assert l1 <= 0.5 * l1_flat, (l1, l1_flat)
    assert abs(float(out.std()) - float(target.std())) <= 0.3 * float(target.std()), (float(out.std()), float(target.std()))


def test_the_warp_generator_repaints_where_the_warp_is_wrong_and_keeps_the_rest(data):
    """Episodes whose warp has lost its lower half (black): G must open its mask there and draw the face back
    from the landmarks and the identity, and keep the warp where it is right. A G whose correction were thrown
    away (mask 0) or applied everywhere fails."""
    ds = EpisodeDataset(read_index(data), 64, 4, 1, warps=True)

    def broken(item: dict) -> dict:
        warp = item["warp"].clone()
        warp[:, 32:] = 0.0
        return {**item, "warp": warp}

    learner = Learner(TINY_WARP, TrainingConfig(batch_size=1, shots=4, lr_generator=2e-4, lr_discriminator=4e-4))
    for step in range(1, 151):
        learner.step(_batch([broken(ds[(0, step)])]))
    val = _batch([broken(ds[(0, 10_000 + i)]) for i in range(8)])
    out, mask = learner.draw(val)
    target, warp = val["target"], val["warp"]
    lost, kept = (slice(None), slice(None), slice(32, None)), (slice(None), slice(None), slice(None, 32))
    assert float((out - target)[lost].abs().mean()) <= 0.3 * float((warp - target)[lost].abs().mean())
    assert float(mask[lost].mean()) > 0.5 > 0.2 > float(mask[kept].mean())
    assert float((out - target)[kept].abs().mean()) <= 1.2 * float((warp - target)[kept].abs().mean()) + 0.01


@pytest.mark.parametrize("cfg", [TINY, TINY_WARP], ids=["landmarks", "warp"])
def test_finetuning_starts_at_p_e_hat_and_w0_plus_e_hat_and_its_error_falls(generated_driver, cfg):
    from avatar_app.pipeline.sources import SourceSettings, VideoFileSource
    from avatar_app.pipeline.tracker import detect_portrait
    from avatar_app.training.finetune import finetune_networks

    with VideoFileSource(SourceSettings(spec=str(generated_driver))) as video:
        pictures = [f.image for f in video][::15][:3]
    points = [detect_portrait(p, name="frame").points for p in pictures]

    nets = build_networks(cfg, num_videos=3, seed=0)
    w0 = nets.discriminator.w0_b.parametrizations.weight.original.detach().clone()
    start = finetune_networks(nets, pictures, points, FinetuneConfig(steps=0), torch.device("cpu"), progress=False)
    with torch.no_grad():
        e_hat = nets.embedder(start.frames, start.marks).mean(dim=0, keepdim=True)
        assert torch.allclose(start.psi, nets.generator.project(e_hat), atol=1e-6)
    assert torch.allclose(start.e_hat, e_hat, atol=1e-6)
    assert torch.equal(start.discriminator.W.weight.detach(), start.e_hat)  # D's row: w0 + e_hat
    assert torch.equal(start.discriminator.w0_b.parametrizations.weight.original.detach(), w0)
    assert start.l1_after == pytest.approx(start.l1_before)

    nets = build_networks(cfg, num_videos=3, seed=0)
    tuned = finetune_networks(nets, pictures, points, FinetuneConfig(steps=40, lr_generator=2e-4, lr_discriminator=4e-4),
                              torch.device("cpu"), progress=False)
    assert tuned.l1_after < 0.9 * tuned.l1_before, (tuned.l1_before, tuned.l1_after)
    assert not torch.allclose(tuned.psi, start.psi), "psi' did not learn"


def test_the_content_loss_weighs_the_mouth_and_structure():
    """The shipped model's content loss: pixel L1, 1 - SSIM, and extra L1 inside the mouth, where a warp is most
    wrong. An error inside the mouth must cost more than the same error elsewhere."""
    loss = ContentLoss(None, None, 0, 0, l1_weight=10.0, ssim_weight=2.0, mouth_weight=2.0)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    mouth = torch.zeros(1, 1, 32, 32)
    mouth[..., 20:26, 10:22] = 1
    same, parts = loss(real, real, mouth)
    assert float(same) == pytest.approx(0.0, abs=1e-5) and set(parts) == {"l1", "mouth", "ssim"}
    inside, outside = real.clone(), real.clone()
    inside[..., 20:26, 10:22] += 0.5
    outside[..., 2:8, 10:22] += 0.5
    assert float(loss(inside, real, mouth)[0]) > 2 * float(loss(outside, real, mouth)[0])
