"""The One-Euro filter: a still signal is steadied, a moving one is followed closely."""

import numpy as np
import pytest

from avatar_app.pipeline.smoothing import OneEuroFilter

FPS = 30.0


def run(f: OneEuroFilter, samples: np.ndarray) -> np.ndarray:
    return np.array([f(x, i / FPS) for i, x in enumerate(samples)])


def test_first_call_returns_input_and_shape_and_dtype_are_kept():
    f = OneEuroFilter(point_axis=-1)
    x = np.random.default_rng(0).normal(size=(478, 3)).astype(np.float32)
    out = f(x, 0.0)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    out = f(x + 1, 1 / FPS)
    assert out.shape == (478, 3) and out.dtype == np.float32


def test_integer_input_gives_float_output():
    f = OneEuroFilter()
    f(np.zeros((2, 2), dtype=np.int64), 0.0)
    assert f(np.ones((2, 2), dtype=np.int64), 0.1).dtype == np.float64


@pytest.mark.parametrize("point_axis", [None, -1])
def test_constant_plus_noise_is_smoothed(point_axis):
    rng = np.random.default_rng(1)
    truth = np.array([[320.0, 240.0, 0.0]] * 50)
    noisy = truth + rng.normal(0.0, 0.7, size=(300, *truth.shape))
    out = run(OneEuroFilter(point_axis=point_axis), noisy)
    raw_var = (noisy[30:] - truth).var()
    smooth_var = (out[30:] - truth).var()
    assert smooth_var < raw_var / 4


@pytest.mark.parametrize("point_axis", [None, -1])
def test_step_is_followed_within_a_few_samples(point_axis):
    x = np.zeros((60, 10, 3))
    x[20:, :, 1] = 30.0  # a mouth snapping open by 30 px between two frames
    out = run(OneEuroFilter(point_axis=point_axis), x)
    reached = np.argmax(out[:, 0, 1] >= 27.0)  # 90 % of the step
    assert 20 <= reached <= 22
    assert np.allclose(out[40:, :, 1], 30.0, atol=0.5)


def test_a_point_moves_as_one_when_filtered_per_point():
    # A point moving mostly down and a little sideways: per coordinate, the slow x would lag behind.
    t = np.arange(40)
    track = np.zeros((40, 1, 3))
    track[:, 0, 0] = 0.5 * t  # 15 px/s sideways
    track[:, 0, 1] = 6.0 * t  # 180 px/s down
    per_value = run(OneEuroFilter(point_axis=None), track)
    per_point = run(OneEuroFilter(point_axis=-1), track)
    lag_x_value = np.abs(per_value[20:, 0, 0] - track[20:, 0, 0]).mean()
    lag_x_point = np.abs(per_point[20:, 0, 0] - track[20:, 0, 0]).mean()
    assert lag_x_point < lag_x_value / 2


def test_reset_forgets_the_past():
    f = OneEuroFilter()
    for i in range(10):
        f(np.zeros(5), i / FPS)
    f.reset()
    far = np.full(5, 100.0)
    np.testing.assert_array_equal(f(far, 11 / FPS), far)


def test_time_not_increasing_stays_finite_and_uses_the_last_interval():
    x = np.linspace(0.0, 10.0, 6)
    a, b = OneEuroFilter(), OneEuroFilter()
    a(np.zeros(6), 0.0)
    b(np.zeros(6), 0.0)
    a(x, 1 / FPS)
    b(x, 1 / FPS)
    repeated = a(2 * x, 1 / FPS)  # same stamp again
    stepped = b(2 * x, 2 / FPS)
    assert np.isfinite(repeated).all()
    np.testing.assert_allclose(repeated, stepped)
    assert np.isfinite(a(3 * x, 0.0)).all()  # a clock stepping back


def test_shape_change_and_bad_parameters_are_refused():
    f = OneEuroFilter()
    f(np.zeros((3, 3)), 0.0)
    with pytest.raises(ValueError):
        f(np.zeros((4, 3)), 0.1)
    for kwargs in ({"min_cutoff": 0.0}, {"beta": -1.0}, {"d_cutoff": 0.0}):
        with pytest.raises(ValueError):
            OneEuroFilter(**kwargs)
