"""`avatar-app evaluate`: the self-reenactment protocol scores a clip beside its static baseline, writes its
reports, skips a video without a face, and refuses bad input in one line."""

import json
import sys

import cv2
import numpy as np
import pytest

from avatar_app.cli import main
from avatar_app.evaluate import (
    EvaluationSettings,
    StillDetector,
    driven_frames,
    load_face_embedder,
    nearest_source,
    read_crops,
)
from avatar_app.metrics import l1, psnr, ssim
from avatar_app.sinks import VideoFileSink
from tests.conftest import PORTRAITS

SIZE = 128


def _strict_json(path):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _one_line_error(capsys, code, *fragments):
    assert code == 2
    err = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if ln.strip().startswith("avatar-app:")]
    assert len(err) == 1, err
    assert err[0].startswith("avatar-app: error: ")
    for f in fragments:
        assert f in err[0]


@pytest.fixture(scope="module")
def no_face_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("noface") / "noise.mp4"
    rng = np.random.default_rng(0)
    with VideoFileSink(path, fps=10, size=(160, 120)) as sink:
        for _ in range(12):
            sink.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, generated_driver, no_face_clip):
    """One run of the command on the generated clip and a clip without a face, T = 1 and 2, 4 driven frames."""
    out = tmp_path_factory.mktemp("evaluate")
    code = main([
        "evaluate", "--videos", str(generated_driver), str(no_face_clip), "--shots", "1", "2", "--frames", "4",
        "--size", str(SIZE), "--json", str(out / "report.json"), "--markdown", str(out / "table.md"),
        "--sheets", str(out / "sheets"),
    ])
    return code, out


def _row(video, method, shots):
    return next(r for r in video["rows"] if r["method"] == method and r["shots"] == shots)


def test_evaluate_writes_json_markdown_table_and_contact_sheet(evaluated, generated_driver):
    code, out = evaluated
    assert code == 0
    report = _strict_json(out / "report.json")
    assert [v["video"] for v in report["videos"]] == [generated_driver.name]
    video = report["videos"][0]
    assert video["driven"] == [2, 14, 27, 39]  # evenly spread after the first max(T) = 2 frames
    for method in ("static", "mesh"):
        for t in (1, 2):
            row = _row(video, method, t)
            assert len(row["scores"]) == 4
            assert 0 < row["summary"]["ssim"] <= 1
            assert row["summary"]["face_found"] == 1.0
    assert {(r["method"], r["shots"]) for r in report["overall"]} == {("static", 1), ("mesh", 1), ("static", 2), ("mesh", 2)}
    assert report["csim"]["available"] == (load_face_embedder()[0] is not None)

    table = (out / "table.md").read_text()
    assert "| method | T | SSIM" in table
    assert "| static | 1 |" in table and "| mesh | 1 |" in table and "| static | 2 |" in table

    sheet = cv2.imread(str(out / "sheets" / f"{generated_driver.stem}.png"))
    assert sheet is not None
    # Four sampled frames; columns: source T=1 | driver | mesh T=1 | source T=2 | mesh T=2.
    assert sheet.shape == (4 * SIZE, 5 * SIZE, 3)


def test_the_mesh_renderer_follows_the_driver_better_than_standing_still(evaluated):
    _, out = evaluated
    overall = {(r["method"], r["shots"]): r for r in _strict_json(out / "report.json")["overall"]}
    assert overall[("mesh", 1)]["lm"] < overall[("static", 1)]["lm"]


def test_static_row_is_the_source_frame_scored_against_the_driven_frames(evaluated, generated_driver):
    _, out = evaluated
    video = _strict_json(out / "report.json")["videos"][0]
    crops = read_crops(generated_driver, tuple(video["box"]), SIZE)
    row = _row(video, "static", 1)
    assert row["sources"] == [0]
    for score in row["scores"]:
        real = crops[score["frame"]]
        assert score["ssim"] == pytest.approx(ssim(crops[0], real))
        assert score["l1"] == pytest.approx(l1(crops[0], real))
        assert score["psnr"] == pytest.approx(psnr(crops[0], real))
    assert row["summary"]["ssim"] == pytest.approx(np.mean([ssim(crops[0], crops[i]) for i in video["driven"]]))
    if row["summary"]["csim"] is not None:
        assert row["summary"]["csim"] == pytest.approx(1.0)  # the source against its own identity


def test_a_video_without_a_face_is_reported_and_skipped(evaluated, no_face_clip):
    code, out = evaluated
    assert code == 0
    skipped = _strict_json(out / "report.json")["skipped"]
    assert [s["video"] for s in skipped] == [no_face_clip.name]
    assert "no face" in skipped[0]["reason"]
    assert no_face_clip.name in (out / "table.md").read_text()


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, generated_driver, no_face_clip):
    report = tmp_path / "r.json"
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, main(["evaluate", "--videos", str(empty), "--json", str(report)]), "empty", "no videos")
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    _one_line_error(capsys, main(["evaluate", "--videos", str(notes), "--json", str(report)]), "notes.mp4")
    _one_line_error(capsys, main(["evaluate", "--videos", str(tmp_path / "nope.mp4"), "--json", str(report)]),
                    "nope.mp4", "no such")
    _one_line_error(capsys, main(["evaluate", "--videos", str(generated_driver), "--backend", "neural",
                                  "--json", str(report)]), "neural", "--model")
    _one_line_error(capsys, main(["evaluate", "--videos", str(generated_driver), "--json",
                                  str(tmp_path / "no_dir" / "r.json")]), "no_dir")
    _one_line_error(capsys, main(["evaluate", "--videos", str(no_face_clip), "--json", str(report)]),
                    "no video could be scored", "noise.mp4")
    assert not report.exists()


def test_driven_frames_spread_evenly_after_the_source_frames():
    assert driven_frames(100, 8, 4) == [8, 38, 69, 99]
    assert driven_frames(10, 8, 32) == [8, 9]
    assert driven_frames(8, 8, 32) == []


def test_nearest_source_picks_the_frame_with_the_closest_pose_and_expression():
    rng = np.random.default_rng(1)
    face = rng.uniform(0, 100, (68, 2))
    face[36:42] += [-30, 0]  # eyes apart, so the inter-ocular distance is not tiny
    face[42:48] += [30, 0]
    sources = {0: face, 3: face + [8.0, 0.0], 5: face + [1.0, 0.5]}
    assert nearest_source(sources, face + [1.2, 0.4]) == 5
    assert nearest_source(sources, face + [7.0, 0.0]) == 3


def test_settings_refuse_what_cannot_be_evaluated():
    with pytest.raises(ValueError):
        EvaluationSettings(shots=())
    with pytest.raises(ValueError):
        EvaluationSettings(frames=0)
    assert EvaluationSettings(shots=(8, 1, 8)).shots == (1, 8)


def test_csim_is_reported_unavailable_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib were not installed
    embed, reason = load_face_embedder()
    assert embed is None
    assert ".[eval]" in reason


def test_csim_tells_the_same_face_from_another():
    embed, reason = load_face_embedder()
    if embed is None:
        pytest.skip(f"CSIM model not installed: {reason}")
    from avatar_app.evaluate import cosine

    mona = cv2.imread(str(PORTRAITS / "mona_lisa.jpg"))
    girl = cv2.imread(str(PORTRAITS / "girl_with_a_pearl_earring.jpg"))
    mona_moved = np.roll(cv2.resize(mona, None, fx=0.9, fy=0.9), (7, -5), axis=(0, 1))
    detect = StillDetector()
    try:
        a, b, c = (embed(img, detect(img)) for img in (mona, mona_moved, girl))
    finally:
        detect.close()
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, b) > cosine(a, c)
