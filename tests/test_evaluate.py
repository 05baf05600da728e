"""`avatar-app evaluate`: the self-reenactment protocol scores a clip beside its static baseline, writes its
reports, skips a video without a face, and refuses bad input in one line."""

import json
import sys

import cv2
import numpy as np
import pytest

from avatar_app.commands.cli import main
from avatar_app.face.crop import crop
from avatar_app.measure.evaluate import EvaluationSettings, driven_frames, nearest_source
from avatar_app.pipeline.sources import SourceSettings, VideoFileSource
from avatar_app.measure.scoring import StillDetector, load_face_embedder
from avatar_app.measure.metrics import l1, psnr, ssim
from avatar_app.pipeline.sinks import VideoFileSink
from tests.conftest import PORTRAITS

SIZE = 128


def read_crops(path, box, size):
    """Every frame of a video cut to the evaluation's box, decoded on their own (to check what evaluate scored)."""
    with VideoFileSource(SourceSettings(str(path))) as source:
        return [crop(frame.image, box, size) for frame in source]


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
                                  "--finetune-steps", "5", "--json", str(report)]), "neural", "--checkpoint")
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
    from avatar_app.measure.scoring import cosine

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


# -- the independent judge, worst frames, tears, jitter, cross-reenactment ----------------------------------------
def _needs_judge():
    from avatar_app.measure.face_measure import DlibLandmarks, EvalModelsMissing

    try:
        DlibLandmarks()
    except (EvalModelsMissing, ImportError) as err:
        pytest.skip(f"the independent judge is not installed: {err}")


def test_landmark_error_is_judged_by_dlib_with_mediapipe_as_a_labelled_second_column(evaluated):
    _needs_judge()
    _, out = evaluated
    report = _strict_json(out / "report.json")
    assert "dlib" in report["protocol"]["lm"] and "MediaPipe" in report["protocol"]["lm_mp"]
    row = _row(report["videos"][0], "mesh", 1)
    assert all(s["lm"] is not None and s["lm_mp"] is not None for s in row["scores"])
    assert any(abs(s["lm"] - s["lm_mp"]) > 1e-6 for s in row["scores"])  # two detectors, two readings
    summary = row["summary"]
    lms = [s["lm"] for s in row["scores"]]
    assert summary["lm_worst"] == pytest.approx(max(lms))
    assert summary["tears"] == sum(lm > 0.12 for lm in lms) + sum(not s["face_found"] for s in row["scores"])
    table = (out / "table.md").read_text()
    assert "LM dlib" in table and "LM MediaPipe" in table and "worst" in table


def test_each_method_gets_a_sheet_of_its_worst_frames_worst_first(evaluated, generated_driver):
    _needs_judge()
    _, out = evaluated
    sheet = cv2.imread(str(out / "sheets" / f"{generated_driver.stem}_mesh_worst.png"))
    assert sheet is not None
    assert sheet.shape == (4 * SIZE, 2 * SIZE, 3)  # 4 driven frames (fewer than six): driver | output each


class _Scrambled:
    """A renderer gone wrong: the face's inside torn into vertical strips (what a fold looks like, at worst)."""

    def __init__(self, avatar, reference, t0, size):
        self.image = cv2.resize(avatar.image, (size, size))

    def __call__(self, driver, t):
        out = self.image.copy()
        h, w = out.shape[:2]
        y0, y1, x0, x1 = h // 4, 3 * h // 4, w // 4, 3 * w // 4
        strips = out[y0:y1, x0:x1].reshape(y1 - y0, -1, 8, 3)[:, ::-1]  # strips of 8 px in reverse order
        out[y0:y1, x0:x1] = np.ascontiguousarray(strips[::-1]).reshape(y1 - y0, x1 - x0, 3)
        return out

    def close(self):
        pass


def test_a_torn_face_is_counted_as_a_tear_and_scores_worse_than_the_renderer(generated_driver):
    _needs_judge()
    from avatar_app.measure.evaluate import evaluate

    report = evaluate([generated_driver], EvaluationSettings(shots=(1,), size=SIZE, frames=6, mediapipe=False),
                      csim=False, extra={"torn": _Scrambled})
    video = report.videos[0]
    torn, mesh = video.row("torn", 1).summary(), video.row("mesh", 1).summary()
    assert torn["tears"] >= 5  # every frame is a visible failure: no face, or landmarks far off
    assert mesh["tears"] == 0
    assert "generated_driver_torn" in report.worst_sheets


def test_jitter_is_the_outputs_motion_over_the_frames_where_the_real_face_is_still():
    from avatar_app.measure.scoring import jitter

    rng = np.random.default_rng(3)
    face = rng.uniform(0, 100, (68, 2))
    face[36:42] += [-30, 0]
    face[42:48] += [30, 0]
    real = {0: face, 1: face, 2: face + [20, 0], 3: face + [20, 0]}  # still, jump, still
    out = {0: face, 1: face + [0.4, 0], 2: face + [9, 0], 3: face + [9.3, 0]}
    px, real_px, pairs = jitter(out, real.get, [0, 1, 2, 3])
    assert pairs == 2  # (0, 1) and (2, 3); the jump (1, 2) is motion, not jitter
    assert px == pytest.approx(0.35)
    assert real_px == pytest.approx(0.0)


def test_cross_reenactment_reads_how_closely_the_avatar_follows(generated_driver, tmp_path, capsys):
    """The Mona Lisa driven by a clip that opens its mouth and turns its head: the judge sees her follow."""
    _needs_judge()
    mona = PORTRAITS / "mona_lisa.jpg"
    code = main(["evaluate", "--videos", str(generated_driver), "--cross", str(mona), "--size", str(SIZE),
                 "--json", str(tmp_path / "cross.json"), "--sheets", str(tmp_path / "sheets")])
    assert code == 0
    report = _strict_json(tmp_path / "cross.json")
    mesh = next(r for r in report["results"] if r["method"] == "mesh")
    static = next(r for r in report["results"] if r["method"] == "static")
    assert mesh["r"]["mouth"] > 0.8 and mesh["r"]["yaw"] > 0.8  # she opens her mouth and turns when the driver does
    assert static["r"]["mouth"] is None  # a still picture follows nothing
    assert mesh["face_found"] == 1.0
    assert mesh["identity_distance"] < 0.6  # still the Mona Lisa to a face recogniser
    assert list((tmp_path / "sheets").glob("mona_lisa__*.png"))
    assert "Cross-reenactment" in capsys.readouterr().out


def test_cross_with_a_missing_or_broken_portrait_is_one_line(tmp_path, capsys, generated_driver):
    report = tmp_path / "r.json"
    _one_line_error(capsys, main(["evaluate", "--videos", str(generated_driver), "--cross", str(tmp_path / "no.jpg"),
                                  "--json", str(report)]), "no.jpg", "no such portrait")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a picture")
    _one_line_error(capsys, main(["evaluate", "--videos", str(generated_driver), "--cross", str(junk),
                                  "--json", str(report)]), "junk.jpg")
    assert not report.exists()


def test_the_judges_measures_read_a_turn_and_an_open_mouth(mona_avatar):
    _needs_judge()
    from avatar_app.measure.face_measure import DlibLandmarks, measure
    from avatar_app.pipeline.render.mesh import MeshRenderer
    from avatar_app.pipeline.render.base import RenderSettings
    from tests.conftest import open_mouth, turn_head

    r = MeshRenderer()
    r.prepare(mona_avatar, RenderSettings(size=512))
    judge = DlibLandmarks()

    def read(target, frames=1):
        for _ in range(frames):
            out = r.render(target)
        return measure(judge(out), r.output_size)

    rest = read(mona_avatar.landmarks)
    left, right = read(turn_head(mona_avatar.landmarks, yaw=-20)), read(turn_head(mona_avatar.landmarks, yaw=20))
    assert left.yaw < rest.yaw < right.yaw or right.yaw < rest.yaw < left.yaw  # monotonic in the turn
    assert abs(right.yaw - left.yaw) > 0.1
    assert read(open_mouth(mona_avatar.landmarks, 0.5), frames=3).mouth > rest.mouth + 0.1
    assert abs(read(turn_head(mona_avatar.landmarks, roll=15)).roll - rest.roll) > 8
