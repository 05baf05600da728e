"""Shared fixtures: the shipped portraits as avatars, and a driver clip the project makes itself.

The generated clip is a painting animated by our own renderer (neutral, mouth opening, head turning) from
landmarks scripted as the demo source scripts them (pipeline/demo.py), so the core path is testable on a fresh
clone without ../shared.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from avatar_app.model.config import ModelConfig as _ModelConfig
from avatar_app.pipeline.demo import open_mouth, turn_head  # noqa: F401 - tests import them from here

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
PORTRAITS = REPO / "assets" / "portraits"
MEDIA = REPO.parent / "shared" / "media"


def shared_media(name: str) -> Path:
    """A file from ../shared/media, or a skip that says why (the suite must pass on a user's fresh clone)."""
    path = MEDIA / name
    if not path.is_file():
        pytest.skip(f"shared developer media not found: {path} (only present beside the developers' checkout)")
    return path


@pytest.fixture(scope="session")
def mona_avatar():
    from avatar_app.pipeline.avatar import create_avatar
    from avatar_app.images import load_image

    return create_avatar(load_image(PORTRAITS / "mona_lisa.jpg"), "mona_lisa")


@pytest.fixture(scope="session")
def girl_avatar():
    from avatar_app.pipeline.avatar import create_avatar
    from avatar_app.images import load_image

    return create_avatar(load_image(PORTRAITS / "girl_with_a_pearl_earring.jpg"), "girl")


@pytest.fixture(scope="session")
def generated_driver(tmp_path_factory, girl_avatar) -> Path:
    """A 40-frame, 25 fps clip of the Girl with a Pearl Earring: still, opening her mouth, turning her head."""
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.render.mesh import MeshRenderer
    from avatar_app.pipeline.sinks import VideoFileSink

    renderer = MeshRenderer()
    renderer.prepare(girl_avatar, RenderSettings(size=384))
    neutral = girl_avatar.landmarks
    targets = [neutral] * 8
    targets += [open_mouth(neutral, 0.45 * min(k, 6) / 6) for k in range(1, 13)]
    targets += [turn_head(neutral, yaw=-18 * min(k, 5) / 5) for k in range(1, 11)]
    targets += [neutral] * 10
    path = tmp_path_factory.mktemp("driver") / "generated_driver.mp4"
    with VideoFileSink(path, fps=25, size=renderer.output_size) as sink:
        for t in targets:
            sink.write(renderer.render(t))
    return path


# -- training data and a tiny network configuration (tests/test_training.py, tests/test_learning.py) -----------
# At 64 x 64 each step takes well under a second on a CPU; the data is the painted clip above beside a clip with
# no face in it.
TINY = _ModelConfig(
    name="tiny", image_size=64, embed_dim=64, base_channels=8, max_channels=32, encoder_blocks=4, encoder_attention=16,
    gen_channels=(8, 16, 32), gen_stem_stride=2, gen_middle_blocks=1, gen_attention_down=(), gen_attention_up=(),
    landmark_thickness=1,
)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two OpenMP threads on two busy cores can run ~10x slower than one; the tiny networks are too small to care."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.json"
    path.write_text(json.dumps(TINY.to_dict()))
    return path


@pytest.fixture(scope="session")
def videos(tmp_path_factory, generated_driver) -> Path:
    """VoxCeleb2-like layout: id/video/clip.mp4 for the painted face, and a clip of a wall at the top."""
    from avatar_app.pipeline.sinks import VideoFileSink

    root = tmp_path_factory.mktemp("videos")
    (root / "id001" / "paintingA").mkdir(parents=True)
    shutil.copy(generated_driver, root / "id001" / "paintingA" / "00001.mp4")
    rng = np.random.default_rng(0)
    with VideoFileSink(root / "wall.mp4", fps=25, size=(96, 96)) as sink:
        for _ in range(20):
            sink.write(np.full((96, 96, 3), 120, np.uint8) + rng.integers(0, 8, (96, 96, 3), dtype=np.uint8))
    return root


@pytest.fixture(scope="session")
def data(videos, tmp_path_factory) -> Path:
    from avatar_app.commands.cli import main

    out = tmp_path_factory.mktemp("prepared") / "data"
    assert main(["prepare-data", str(videos), "--out", str(out), "--size", "64", "--min-frames", "10"]) == 0
    return out
# The same sizes with the warp-conditioned generator (the realtime configuration's design).
TINY_WARP = _ModelConfig(
    name="tiny-warp", image_size=64, embed_dim=64, base_channels=8, max_channels=32, encoder_blocks=4,
    encoder_attention=16, gen_channels=(8, 16, 32), gen_middle_blocks=1, gen_attention_down=(), gen_attention_up=(),
    landmark_thickness=1, conditioning="warp",
)


# -- the call's picture (tests/test_call_picture.py, tests/test_background.py) ---------------------------------
@pytest.fixture(scope="module")
def mona(mona_avatar):
    """The Mona Lisa animated by the mesh renderer at 512."""
    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.render.base import RenderSettings

    animator = Animator(mona_avatar, RenderSettings(size=512))
    yield animator
    animator.close()


def call_picture(animator, target, settings=None, stage=None, t=0.0) -> np.ndarray:
    """The call's picture of the avatar at ``target``, as the renderer thread makes it."""
    from avatar_app.call.picture import CallPicture, CallSettings
    from avatar_app.pipeline.frame import Frame
    from avatar_app.pipeline.stages import StageLoop

    stage = stage or CallPicture(settings or CallSettings())
    stage.prepare(animator)  # as the app does before an animation's first frame (the layers, the head's reach)
    frame = Frame(image=np.zeros((8, 8, 3), np.uint8), index=0, t_capture=t, t_media=t)
    frame.target = np.asarray(target, np.float32)
    frame.animator = animator
    StageLoop(animator, call=stage).render(frame)
    assert frame.output is None and frame.picture is frame.call_image
    return frame.call_image


def face_mask(avatar, target, size, affine, shrink=0.8) -> np.ndarray:
    """The inner face of ``target`` (portrait px) in a picture whose pixel u shows portrait px x0 + a * u."""
    import cv2

    from avatar_app.face import landmarks as L

    x0, y0, a = affine
    oval = np.asarray(target)[L.FACE_OVAL, :2]
    oval = oval.mean(0) + shrink * (oval - oval.mean(0))
    pts = (oval - [x0, y0]) / a
    w, h = size
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [np.round(pts).astype(np.int32)], 1)
    return inside.astype(bool)
