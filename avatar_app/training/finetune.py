"""Few-shot fine-tuning (the paper's FT stage): a meta-learned model made personal from K images of one person.

psi' starts at P e_hat and becomes a free parameter; D's row for this person starts at w0 + e_hat (here: a
one-row W initialised to e_hat, added to D's shared w0); G and D then train on the K images with the content
and adversarial losses (no match loss). The fine-tuned G is exported like any checkpoint, and the avatar file
stores e_hat and psi' tagged with that export's model id, so the generator and its psi belong together.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avatar_app.errors import AvatarAppError, OutputPathError
from avatar_app.face.crop import CROP_SCALE, box_affine, crop_box, face_crop
from avatar_app.face.landmark_image import draw_landmarks
from avatar_app.model.format import NeuralIdentity, read_manifest
from avatar_app.training.config import FinetuneConfig
from avatar_app.training.losses import ContentLoss, discriminator_hinge, feature_matching, generator_adversarial
from avatar_app.training.perceptual import VGG19, VGGFACE, load_perceptual


@dataclass
class FinetuneResult:
    model_dir: Path
    avatar: Path
    sheet: Path
    model_id: str
    steps: int
    l1_before: float  # mean |output - image| over the K images, RGB in [-1, 1]
    l1_after: float
    seconds: float


def _crop(image: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """RGB float32 (3, size, size) in [-1, 1]: the square ``box`` of a BGR image, as the app's neural renderer cuts it."""
    patch = face_crop(image, box_affine(box, size), size)
    return (patch[:, :, ::-1].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)


def _face_crops(images: list[np.ndarray], points: list[np.ndarray], size: int, thickness: int, crop_scale: float):
    """The K images as the model sees them: (K, 3, S, S) RGB in [-1, 1] and landmark images in [0, 1]."""
    frames, marks = [], []
    for image, p in zip(images, points):
        box = crop_box(p, crop_scale)
        frames.append(_crop(image, box, size))
        marks.append(draw_landmarks(p, box, size, thickness).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(frames)), torch.from_numpy(np.stack(marks))


def warp_pairs(images: list[np.ndarray], points: list[np.ndarray], size: int, crop_scale: float) -> torch.Tensor:
    """(K, K, 3, S, S): the mesh renderer's warp of image a to image b's landmarks, at b's face crop - the
    warp-conditioned G's input, made as the app makes it (the warp of an image to its own landmarks is itself)."""
    from avatar_app.pipeline.avatar import Avatar
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.render.mesh import MeshRenderer
    from avatar_app.face.mesh_layout import build_mesh

    k = len(images)
    out = np.zeros((k, k, 3, size, size), np.float32)
    renderer = MeshRenderer()
    for a, (image, p) in enumerate(zip(images, points)):
        h, w = image.shape[:2]
        renderer.prepare(Avatar(name=str(a), image=image, landmarks=p, mesh=build_mesh(p, (w, h))),
                         RenderSettings(size=max(w, h) + max(w, h) % 2))
        scale = renderer.output_size[0] / w
        for b, q in enumerate(points):
            warped = renderer.render(q)
            x0, y0, side = crop_box(q, crop_scale)
            out[a, b] = _crop(warped, (x0 * scale, y0 * scale, side * scale), size)
    renderer.close()
    return torch.from_numpy(out)


@dataclass
class Tuned:
    """A fine-tuned generator and the person's ê and ψ' (the networks stay on the device they were tuned on)."""

    generator: nn.Module
    discriminator: nn.Module  # the person's D: one row in W, started at e_hat
    e_hat: torch.Tensor  # (1, E)
    psi: torch.Tensor  # (1, n_psi)
    before: torch.Tensor  # G's output on the K images before and after fine-tuning, (K, 3, S, S)
    after: torch.Tensor
    frames: torch.Tensor  # the K crops and their landmark images
    marks: torch.Tensor
    l1_before: float
    l1_after: float
    seconds: float


def finetune_networks(nets, pictures: list[np.ndarray], points: list[np.ndarray], config: FinetuneConfig,
                      device: torch.device, content_loss: nn.Module | None = None, progress: bool = True) -> Tuned:
    """The paper's FT on K images of one person: ψ' starts at P·ê, D's row for the person at ê (added to the
    shared w0), then G (with ψ') and D take ``config.steps`` steps on the K images. A warp-conditioned G learns
    to correct the warp of one of the images (chosen at random per step) to each image's landmarks.

    ``nets`` is changed in place (its G is the tuned one)."""
    from tqdm import tqdm

    from avatar_app.model.discriminator import Discriminator

    cfg = nets.config
    if cfg.conditioning == "mouth":
        raise AvatarAppError("fine-tuning does not handle the mouth model yet - give a face model")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    frames, marks = (t.to(device) for t in _face_crops(pictures, points, cfg.image_size, cfg.landmark_thickness, CROP_SCALE))
    k = len(frames)
    warped = cfg.conditioning == "warp"
    warps = warp_pairs(pictures, points, cfg.image_size, CROP_SCALE).to(device) if warped else None
    E, G = nets.embedder.to(device).eval(), nets.generator.to(device).eval()

    def generate(psi: torch.Tensor, sources: np.ndarray | None = None) -> torch.Tensor:
        if not warped:
            return G(marks, psi.expand(k, -1))
        sources = np.arange(k) if sources is None else sources
        warp = warps[torch.as_tensor(sources, device=device), torch.arange(k, device=device)]  # (K, 3, S, S)
        return G(warp, marks, psi.expand(k, -1))[0]

    with torch.no_grad():
        e_hat = E(frames, marks).mean(dim=0, keepdim=True)  # (1, E)
        psi = nn.Parameter(G.project(e_hat).clone())  # (1, n_psi): psi' starts at P e_hat
        # Before and after are judged on the same pairs: each image from its neighbour (itself when K = 1).
        judge = (np.arange(k) + 1) % k
        before = generate(psi, judge)

    # D for this person: its W has one row, e_hat, so the projection term is v . (w0 + e_hat) + b.
    D = Discriminator(cfg, 1).to(device)
    state = nets.discriminator.state_dict()
    state["W.weight"] = e_hat.detach().clone()
    D.load_state_dict(state)
    who = torch.zeros(k, dtype=torch.long, device=device)

    if content_loss is None:
        content_loss = ContentLoss(None, None, config.vgg19_weight, config.vggface_weight, config.l1_weight).to(device)
    G.project.requires_grad_(False)  # P is out of the picture now: psi' is the person's own
    G.train()
    D.train()
    opt_g = torch.optim.Adam([p for p in G.parameters() if p.requires_grad] + [psi], lr=config.lr_generator, betas=config.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_discriminator, betas=config.betas)
    start = time.perf_counter()
    for _ in tqdm(range(config.steps), desc="fine-tuning", unit="step", disable=not progress, dynamic_ncols=True):
        D.requires_grad_(False)
        fake = generate(psi, rng.integers(0, k, size=k) if warped else None)
        fake_score, fake_features = D(fake, marks, who)
        with torch.no_grad():
            _, real_features = D(frames, marks, who)
        content, _ = content_loss(fake, frames)
        loss_g = content + generator_adversarial(fake_score) + config.feature_matching_weight * feature_matching(fake_features, real_features)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
        scores, _ = D(torch.cat([frames, fake.detach()]), torch.cat([marks, marks]), torch.cat([who, who]))
        loss_d = discriminator_hinge(*scores.chunk(2))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if not (torch.isfinite(loss_g) and torch.isfinite(loss_d)):
            raise AvatarAppError("fine-tuning losses became NaN or infinite - try fewer --steps")
    seconds = time.perf_counter() - start
    G.requires_grad_(True)
    G.eval()
    with torch.no_grad():
        after = generate(psi, judge)
    l1 = lambda x: float((x - frames).abs().mean())  # noqa: E731
    return Tuned(G, D, e_hat.detach(), psi.detach(), before, after, frames, marks, l1(before), l1(after), seconds)


class TunedModel:
    """A fine-tuned G (in torch) behind ExportedModel's interface, so the app's NeuralRenderer runs it as it runs
    an export: what `evaluate` uses for its neural-ft rows, without writing a model folder per person."""

    def __init__(self, nets, tuned: Tuned):
        cfg = nets.config
        self.size, self.thickness, self.crop_scale = cfg.image_size, cfg.landmark_thickness, CROP_SCALE
        self.conditioning, self.runtime, self.provider = cfg.conditioning, "torch", "cpu"
        self.generator = tuned.generator.cpu().eval()
        self.model_id = f"finetuned-{id(self):x}"
        self.identity_of_person = NeuralIdentity(self.model_id, tuned.e_hat[0].cpu().numpy().astype(np.float32),
                                                 tuned.psi[0].cpu().numpy().astype(np.float32))

    @classmethod
    def finetune(cls, checkpoint: str | Path, pictures: list[np.ndarray], points: list[np.ndarray], steps: int,
                 seed: int = 0) -> TunedModel:
        """FT from a training checkpoint on K pictures (BGR) with their 478 landmarks, at the rates the shipped
        model was meta-learned with (FinetuneConfig's are the paper's, too slow for a few dozen steps)."""
        from avatar_app.model.checkpoint import load_checkpoint

        nets, raw = load_checkpoint(checkpoint)
        training = raw.get("training") or {}
        config = FinetuneConfig(steps=steps, seed=seed, lr_generator=float(training.get("lr_generator", 5e-5)),
                                lr_discriminator=float(training.get("lr_discriminator", 2e-4)))
        tuned = finetune_networks(nets, pictures, points, config, torch.device("cpu"), progress=False)
        return cls(nets, tuned)

    def correct(self, warp: np.ndarray, landmarks: np.ndarray, psi: np.ndarray):
        with torch.no_grad():
            rgb, mask = self.generator.correction(torch.from_numpy(warp), torch.from_numpy(landmarks), torch.from_numpy(psi))
        return rgb.numpy(), mask.numpy()

    def generate(self, landmarks: np.ndarray, psi: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.generator(torch.from_numpy(landmarks), torch.from_numpy(psi)).numpy()


def finetune(checkpoint: str | Path, images: list[str | Path], out_dir: str | Path,
             config: FinetuneConfig = FinetuneConfig(), *, name: str | None = None,
             formats: tuple[str, ...] = ("onnx", "torchscript"), vgg19: str | Path | None = None,
             vggface: str | Path | None = None, device: str = "auto", progress: bool = True) -> FinetuneResult:
    from avatar_app.pipeline.avatar import create_avatar, save_avatar
    from avatar_app.images import load_image, save_image_atomic
    from avatar_app.model.checkpoint import Networks, load_checkpoint, save_checkpoint
    from avatar_app.model.export import export_checkpoint
    from avatar_app.pipeline.tracker import detect_portrait
    from avatar_app.training.distributed import pick_device
    from avatar_app.training.monitor import sample_grid

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"{out_dir}: is a file - give a folder for the fine-tuned model and avatar")
    if not out_dir.parent.is_dir():
        raise OutputPathError(f"{out_dir}: folder '{out_dir.parent}' does not exist - create it first")
    if not images:
        raise AvatarAppError("no images given - pass one or more photos of the person with --images")
    nets, _ = load_checkpoint(checkpoint)
    cfg = nets.config
    if cfg.conditioning == "mouth":
        raise AvatarAppError(f"{checkpoint}: a mouth model, which fine-tuning does not handle yet - give a face "
                             "model's checkpoint")
    # Faces first: a photo without one should fail before any training.
    paths = [Path(p) for p in images]
    pictures = [load_image(p) for p in paths]
    avatar = create_avatar(pictures[0], name=name or paths[0].stem)
    points = [avatar.landmarks] + [detect_portrait(img, name=p.stem).points for img, p in zip(pictures[1:], paths[1:])]

    dev = pick_device(device)
    content_loss = ContentLoss(load_perceptual(VGG19, vgg19) if vgg19 else None,
                               load_perceptual(VGGFACE, vggface) if vggface else None,
                               config.vgg19_weight, config.vggface_weight, config.l1_weight).to(dev)
    if not content_loss.perceptual:
        warnings.warn("no --vgg19-weights / --vggface-weights: fine-tuning uses pixel L1 (with feature matching) "
                      "as its content loss", stacklevel=2)
    tuned = finetune_networks(nets, pictures, points, config, dev, content_loss, progress)

    out_dir.mkdir(exist_ok=True)
    sheet = out_dir / "finetune.png"
    grid_before = sample_grid(tuned.marks, tuned.frames, tuned.before, rows=8)
    grid_after = sample_grid(tuned.marks, tuned.frames, tuned.after, rows=8)
    s = cfg.image_size
    save_image_atomic(sheet, np.concatenate([grid_before, grid_after[:, 2 * s:]], axis=1))

    done = Networks(cfg, nets.embedder.cpu(), tuned.generator.cpu(), nets.discriminator)
    tmp = out_dir / ".finetuned.pt"
    try:
        save_checkpoint(tmp, done)
        export_checkpoint(tmp, out_dir / "model", list(formats))
    finally:
        tmp.unlink(missing_ok=True)
    model_id = str(read_manifest(out_dir / "model")["model_id"])
    avatar.neural = NeuralIdentity(model_id, tuned.e_hat[0].cpu().numpy().astype(np.float32),
                                   tuned.psi[0].cpu().numpy().astype(np.float32))
    avatar_path = save_avatar(avatar, out_dir / f"{avatar.name}.avatar")
    return FinetuneResult(out_dir / "model", avatar_path, sheet, model_id, config.steps, tuned.l1_before,
                          tuned.l1_after, tuned.seconds)
