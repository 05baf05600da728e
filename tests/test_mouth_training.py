"""The mouth model: it learns from mouth crops, draws a mouth (not a flat colour) in the likeness of the person
its identity vector comes from, follows the driver's mouth, and its runs resume and refuse bad checkpoints.

The data is painted here (a few clips of mouths opening and closing, each its own skin and lip colour) at 32²
with a tiny configuration, so the whole module runs in a few seconds on a CPU.
"""

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (pip install -e .[train])")

from avatar_app.commands.cli import main  # noqa: E402
from avatar_app.face.crop import mouth_affine, to_affine_crop  # noqa: E402
from avatar_app.face.landmarks import LIP_INNER_LOWER, LIP_INNER_UPPER, LIP_OUTER_LOWER, LIP_OUTER_UPPER  # noqa: E402
from avatar_app.model.checkpoint import build_networks, load_checkpoint  # noqa: E402
from avatar_app.model.config import ModelConfig  # noqa: E402
from avatar_app.training.config import PrepareConfig, TrainingConfig  # noqa: E402
from avatar_app.training.dataset import MouthEpisodeDataset, read_index  # noqa: E402
from avatar_app.training.loop import train  # noqa: E402
from avatar_app.training.prepare import ClipResult, PrepareReport, write_index  # noqa: E402
from tests.conftest import REPO  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 32
TINY_MOUTH = ModelConfig(
    name="tiny-mouth", image_size=SIZE, embed_dim=32, base_channels=8, max_channels=32, encoder_blocks=3,
    encoder_attention=0, gen_channels=(8, 16, 32), gen_middle_blocks=1, gen_attention_down=(), gen_attention_up=(),
    landmark_thickness=1, conditioning="mouth",
)
# Skin and lip colours (BGR) of the painted people: far apart, so a mouth in the wrong likeness is easy to see.
PEOPLE = {"red": ((60, 90, 200), (40, 30, 150)), "blue": ((200, 120, 60), (150, 60, 30)), "green": ((80, 190, 90),
                                                                                                   (40, 110, 40))}
PROGRESS = ("training:", "preparing:", "avatar-app: warning:")


def _opened(points: np.ndarray, amount: float) -> np.ndarray:
    """The face with its jaw dropped by ``amount`` mouth widths: lower lips and everything below them move down."""
    p = points.copy()
    width = np.linalg.norm(p[291, :2] - p[61, :2])
    lower = np.unique(np.concatenate([LIP_INNER_LOWER[1:-1], LIP_OUTER_LOWER[1:-1]]))
    below = np.where(p[:, 1] > p[LIP_OUTER_LOWER, 1].max())[0]
    p[np.union1d(lower, below), 1] += amount * width
    return p


def _paint(points: np.ndarray, skin, lip) -> np.ndarray:
    """A mouth crop (BGR uint8) painted from landmarks in crop pixels: skin, lips, a dark opening, upper teeth."""
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[:] = skin
    image[: SIZE // 4] = (np.array(skin) * 0.8).astype(np.uint8)  # the nose's shade
    q = lambda idx: np.round(points[idx, :2] * 16).astype(np.int32)  # noqa: E731
    cv2.fillPoly(image, [np.concatenate([q(LIP_OUTER_UPPER), q(LIP_OUTER_LOWER)[::-1]])], lip, cv2.LINE_AA, 4)
    opening = np.concatenate([q(LIP_INNER_UPPER), q(LIP_INNER_LOWER)[::-1]])
    cv2.fillPoly(image, [opening], (20, 10, 30), cv2.LINE_AA, 4)
    top = points[LIP_INNER_UPPER, 1].max()
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [opening], 1, cv2.LINE_8, 4)
    rows = np.arange(SIZE)[:, None] < top + 2.5
    image[(mask > 0) & rows] = (235, 235, 240)  # teeth below the upper lip
    return image


@pytest.fixture(scope="module")
def mouth_data(tmp_path_factory) -> Path:
    return paint_mouth_data(tmp_path_factory.mktemp("mouth") / "data")


def paint_mouth_data(out: Path) -> Path:
    """A prepared mouth-data folder (the layout prepare-data --task mouth writes), painted: 3 clips x 14 frames."""
    face = np.load(REPO / "tests" / "data" / "vox_mona_targets.npy", allow_pickle=False)[0].astype(np.float64)
    config = PrepareConfig(size=SIZE, image_format="png", min_frames=4, task="mouth", warp_sources=0)
    report = PrepareReport()
    for person, (skin, lip) in PEOPLE.items():
        clip = out / "clips" / person
        (clip / "frames").mkdir(parents=True)
        marks = []
        for n, amount in enumerate(np.abs(np.sin(np.linspace(0, 2 * np.pi, 14))) * 0.45):
            points = _opened(face, amount)
            crop_points = to_affine_crop(points, mouth_affine(points, SIZE))
            marks.append(crop_points)
            cv2.imwrite(str(clip / "frames" / f"{n:05d}.png"), _paint(crop_points, skin, lip))
        np.save(clip / "landmarks.npy", np.stack(marks).astype(np.float32), allow_pickle=False)
        report.prepared.append(ClipResult(person, f"{person}.mp4", person, "prepared", len(marks)))
    write_index(out, config, report)
    return out


def _config(**kw) -> TrainingConfig:
    settings = dict(steps=60, batch_size=3, shots=3, lr_generator=1e-3, lr_discriminator=1e-3, ssim_weight=1.0,
                    mouth_weight=2.0, checkpoint_every=60, sample_every=60, log_every=1)
    return TrainingConfig(**{**settings, **kw})


def _episodes(data_dir: Path, drop: float, seed: int = 12345) -> dict:
    """One fixed episode per clip, batched (the same for every network that is judged on it)."""
    dataset = MouthEpisodeDataset(read_index(data_dir), SIZE, 3, 1, drop=drop, other_frame=0.0)
    items = [dataset[(i, seed + i)] for i in range(len(dataset))]
    return {k: torch.stack([it[k] for it in items]) for k in ("frames", "landmarks", "target", "target_landmarks",
                                                             "driver")}


def _draw(nets, b: dict, psi_from: list[int] | None = None, psi_scale: float = 1.0, driver=None) -> torch.Tensor:
    """G's mouths for batch ``b``; ψ from episode psi_from[i]'s frames (default: its own), scaled by psi_scale."""
    nets.embedder.eval(), nets.generator.eval()  # spectral norm's power iteration stays still
    with torch.no_grad():
        k = b["frames"].shape[1]
        e = nets.embedder(b["frames"].flatten(0, 1), b["landmarks"].flatten(0, 1)).view(len(b["frames"]), k, -1)
        psi = nets.generator.project(e.mean(dim=1)) * psi_scale
        if psi_from is not None:
            psi = psi[psi_from]
        return nets.generator(b["target_landmarks"], b["driver"] if driver is None else driver, psi)


@pytest.fixture(scope="module")
def trained_mouth(mouth_data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "mouth"
    train(mouth_data, run, _config(), TINY_MOUTH, progress=False)
    return run


def test_the_mouth_model_learns_to_draw_the_mouth_in_the_likeness_of_its_identity(mouth_data, trained_mouth):
    before = build_networks(TINY_MOUTH, num_videos=3, seed=0)
    after, raw = load_checkpoint(trained_mouth / "checkpoint.pt")
    assert raw["step"] == 60 and after.config.conditioning == "mouth"
    with_driver, without = _episodes(mouth_data, drop=0.0), _episodes(mouth_data, drop=1.0)
    target = with_driver["target"]

    def l1(out):  # per episode
        return (out - target).abs().mean(dim=(1, 2, 3))

    # It learned: the error on the episodes falls to well under half.
    assert l1(_draw(after, with_driver)).mean() < 0.5 * l1(_draw(before, with_driver)).mean()
    out = _draw(after, without)
    # A mouth, not a flat colour: the output varies across the crop about as much as the target does.
    assert (out.std(dim=(2, 3)).mean() > 0.5 * target.std(dim=(2, 3)).mean())
    # The identity path: with no driver to copy from, each person's own ê draws them better than another's.
    own = l1(out)
    swapped = l1(_draw(after, without, psi_from=[1, 2, 0]))
    assert (own < swapped).all(), (own, swapped)
    # Zeroing ψ changes the picture, and so does taking the driver's mouth away.
    assert (_draw(after, without, psi_scale=0.0) - out).abs().mean() > 0.05
    assert (_draw(after, with_driver) - _draw(after, with_driver, driver=torch.zeros_like(with_driver["driver"]))
            ).abs().mean() > 0.01


def test_the_driver_mouth_is_degraded_and_sometimes_missing(mouth_data):
    data = read_index(mouth_data)
    dataset = MouthEpisodeDataset(data, SIZE, 3, 1, drop=0.3, other_frame=0.5)
    items = [dataset[(i % 3, 1000 + i)] for i in range(60)]
    present = [n for n, it in enumerate(items) if it["driver"][3].max() > 0]
    missing = [it for it in items if it["driver"][3].max() == 0]
    assert 0.1 < len(missing) / len(items) < 0.5 and all(it["driver"].abs().max() == 0 for it in missing)
    # A present driver is a blurred, recoloured mouth: never a copy of the target, but nearer its coarse picture
    # than another person's target is.
    coarse = lambda x: torch.nn.functional.avg_pool2d(x[None], 8)[0]  # noqa: E731
    for n in present:
        assert (items[n]["driver"][:3] - items[n]["target"]).abs().mean() > 0.02
    near = np.mean([(coarse(items[n]["driver"][:3]) - coarse(items[n]["target"])).abs().mean().item() for n in present])
    far = np.mean([(coarse(items[n]["driver"][:3]) - coarse(items[(n + 1) % 60]["target"])).abs().mean().item()
                   for n in present])  # the next item is the next clip's: another person
    assert near < 0.5 * far, (near, far)
    # The opening the content loss weighs more is inside the crop and empty when the mouth is shut.
    areas = [it["mouth"].sum().item() for it in items]
    assert min(areas) < 0.5 * max(areas) and max(areas) < 0.3 * SIZE * SIZE


def test_a_run_resumes_its_step_count_from_a_checkpoint_and_from_the_networks_alone(mouth_data, tmp_path, capsys):
    run = tmp_path / "run"
    train(mouth_data, run, _config(steps=4, checkpoint_every=2), TINY_MOUTH, progress=False)
    raw = torch.load(run / "checkpoint.pt", weights_only=True)  # nothing pickled in it
    assert raw["step"] == 4 and "optimizers" in raw
    result = train(mouth_data, run, _config(steps=6, checkpoint_every=2), resume=True, explicit={"steps"},
                   progress=False)
    assert result.step == 6 and load_checkpoint(run / "checkpoint.pt")[1]["step"] == 6
    with open(run / "losses.csv", newline="") as f:
        assert [int(r[0]) for r in list(csv.reader(f))[1:]] == [1, 2, 3, 4, 5, 6]

    # The networks alone (what a model folder ships) are a third of the file, and a run goes on from them.
    stripped = tmp_path / "mouth.pt"
    assert main(["strip-checkpoint", str(run / "checkpoint.pt"), "--out", str(stripped)]) == 0
    assert stripped.stat().st_size < 0.5 * (run / "checkpoint.pt").stat().st_size
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(stripped, again / "checkpoint.pt")
    with pytest.warns(UserWarning, match="networks only"):
        result = train(mouth_data, again, _config(steps=8), resume=True, explicit={"steps"}, progress=False)
    assert result.step == 8
    nets, _ = load_checkpoint(stripped)
    resumed, _ = load_checkpoint(run / "checkpoint.pt")
    b = _episodes(mouth_data, drop=0.0)
    assert torch.equal(_draw(nets, b), _draw(resumed, b))  # the same networks as the checkpoint they came from


def _one_line(capsys, code, *fragments):
    assert code == 2
    err = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if ln.strip() and not ln.startswith(PROGRESS)]
    assert len(err) == 1 and err[0].startswith("avatar-app: error:"), err
    for f in fragments:
        assert f in err[0], err[0]


def test_a_corrupt_checkpoint_is_refused_in_one_line_naming_the_file(mouth_data, trained_mouth, tmp_path, capsys):
    whole = (trained_mouth / "checkpoint.pt").read_bytes()
    for name, content in (("cut.pt", whole[: len(whole) // 2]), ("junk.pt", b"not a checkpoint at all" * 100)):
        run = tmp_path / name.split(".")[0]
        run.mkdir()
        (run / "checkpoint.pt").write_bytes(content)
        _one_line(capsys, main(["train", "--data", str(mouth_data), "--out", str(run), "--resume"]),
                  str(run / "checkpoint.pt"), "not a usable checkpoint")
        _one_line(capsys, main(["strip-checkpoint", str(run / "checkpoint.pt"), "--out", str(tmp_path / "x.pt")]),
                  str(run / "checkpoint.pt"))
    assert not (tmp_path / "x.pt").exists()


def test_mouth_data_and_face_models_do_not_mix(mouth_data, trained_mouth, tiny_json, tmp_path, capsys):
    _one_line(capsys, main(["train", "--data", str(mouth_data), "--out", str(tmp_path / "a"), "--config",
                            str(tiny_json), "--steps", "1", "--batch-size", "1", "--shots", "2"]),
              str(mouth_data), "mouth crops", "--config mouth")
    faces = tmp_path / "faces"
    shutil.copytree(mouth_data, faces)
    index = json.loads((faces / "index.json").read_text())
    (faces / "index.json").write_text(json.dumps({**index, "task": "face"}))
    mouth_json = tmp_path / "mouth.json"
    mouth_json.write_text(json.dumps(TINY_MOUTH.to_dict()))
    _one_line(capsys, main(["train", "--data", str(faces), "--out", str(tmp_path / "b"), "--config", str(mouth_json),
                            "--steps", "1", "--batch-size", "1", "--shots", "2"]),
              str(faces), "face crops", "--task mouth")


def test_a_mouth_model_exports_to_onnx_and_runs_without_torch_as_it_does_in_torch(trained_mouth, tmp_path):
    """export writes a mouth model folder the app reads (conditioning mouth, the mouth crop's scale); onnxruntime
    draws the same mouth as eager torch, and the face backend does not take it for a face model."""
    from avatar_app.face.crop import MOUTH_CROP_SCALE
    from avatar_app.model.format import read_manifest
    from avatar_app.pipeline.render.neural import ExportedModel

    out = tmp_path / "m"
    assert main(["export", "--checkpoint", str(trained_mouth / "checkpoint.pt"), "--out", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest["conditioning"] == "mouth" and manifest["crop"]["scale"] == MOUTH_CROP_SCALE
    model = ExportedModel(out)
    s = model.size
    rng = np.random.default_rng(0)
    lm = rng.random((1, 3, s, s), dtype=np.float32)
    driver = np.concatenate([rng.random((1, 3, s, s), dtype=np.float32) * 2 - 1, np.ones((1, 1, s, s), np.float32)], 1)
    _, psi = model.identity(rng.random((2, 3, s, s), dtype=np.float32) * 2 - 1, rng.random((2, 3, s, s), dtype=np.float32))
    got = model.mouth(lm, driver, psi)
    nets = load_checkpoint(trained_mouth / "checkpoint.pt")[0]
    with torch.no_grad():
        want = nets.generator.eval()(torch.from_numpy(lm), torch.from_numpy(driver), torch.from_numpy(psi)).numpy()
    assert got.shape == (1, 3, s, s) and np.abs(got - want).max() < 1e-3
    assert got.std() > 0.05  # a drawn mouth, not a flat colour
