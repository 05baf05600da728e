"""The neural renderer under load: its generator runs every other frame, then not at all (the mesh alone), and
comes back step by step once it fits its share of the frame again. A fake generator and a fake clock stand in
for a slow machine, so nothing here depends on how fast this one is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avatar_app.model.format import NeuralIdentity
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.render.neural import NeuralRenderer
from avatar_app.pipeline.render.pacing import FULL, HALF, MESH_ONLY, GeneratorPace, PacingSettings

BUDGET = PacingSettings(fps=30).budget_s  # the generator's share of a frame at 30 fps


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class SlowGenerator:
    """ExportedModel's interface for a warp-conditioned model: paints the face crop pure red, and takes ``cost``
    seconds of the fake clock per run."""

    size, thickness, crop_scale, model_id, conditioning = 32, 1, 1.8, "fake-slow", "warp"

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.cost = 0.0
        self.runs = 0

    def correct(self, warp, landmarks, psi):
        self.clock.t += self.cost
        self.runs += 1
        rgb = np.empty((1, 3, self.size, self.size), np.float32)
        rgb[:, 0], rgb[:, 1:] = 1.0, -1.0  # RGB red in [-1, 1]
        return rgb, np.ones((1, 1, self.size, self.size), np.float32)


@pytest.fixture
def slow(mona_avatar):
    clock = FakeClock()
    model = SlowGenerator(clock)
    renderer = NeuralRenderer(model=model, clock=clock)
    avatar = dataclasses.replace(mona_avatar, neural=NeuralIdentity(model.model_id, np.zeros(4, np.float32),
                                                                    np.zeros(8, np.float32)))
    renderer.prepare(avatar, RenderSettings(size=96, live_fps=30))
    return renderer, model, avatar


def _red_at_face(renderer, image) -> bool:
    """Is the middle of the face crop the generator's red (not the portrait's own colours)?"""
    x0, y0, side = np.array(renderer._box) * renderer._scale[0]
    b, g, r = image[int(y0 + side / 2), int(x0 + side / 2)].astype(int)
    return r > 200 and g < 60 and b < 60


def _frames(renderer, avatar, n):
    return [renderer.render(avatar.landmarks) for _ in range(n)]


def test_a_slow_generator_gives_way_to_every_other_frame_then_the_mesh_and_comes_back(slow):
    renderer, model, avatar = slow
    model.cost = 0.5 * BUDGET  # fits
    _frames(renderer, avatar, 20)
    assert renderer.degraded == FULL and model.runs == 20

    model.cost = 1.5 * BUDGET  # over its share, but half of it fits
    _frames(renderer, avatar, 20)
    assert renderer.degraded == HALF
    runs = model.runs
    shown = _frames(renderer, avatar, 20)
    assert renderer.degraded == HALF and model.runs - runs == 10  # every other frame ...
    assert all(_red_at_face(renderer, image) for image in shown)  # ... and the last face carried between

    model.cost = 3.0 * BUDGET  # even every other frame is too slow
    _frames(renderer, avatar, 20)
    assert renderer.degraded == MESH_ONLY
    runs = model.runs
    shown = _frames(renderer, avatar, 60)
    assert model.runs - runs <= 2  # a rare probe, whose face is not shown
    assert not any(_red_at_face(renderer, image) for image in shown)

    model.cost = 0.2 * BUDGET  # the load has gone: back one step at a time
    modes = [renderer.degraded]
    for _ in range(300):
        renderer.render(avatar.landmarks)
        if renderer.degraded != modes[-1]:
            modes.append(renderer.degraded)
    assert modes == [MESH_ONLY, HALF, FULL]
    assert _red_at_face(renderer, renderer.render(avatar.landmarks))
    frames = renderer.mode_frames
    assert frames[FULL] > 0 and frames[HALF] > 0 and frames[MESH_ONLY] >= 60


def test_between_the_thresholds_it_holds_its_mode_instead_of_flapping():
    s = PacingSettings(fps=30, skip_runs=0)
    pace = GeneratorPace(s, clock=FakeClock())
    for _ in range(10):
        pace.ran(1.2 * s.budget_s)
    assert pace.mode == HALF
    for _ in range(200):  # fits every other frame, not well enough for every frame: stays
        pace.ran(0.85 * s.budget_s)
    assert pace.mode == HALF
    for _ in range(200):
        pace.ran(0.5 * s.budget_s)
    assert pace.mode == FULL
    for _ in range(200):  # a little under budget in full: stays
        pace.ran(0.9 * s.budget_s)
    assert pace.mode == FULL


def test_the_runtime_s_first_slow_runs_do_not_count():
    s = PacingSettings(fps=30)
    pace = GeneratorPace(s, clock=FakeClock())
    for seconds in (40 * s.budget_s, 10 * s.budget_s) + (0.5 * s.budget_s,) * 20:
        pace.ran(seconds)
    assert pace.mode == FULL


def test_offline_every_frame_is_drawn_in_full_however_slow(mona_avatar):
    clock = FakeClock()
    model = SlowGenerator(clock)
    model.cost = 10 * BUDGET
    renderer = NeuralRenderer(model=model, clock=clock)
    avatar = dataclasses.replace(mona_avatar, neural=NeuralIdentity(model.model_id, np.zeros(4, np.float32),
                                                                    np.zeros(8, np.float32)))
    renderer.prepare(avatar, RenderSettings(size=96))  # no live_fps: a file, an evaluation
    shown = _frames(renderer, avatar, 30)
    assert renderer.degraded == FULL and model.runs == 30 and all(_red_at_face(renderer, i) for i in shown)
