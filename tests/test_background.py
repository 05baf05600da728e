"""What lies behind the person in the call's picture: the person cut out once per avatar, the background filled in
where the person was (so a moved head uncovers background, not a smear), a colour or a blur, all standing still."""

import dataclasses

import cv2
import numpy as np
import pytest

import avatar_app.call.background as background
from avatar_app.call.background import (BackgroundSettings, extend, inpainted_background, parse_background,
                                        person_mask)
from avatar_app.call.framing import FramingSettings
from avatar_app.call.picture import CallSettings
from tests.conftest import call_picture, face_mask, turn_head

GREEN = (0x40, 0xB1, 0x00)  # #00B140 as (B, G, R)
FIT = FramingSettings(288, 512, mode="fit")  # the whole Mona Lisa, as the renderer's working picture


def _is(image, colour) -> np.ndarray:
    return np.all(image == np.array(colour, np.uint8), axis=-1)


def test_the_person_is_cut_out_once_per_avatar_not_per_frame(mona_avatar, monkeypatch):
    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.render.base import RenderSettings

    calls = []
    segment = background.segment_person
    monkeypatch.setattr(background, "segment_person", lambda image: calls.append(1) or segment(image))
    avatar = dataclasses.replace(mona_avatar)  # an avatar this process has not seen yet
    animators = [Animator(avatar, RenderSettings(size=size)) for size in (128, 192)]  # a new size: same avatar
    for animator in animators:
        for mode in ("blur", "colour", "keep"):
            for yaw in (0, 10):
                call_picture(animator, turn_head(avatar.landmarks, yaw=yaw),
                             CallSettings(FramingSettings(160, 90), BackgroundSettings(mode=mode)))
    assert len(calls) == 1
    for animator in animators:
        animator.close()


def test_a_colour_fills_the_scene_far_from_the_person_and_leaves_the_face_alone(mona):
    rest = mona.avatar.landmarks
    keyed = call_picture(mona, rest, CallSettings(FIT, BackgroundSettings(mode="colour")))
    kept = call_picture(mona, rest, CallSettings(FIT))
    h, w = keyed.shape[:2]
    assert _is(keyed[: h // 10, : w // 6], GREEN).all()  # the sky above her shoulders, top left
    assert _is(keyed[: h // 10, -w // 6:], GREEN).all()
    face = face_mask(mona.avatar, rest, (w, h), (0, 0, mona.avatar.size[1] / h))
    assert np.abs(keyed[face].astype(int) - kept[face]).max() <= 1
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


@pytest.mark.parametrize("mode", ["keep", "blur", "colour"])
def test_the_scene_stands_still_when_the_head_rolls(mona, mode):
    rest = mona.avatar.landmarks
    settings = CallSettings(FIT, BackgroundSettings(mode=mode))
    still = call_picture(mona, rest, settings)
    moved = call_picture(mona, turn_head(rest, roll=20, yaw=-10), settings)
    h, w = still.shape[:2]
    for corner in ((slice(0, h // 10), slice(0, w // 6)), (slice(0, h // 10), slice(-w // 6, None))):
        assert np.abs(still[corner].astype(int) - moved[corner]).max() <= 1  # the scene does not move
    face = face_mask(mona.avatar, rest, (w, h), (0, 0, mona.avatar.size[1] / h))
    assert np.abs(still[face].astype(int) - moved[face]).mean() > 10  # the face did


def test_blur_shows_the_portrait_s_own_scene_blurred(mona):
    rest = mona.avatar.landmarks
    kept = call_picture(mona, rest, CallSettings(FIT))
    blurred = call_picture(mona, rest, CallSettings(FIT, BackgroundSettings(mode="blur")))
    h, w = kept.shape[:2]
    corner = (slice(0, h // 10), slice(0, w // 6))
    sharp = cv2.Laplacian(cv2.cvtColor(kept[corner], cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    soft = cv2.Laplacian(cv2.cvtColor(blurred[corner], cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    assert soft < 0.2 * sharp
    assert abs(float(blurred[corner].mean()) - float(kept[corner].mean())) < 25  # her sky's colours


def test_where_the_person_was_the_background_is_filled_in_from_around_it(mona_avatar):
    image = mona_avatar.image
    mask = cv2.resize(background.avatar_mask(mona_avatar), image.shape[1::-1])
    behind = inpainted_background(image, mask)
    assert np.array_equal(behind[mask == 0], image[mask == 0])  # the scene itself is untouched
    # Her face is gone: the fill there is the colours around her head (hair and sky), not skin, and no ghost
    # of her features (eyes, nose, mouth) is left in it.
    face = mona_avatar.landmarks[:, :2]
    x0, y0 = np.round(face.min(0)).astype(int)
    x1, y1 = np.round(face.max(0)).astype(int)
    fill, own = behind[y0:y1, x0:x1], image[y0:y1, x0:x1]
    skin = own.reshape(-1, 3).mean(0)
    sky = image[max(0, y0 - 60) : y0 - 20, 20:120].reshape(-1, 3).mean(0)
    assert np.linalg.norm(fill.reshape(-1, 3).mean(0) - skin) > 0.5 * np.linalg.norm(skin - sky)

    def detail(x):
        return cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()

    assert detail(fill) < 0.2 * detail(own)


def test_past_the_portrait_the_scene_goes_on_mirrored_and_out_of_focus():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (100, 80, 3), dtype=np.uint8)
    wide = extend(image, (60, 10, 60, 0))
    assert wide.shape == (110, 200, 3)
    assert np.array_equal(wide[10:, 60:140], image)  # the portrait itself, untouched
    far = cv2.Laplacian(cv2.cvtColor(wide[10:, :20], cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    near = cv2.Laplacian(cv2.cvtColor(image[:, :20], cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    assert far < 0.05 * near


def test_the_same_portrait_always_gets_the_same_mask(girl_avatar):
    small = cv2.resize(girl_avatar.image, (218, 256), interpolation=cv2.INTER_AREA)
    first = person_mask(small)
    assert np.array_equal(first, person_mask(small))  # GrabCut's random start is seeded
    assert first.dtype == np.float32 and first.min() == 0.0 and first.max() == 1.0
    assert 0 < ((first > 0) & (first < 1)).mean() < 0.15  # soft along the outline only


def test_render_puts_a_colour_behind_the_avatar_and_refuses_a_bad_one(tmp_path, capsys, generated_driver):
    from avatar_app.commands.cli import main
    from avatar_app.pipeline.sources import SourceSettings, VideoFileSource
    from tests.conftest import PORTRAITS

    out = tmp_path / "keyed.mp4"
    mona_lisa = str(PORTRAITS / "mona_lisa.jpg")
    args = ["render", "--driver", str(generated_driver), "--portrait", mona_lisa, "--size", "128"]
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
