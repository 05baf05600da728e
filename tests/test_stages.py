"""The stage loop: one frame message through tracker, retarget, renderer and sinks; avatars switched in flight."""

import numpy as np

from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.frame import Frame
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.stages import StageLoop
from tests.fakes import ListSink


class PointsTracker:
    """A tracker stage that "finds" the given landmarks in every frame with a picture."""

    name = "tracker"

    def __init__(self, points):
        self.points, self.opened, self.closed = points, 0, 0

    def open(self):
        self.opened += 1

    def process(self, frame):
        frame.driver = self.points if frame.has_picture else None

    def close(self):
        self.closed += 1


class CountingAnimator(Animator):
    closes = 0

    def close(self):
        CountingAnimator.closes += 1
        super().close()


def _frame(i: int, has_picture: bool = True) -> Frame:
    return Frame(image=np.zeros((48, 64, 3), np.uint8), index=i, t_capture=i / 25, t_media=i / 25,
                 has_picture=has_picture)


def test_one_frame_message_carries_every_stage_s_work(mona_avatar):
    sink = ListSink()
    mona = Animator(mona_avatar, RenderSettings(size=96))
    loop = StageLoop(mona, tracker=PointsTracker(mona_avatar.landmarks), sinks=[sink], timed=True)
    frame = loop.run(_frame(0))
    assert frame.driver is mona_avatar.landmarks and frame.face_found
    assert frame.target.shape == (478, 3)
    assert frame.avatar is mona_avatar and frame.generation == mona.generation
    assert frame.output.shape == (*mona.output_size[::-1], 3)
    assert sink.images[0] is frame.output
    s = frame.stamps
    assert s["enter:tracker"] <= s["tracker"] <= s["enter:retarget"] <= s["retarget"] <= s["enter:renderer"] \
        <= s["renderer"] <= s["enter:sink:list"] <= s["sink:list"]
    lost = loop.run(_frame(1, has_picture=False))  # no picture: no face, and the avatar still renders
    assert lost.driver is None and not lost.face_found and lost.output.shape == frame.output.shape
    loop.close()


def test_a_frame_in_flight_across_a_switch_is_drawn_by_the_avatar_that_made_it(mona_avatar, girl_avatar):
    CountingAnimator.closes = 0
    mona = CountingAnimator(mona_avatar, RenderSettings(size=96))
    girl = CountingAnimator(girl_avatar, RenderSettings(size=96))
    loop = StageLoop(mona, tracker=PointsTracker(mona_avatar.landmarks))
    in_flight = _frame(0)
    loop.track(in_flight)
    loop.retarget(in_flight)  # retargeted for Mona on the tracker thread ...
    loop.switch(girl)  # ... then the window switches avatars before the renderer thread draws it
    after = _frame(1)
    loop.track(after)
    loop.retarget(after)
    loop.render(in_flight)
    assert in_flight.avatar is mona_avatar and in_flight.output.shape[:2] == mona.output_size[::-1]
    assert CountingAnimator.closes == 0  # Mona's last frame may still come
    loop.render(after)
    assert after.avatar is girl_avatar and after.output.shape[:2] == girl.output_size[::-1]
    assert mona.output_size != girl.output_size  # so the shapes above tell the avatars apart
    assert CountingAnimator.closes == 1  # the girl's first frame drawn: Mona's animation is closed
    loop.close()
    assert CountingAnimator.closes == 2


def test_a_failing_sink_is_switched_off_and_the_others_go_on(mona_avatar):
    good, bad = ListSink("good"), ListSink("bad", fail_after=1)
    loop = StageLoop(Animator(mona_avatar, RenderSettings(size=64)), tracker=PointsTracker(mona_avatar.landmarks),
                     sinks=[bad, good])
    failed = []
    for i in range(3):
        frame = _frame(i)
        loop.track(frame)
        loop.retarget(frame)
        loop.render(frame)
        loop.deliver(frame, on_error=lambda sink, err: failed.append((sink.name, str(err))))
    assert len(good.images) == 3 and len(bad.images) == 1
    assert failed == [("bad", "device is used by another program")] and loop.sinks == [good]
    loop.close()
