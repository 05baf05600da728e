"""The background behind the avatar: the person cut out once per avatar, a colour or blur behind it that stands
still, the cut moving with the head as the renderer moves the hair, and "keep" leaving the picture alone."""

import dataclasses

import cv2
import numpy as np
import pytest

import avatar_app.pipeline.background as background
import avatar_app.pipeline.render.mesh as mesh_module
from avatar_app.face import landmarks as L
from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.background import BackgroundSettings, BackgroundStage, parse_background
from avatar_app.pipeline.frame import Frame
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.stages import StageLoop
from tests.conftest import turn_head

GREEN = (0x40, 0xB1, 0x00)  # #00B140 as (B, G, R)
SIZE = 512


@pytest.fixture(scope="module")
def mona(mona_avatar):
    animator = Animator(mona_avatar, RenderSettings(size=SIZE))
    yield animator
    animator.close()


def _frame(animator, target) -> Frame:
    """A frame as the renderer stage leaves it: target, animation and the rendered output."""
    frame = Frame(image=np.zeros((8, 8, 3), np.uint8), index=0, t_capture=0.0)
    frame.target = np.asarray(target, np.float32)
    frame.animator = animator
    frame.output = animator.render(frame.target)
    return frame


def _keyed(animator, target, settings=BackgroundSettings(mode="colour")):
    """(the renderer's image, the same frame over the background)."""
    frame = _frame(animator, target)
    rendered = frame.output.copy()
    BackgroundStage(settings).process(frame)
    return rendered, frame.output


def _face(animator, target, shrink=0.8, avatar=None) -> np.ndarray:
    """The inner face (the outline shrunk about its centre) of the target, as a boolean image of the output."""
    w, h = animator.output_size
    k = np.array([w, h]) / (avatar or animator.avatar).size
    oval = np.asarray(target)[L.FACE_OVAL, :2] * k
    oval = oval.mean(0) + shrink * (oval - oval.mean(0))
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [np.round(oval).astype(np.int32)], 1)
    return inside.astype(bool)


def _is(image, colour) -> np.ndarray:
    return np.all(image == np.array(colour, np.uint8), axis=-1)


def test_the_person_is_cut_out_once_per_avatar_not_per_frame(mona_avatar, monkeypatch):
    calls = []
    segment = background.segment_person
    monkeypatch.setattr(background, "segment_person", lambda image: calls.append(1) or segment(image))
    avatar = dataclasses.replace(mona_avatar)  # an avatar this process has not seen yet
    animators = [Animator(avatar, RenderSettings(size=size)) for size in (128, 192)]  # a new size: same avatar
    stages = [BackgroundStage(BackgroundSettings(mode="blur")), BackgroundStage(BackgroundSettings(mode="colour"))]
    stages[0].prepare(animators[0])
    for animator in animators:
        for stage in stages:
            for yaw in (0, 5, 10, 15):
                stage.process(_frame(animator, turn_head(avatar.landmarks, yaw=yaw)))
    assert len(calls) == 1
    for animator in animators:
        animator.close()


def test_a_colour_fills_the_scene_far_from_the_person_and_leaves_the_face_alone(mona):
    rest = mona.avatar.landmarks
    rendered, keyed = _keyed(mona, rest)
    h, w = keyed.shape[:2]
    assert _is(keyed[: h // 10, : w // 6], GREEN).all()  # the sky above her shoulders, top left
    assert _is(keyed[: h // 10, -w // 6:], GREEN).all()
    face = _face(mona, rest)
    assert np.array_equal(keyed[face], rendered[face])
    assert 0.2 < _is(keyed, GREEN).mean() < 0.6  # the scene, not the whole picture, nor none of it


def test_any_colour_and_the_command_line_s_spellings():
    assert BackgroundSettings(mode="colour", colour="#FF0000").colour == (0, 0, 255)
    assert BackgroundSettings(mode="colour", colour=(10, 20, 30)).hex == "#1e140a"
    assert parse_background("keep").mode == "keep" and parse_background("blur").mode == "blur"
    assert parse_background("green").colour == GREEN == parse_background("#00B140").colour
    for bad in ("pink", "#12345", "#gg0000"):
        with pytest.raises(ValueError, match="#RRGGBB"):
            parse_background(bad)
    with pytest.raises(ValueError, match="keep, blur, colour"):
        BackgroundSettings(mode="chroma")


@pytest.mark.parametrize("roll", [20, -20])
def test_when_the_head_turns_the_cut_moves_with_the_hair_and_the_far_scene_stays(mona, roll):
    rest = mona.avatar.landmarks
    turned = turn_head(rest, roll=roll)
    _, still = _keyed(mona, rest)
    rendered, moved = _keyed(mona, turned)
    h, w = still.shape[:2]
    k = mona.output_size[0] / mona.avatar.size[0]
    # The hair above her forehead, where it meets the sky: the top of the head swings sideways as it rolls, the
    # renderer moves the hair with it, and the green's edge goes along (a still mask would stay put).
    top_y = rest[10, 1] * k  # landmark 10: the top of the forehead
    head_dx = (turned[10, 0] - rest[10, 0]) * k
    assert abs(head_dx) > 8
    rows = range(int(top_y - 0.05 * h), int(top_y))

    def left_edge(image, row):
        return np.flatnonzero(~_is(image[row], GREEN)).min()

    shift = np.mean([left_edge(moved, r) - left_edge(still, r) for r in rows])
    assert np.sign(shift) == np.sign(head_dx) and abs(shift) >= 2
    # The face that moved is shown whole; the scene far away is all colour still.
    face = _face(mona, turned)
    assert np.array_equal(moved[face], rendered[face])
    assert _is(moved[: h // 10, : w // 6], GREEN).all() and _is(moved[: h // 10, -w // 6:], GREEN).all()
    assert _is(moved[: h // 10], GREEN).mean() > 0.8


def test_the_mask_moves_exactly_as_the_portrait_without_a_second_rasterisation(mona_avatar, monkeypatch):
    from avatar_app.pipeline.render.mesh import MeshRenderer

    renderer = MeshRenderer()
    renderer.prepare(mona_avatar, RenderSettings(size=SIZE))
    calls = []
    rasterise = mesh_module._rasterise_displacement
    monkeypatch.setattr(mesh_module, "_rasterise_displacement", lambda *a: calls.append(1) or rasterise(*a))
    target = turn_head(mona_avatar.landmarks, yaw=15, roll=8)
    out = renderer.render(target)
    drawn = len(calls)
    still = cv2.resize(mona_avatar.image, renderer.output_size, interpolation=cv2.INTER_AREA)
    channel = still[..., 1].astype(np.float32)  # the portrait's green: it must land where render() put it
    moved = renderer.warp_like(channel, target)
    assert len(calls) == drawn > 0
    face = _face(renderer, target, 1.0, mona_avatar)  # where the mouth may be painted over the warp
    assert np.abs(moved - out[..., 1])[~face].max() <= 1.0  # to rounding
    assert np.abs(moved - out[..., 1])[face].mean() <= 1.0
    assert not np.array_equal(moved, channel)
    assert np.array_equal(renderer.warp_like(channel, mona_avatar.landmarks), channel)  # at rest: unmoved


def test_keep_returns_the_renderer_s_image_bit_for_bit(mona):
    target = np.asarray(turn_head(mona.avatar.landmarks, yaw=10), np.float32)
    plain = StageLoop(mona)
    kept = StageLoop(mona, background=BackgroundStage(BackgroundSettings(mode="keep")))
    a = Frame(image=np.zeros((8, 8, 3), np.uint8), index=0, t_capture=0.0, target=target, animator=mona)
    b = Frame(image=np.zeros((8, 8, 3), np.uint8), index=0, t_capture=0.0, target=target, animator=mona)
    plain.render(a)
    kept.render(b)
    assert np.array_equal(a.output, b.output)
    frame = _frame(mona, target)
    before, image = frame.output.copy(), frame.output
    BackgroundStage().process(frame)
    assert frame.output is image and np.array_equal(frame.output, before)


def test_blur_shows_the_portrait_s_own_scene_blurred_and_still(mona):
    rest = mona.avatar.landmarks
    settings = BackgroundSettings(mode="blur")
    rendered, still = _keyed(mona, rest, settings)
    _, moved = _keyed(mona, turn_head(rest, yaw=-12, roll=12), settings)
    h, w = still.shape[:2]
    corner = (slice(0, h // 10), slice(0, w // 6))
    assert np.array_equal(still[corner], moved[corner])  # the scene does not move with the head
    sharp = cv2.Laplacian(cv2.cvtColor(rendered[corner], cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    blurred = cv2.Laplacian(cv2.cvtColor(still[corner], cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    assert blurred < 0.2 * sharp
    assert abs(float(still[corner].mean()) - float(rendered[corner].mean())) < 25  # her sky's colours
    face = _face(mona, rest)
    assert np.array_equal(still[face], rendered[face])


def test_the_neural_renderer_keys_its_picture_by_the_mesh_warp_under_it(mona, mona_avatar):
    pytest.importorskip("onnxruntime")
    avatar = dataclasses.replace(mona_avatar, neural=None)
    animator = Animator(avatar, RenderSettings(size=SIZE, backend="neural"))
    try:
        turned = turn_head(avatar.landmarks, yaw=-12, roll=12)
        rendered, keyed = _keyed(animator, turned)
        _, keyed_mesh = _keyed(mona, turned)
        h, w = keyed.shape[:2]
        assert _is(keyed[: h // 10, : w // 6], GREEN).all()
        face = _face(animator, turned)
        assert np.array_equal(keyed[face], rendered[face])
        # Outside the face crop the generator changes nothing: there the cut is the mesh renderer's, exactly.
        (x0, y0, x1, y1), _ = animator.renderer._rect
        outside = np.ones((h, w), bool)
        outside[y0:y1, x0:x1] = False
        assert outside.any() and np.array_equal(keyed[outside], keyed_mesh[outside])
    finally:
        animator.close()


def test_the_same_portrait_always_gets_the_same_mask(girl_avatar):
    small = cv2.resize(girl_avatar.image, (218, 256), interpolation=cv2.INTER_AREA)
    first = background.person_mask(small)
    assert np.array_equal(first, background.person_mask(small))  # GrabCut's random start is seeded
    assert first.dtype == np.float32 and first.min() == 0.0 and first.max() == 1.0
    assert 0 < ((first > 0) & (first < 1)).mean() < 0.15  # soft along the outline only


def test_render_puts_a_colour_behind_the_avatar_and_refuses_a_bad_one(tmp_path, capsys, generated_driver):
    from avatar_app.commands.cli import main
    from avatar_app.pipeline.sources import SourceSettings, VideoFileSource
    from tests.conftest import PORTRAITS

    out = tmp_path / "keyed.mp4"
    mona = str(PORTRAITS / "mona_lisa.jpg")
    args = ["render", "--driver", str(generated_driver), "--portrait", mona, "--size", "128"]
    assert main([*args, "--out", str(out), "--background", "#FF0000"]) == 0
    source = VideoFileSource(SourceSettings(str(out)))
    source.open()
    with source:
        frames = [f.image for f in source]
    assert len(frames) == 40
    for image in (frames[0], frames[-1]):
        corner = image[:10, :10].reshape(-1, 3).astype(int).mean(0)  # her sky, top left: red (after H.264)
        assert corner[2] > 200 and corner[0] < 50 and corner[1] < 50
    capsys.readouterr()
    code = main([*args, "--out", str(tmp_path / "bad.mp4"), "--background", "pink"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "#RRGGBB" in err and "\n" not in err
    assert not (tmp_path / "bad.mp4").exists()
