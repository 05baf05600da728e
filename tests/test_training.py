"""Training: prepare-data, meta-learning (exact resume, DDP over gloo), fine-tuning, and every bad input.

A tiny network configuration at 64 x 64 keeps each step well under a second on a CPU; the data is the painted
clip the tests generate (conftest.generated_driver) beside a clip with no face in it.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (pip install -e .[train])")

from avatar_app.commands.cli import main  # noqa: E402
from avatar_app.model.checkpoint import build_networks, load_checkpoint  # noqa: E402
from avatar_app.pipeline.sources import probe_video  # noqa: E402
from tests.conftest import PORTRAITS, REPO, TINY, shared_media  # noqa: E402

PROGRESS = ("training:", "preparing:", "fine-tuning:", "tracking:", "rendering:", "avatar-app: warning:")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_line(capsys, code, *fragments):
    assert code == 2
    err = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if ln.strip() and not ln.startswith(PROGRESS)]
    assert len(err) == 1 and err[0].startswith("avatar-app: error:"), err
    for f in fragments:
        assert f in err[0], err[0]


def _train(data, run, tiny_json, *extra) -> int:
    return main(["train", "--data", str(data), "--out", str(run), "--config", str(tiny_json), "--batch-size", "1",
                 "--shots", "4", "--log-every", "1", *map(str, extra)])


@pytest.fixture(scope="module")
def trained(data, tiny_json, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    assert _train(data, run, tiny_json, "--steps", 4, "--checkpoint-every", 2, "--sample-every", 2) == 0
    return run


# -- prepare-data ----------------------------------------------------------------------------------------------

def test_prepare_data_writes_crops_landmarks_index_and_reports_the_faceless_clip(data, videos, capsys):
    index = json.loads((data / "index.json").read_text())
    assert index["size"] == 64 and [c["id"] for c in index["clips"]] == ["id001/paintingA/00001"]
    clip = index["clips"][0]
    assert clip["video"] == "id001/paintingA"  # VoxCeleb's id/video/clip: the video is the W row
    frames = sorted((data / "clips" / clip["id"] / "frames").glob("*.jpg"))
    points = np.load(data / "clips" / clip["id"] / "landmarks.npy", allow_pickle=False)
    assert len(frames) == clip["frames"] == len(points) >= 36 and points.shape[1:] == (478, 3)
    assert points[..., :2].min() >= 0 and points[..., :2].max() < 64  # the face stays inside the clip's one crop
    # The mesh renderer's warps of 4 frames spread over the clip to every frame: the warp-conditioned G's input.
    import cv2

    folder = data / "clips" / clip["id"]
    assert len(clip["warps"]) == 4 and clip["warps"][0] == 0 and clip["warps"][-1] < clip["frames"]
    for s in clip["warps"]:
        assert len(list((folder / "warps" / f"{s:05d}").glob("*.jpg"))) == clip["frames"]
    s, t = clip["warps"][1], clip["warps"][2]
    frame, other = (cv2.imread(str(folder / "frames" / f"{i:05d}.jpg")).astype(float) for i in (s, t))
    own, to_other = (cv2.imread(str(folder / "warps" / f"{s:05d}" / f"{i:05d}.jpg")).astype(float) for i in (s, t))
    assert np.abs(own - frame).mean() < 3  # a frame warped to its own landmarks is itself

    def shape(image):  # where things are, not how crisp: a warp resamples (at 64 px that softens edges)
        return cv2.GaussianBlur(image, (0, 0), 1.0)

    # Warped towards the other frame where the two differ: around the mouth and chin, which open between them.
    lower = points[t][[13, 14, 17, 61, 291, 152, 148, 377], :2]
    (x0, y0), (x1, y1) = np.floor(lower.min(0) - 3).astype(int), np.ceil(lower.max(0) + 3).astype(int)
    box = (slice(max(0, y0), y1), slice(max(0, x0), x1))
    assert np.abs(shape(to_other) - shape(other))[box].mean() < np.abs(shape(frame) - shape(other))[box].mean()
    report = json.loads((data / "report.json").read_text())
    assert [s["source"] for s in report["skipped"]] == ["wall.mp4"] and "no face" in report["skipped"][0]["reason"]

    # Running it again keeps what is done.
    capsys.readouterr()
    assert main(["prepare-data", str(videos), "--out", str(data), "--size", "64", "--min-frames", "10"]) == 0
    assert "2 kept from an earlier run" in capsys.readouterr().out
    assert json.loads((data / "index.json").read_text()) == index


def test_prepare_data_on_a_shared_clip(tmp_path):
    clip = shared_media("train/train_20_man_beard_shouting_movie.mp4")
    (tmp_path / "v").mkdir()
    shutil.copy(clip, tmp_path / "v" / clip.name)
    assert main(["prepare-data", str(tmp_path / "v"), "--out", str(tmp_path / "d"), "--size", "64", "--max-frames", "24"]) == 0
    index = json.loads((tmp_path / "d" / "index.json").read_text())
    assert index["clips"][0]["frames"] == 24


def test_the_crop_is_the_one_the_exporter_describes():
    from avatar_app.model.export import CROP_SCALE
    from avatar_app.training import prepare

    assert prepare.CROP_SCALE == CROP_SCALE


# -- episodes and the distributed share ------------------------------------------------------------------------

def test_each_process_gets_its_own_share_of_every_epoch(data):
    from avatar_app.training.dataset import EpisodeDataset, EpisodePlan, read_index

    ds = EpisodeDataset(read_index(data), 64, 4, 1)
    fake = type("SixClips", (), {"__len__": lambda self: 6, "data": ds.data})()  # the plan needs a length only
    shares = [list(EpisodePlan(fake, 1, rank, 2, seed=0, first_step=1, last_step=3)) for rank in (0, 1)]
    clips = [b[0][0] for share in shares for b in share]
    assert sorted(clips) == list(range(6))  # one epoch, split without overlap
    later = list(EpisodePlan(fake, 1, 0, 2, seed=0, first_step=2, last_step=3))
    assert later == shares[0][1:]  # starting at step 2 is the same as getting there

    episode = ds[(0, 7)]
    assert episode["frames"].shape == (4, 3, 64, 64) and episode["target_landmarks"].shape == (3, 64, 64)
    assert episode["frames"].min() >= -1 and episode["landmarks"].max() <= 1 and episode["problem"] == ""
    torch.testing.assert_close(ds[(0, 7)]["frames"], episode["frames"])  # the seed alone picks the frames


# -- train -----------------------------------------------------------------------------------------------------

def test_train_writes_a_checkpoint_export_accepts(trained, tmp_path):
    from avatar_app.model.export import export_checkpoint

    nets, raw = load_checkpoint(trained / "checkpoint.pt")
    assert raw["step"] == 4 and nets.config == TINY and set(raw["optimizers"]) == {"generator", "discriminator"}
    assert (trained / "samples" / "step_0000004.png").is_file() and (trained / "run.json").is_file()
    assert (trained / "losses.png").is_file()  # matplotlib comes with the dev and train extras
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        pass
    else:
        assert list((trained / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader(open(trained / "losses.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and all(np.isfinite(float(r["G"])) for r in rows)
    reports = export_checkpoint(trained / "checkpoint.pt", tmp_path / "m", ["torchscript"])
    assert reports[0].max_difference <= 1e-4


def test_reconstruction_error_on_the_training_episode_falls(data, tmp_path):
    from avatar_app.training.config import TrainingConfig
    from avatar_app.training.dataset import EpisodeDataset, read_index
    from avatar_app.training.loop import MetaLearner, train

    episode = EpisodeDataset(read_index(data), 64, 4, 1)[(0, 123)]

    def error(nets) -> float:
        learner = MetaLearner(nets.embedder, nets.generator).eval()
        with torch.no_grad():
            out, _ = learner(episode["frames"][None], episode["landmarks"][None], episode["target_landmarks"][None])
        return float((out[0] - episode["target"]).abs().mean())

    before = error(build_networks(TINY, num_videos=1, seed=0))
    # The paper's learning rates move a network this small too slowly for a test; 20x them shows the loop learns.
    config = TrainingConfig(steps=30, batch_size=1, shots=4, checkpoint_every=30, lr_generator=1e-3, lr_discriminator=4e-3)
    with pytest.warns(UserWarning, match="pixel L1"):
        train(data, tmp_path / "run", config, TINY, progress=False)
    after = error(load_checkpoint(tmp_path / "run" / "checkpoint.pt")[0])
    assert after < 0.75 * before, (before, after)


def test_resume_continues_exactly(data, tiny_json, tmp_path, capsys):
    assert _train(data, tmp_path / "straight", tiny_json, "--steps", 4) == 0
    assert capsys.readouterr().err.count("the content loss is pixel L1") == 1  # warned once, not every step
    assert _train(data, tmp_path / "halves", tiny_json, "--steps", 2) == 0
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "halves"), "--resume", "--steps", "4"]) == 0
    a, ra = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b, rb = load_checkpoint(tmp_path / "halves" / "checkpoint.pt")
    for name in ("embedder", "generator", "discriminator"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    for name in ("generator", "discriminator"):
        for k, v in ra["optimizers"][name]["state"].items():
            assert all(torch.equal(v[s], rb["optimizers"][name]["state"][k][s]) for s in v)

    def losses(run):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(run / "losses.csv"))]

    assert losses(tmp_path / "straight") == losses(tmp_path / "halves")


def test_two_processes_train_with_ddp_over_gloo(data, tiny_json, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "avatar_app",
           "train", "--data", str(data), "--out", str(tmp_path / "ddp"), "--config", str(tiny_json), "--steps", "2",
           "--batch-size", "1", "--shots", "4", "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 process(es)" in result.stdout and result.stdout.count("checkpoint.pt: step 2") == 1  # rank 0 only
    _, raw = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert raw["step"] == 2 and raw["world_size"] == 2


# -- perceptual networks ---------------------------------------------------------------------------------------

def _fake_weights(spec, style: str) -> dict:
    from avatar_app.training.perceptual import PerceptualNet, _conv_names

    net = PerceptualNet(spec)
    g = torch.Generator().manual_seed(0)
    state = {}
    for index, name in zip(net.conv_indices(), _conv_names(spec)):
        conv = net.features[index]
        key = f"features.{index}" if style == "torchvision" else name
        state[f"{key}.weight"] = torch.randn(conv.weight.shape, generator=g) * 0.05
        state[f"{key}.bias"] = torch.zeros(conv.bias.shape)
    return state


def test_perceptual_weights_load_from_local_files_and_a_wrong_file_is_refused(data, tiny_json, tmp_path, capsys):
    from avatar_app.errors import InputFileError
    from avatar_app.training.perceptual import VGG19, VGGFACE, load_perceptual

    torch.save(_fake_weights(VGG19, "torchvision"), tmp_path / "vgg19.pth")
    torch.save(_fake_weights(VGGFACE, "dag"), tmp_path / "vgg_face_dag.pth")
    net = load_perceptual(VGGFACE, tmp_path / "vgg_face_dag.pth")
    assert [f.shape[1] for f in net(torch.zeros(1, 3, 64, 64))] == [64, 128, 256, 512, 512]

    with pytest.raises(InputFileError, match="not VGG19 weights .*vgg19-dcbb9e9d.pth"):
        load_perceptual(VGG19, tmp_path / "vgg_face_dag.pth")  # VGG16 layers are not VGG19's
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"no weights here")
    with pytest.raises(InputFileError, match="not VGGFace weights"):
        load_perceptual(VGGFACE, junk)

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"features.0.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(InputFileError, match="pickled objects"):
        load_perceptual(VGG19, tmp_path / "evil.pth")

    capsys.readouterr()
    assert _train(data, tmp_path / "run", tiny_json, "--steps", 1, "--vgg19-weights", tmp_path / "vgg19.pth",
                  "--vggface-weights", tmp_path / "vgg_face_dag.pth") == 0
    assert "perceptual" not in capsys.readouterr().err  # no fallback warning
    row = next(csv.DictReader(open(tmp_path / "run" / "losses.csv")))
    assert float(row["content_vgg19"]) > 0 and float(row["content_vggface"]) > 0 and "content_l1" not in row
    _one_line(capsys, _train(data, tmp_path / "run2", tiny_json, "--steps", 1, "--vgg19-weights", junk),
              "junk.pth", "not VGG19 weights")


# -- finetune --------------------------------------------------------------------------------------------------

def test_finetune_writes_a_model_and_avatar_that_render_accepts(trained, tmp_path, generated_driver):
    out = tmp_path / "ft"
    code = main(["finetune", "--checkpoint", str(trained / "checkpoint.pt"), "--images", str(PORTRAITS / "mona_lisa.jpg"),
                 "--out", str(out), "--steps", "3", "--format", "torchscript", "--device", "cpu"])
    assert code == 0
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    from avatar_app.pipeline.avatar import load_avatar

    avatar = load_avatar(out / "mona_lisa.avatar")
    assert avatar.neural.model_id == manifest["model_id"]
    assert avatar.neural.psi.shape == (manifest["generator"]["inputs"][1]["shape"][1],)
    assert (out / "finetune.png").is_file()
    video = tmp_path / "o.mp4"
    assert main(["render", "--driver", str(generated_driver), "--avatar", str(out / "mona_lisa.avatar"), "--backend",
                 "neural", "--model", str(out / "model"), "--runtime", "torchscript", "--trust-model", "--out", str(video), "--size", "128"]) == 0
    assert probe_video(video).frame_count == probe_video(generated_driver).frame_count


# -- bad input and faults: one line, exit code 2, nothing lost ---------------------------------------------------

def test_bad_data_folders(data, tiny_json, tmp_path, capsys):
    _one_line(capsys, _train(tmp_path, tmp_path / "r", tiny_json, "--steps", 1), "no index.json", "prepare-data")
    gone = tmp_path / "gone"
    shutil.copytree(data, gone)
    shutil.rmtree(gone / "clips" / "id001")
    _one_line(capsys, _train(gone, tmp_path / "r", tiny_json, "--steps", 1), "00001", "clip vanished")
    _one_line(capsys, main(["prepare-data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]), "no such folder")
    (tmp_path / "empty").mkdir()
    _one_line(capsys, main(["prepare-data", str(tmp_path / "empty"), "--out", str(tmp_path / "d")]), "no videos found")


def test_unreadable_frames_are_skipped_and_counted(data, tiny_json, tmp_path, capsys, monkeypatch):
    damaged = tmp_path / "damaged"
    shutil.copytree(data, damaged)
    for n, frame in enumerate(sorted((damaged / "clips").rglob("*.jpg"))):
        if n % 2:
            frame.write_bytes(b"not a jpeg")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as on a machine without tensorboard
    assert _train(damaged, tmp_path / "r", tiny_json, "--steps", 3) == 0
    err = capsys.readouterr().err
    assert "unreadable frame(s) were skipped" in err and err.count("tensorboard is not installed") == 1
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")[1]["unreadable"] > 0


def test_runs_refuse_mismatches(trained, data, tiny_json, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    _one_line(capsys, _train(data, run, tiny_json, "--steps", 8), "already holds a run", "--resume")
    _one_line(capsys, _train(data, tmp_path / "new", tiny_json, "--steps", 8, "--resume"), "nothing to resume")
    _one_line(capsys, main(["train", "--data", str(data), "--out", str(run), "--resume", "--config", "realtime"]),
              "made with the 'tiny' configuration")
    _one_line(capsys, main(["train", "--data", str(data), "--out", str(run), "--resume", "--steps", "8", "--shots", "2"]),
              "started with --shots 4")
    _one_line(capsys, main(["train", "--data", str(data), "--out", str(run), "--resume", "--steps", "4"]),
              "already at step 4")
    _one_line(capsys, main(["finetune", "--checkpoint", str(run / "checkpoint.pt"), "--images", str(tmp_path / "no.jpg"),
                            "--out", str(tmp_path / "ft")]), "no.jpg")


def test_a_checkpoint_write_that_dies_or_fills_the_disk_keeps_the_last_good_one(trained, data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    good = (run / "checkpoint.pt").read_bytes()

    def killed(obj, path, *a, **k):
        Path(path).write_bytes(b"half a checkpoi")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    assert main(["train", "--data", str(data), "--out", str(run), "--resume", "--steps", "5"]) == 130
    assert (run / "checkpoint.pt").read_bytes() == good and not list(run.glob(".*partial*"))

    def full(obj, path, *a, **k):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    capsys.readouterr()
    _one_line(capsys, main(["train", "--data", str(data), "--out", str(run), "--resume", "--steps", "5"]),
              "No space left on device", "step 4 is kept")
    assert (run / "checkpoint.pt").read_bytes() == good and not list(run.glob(".*partial*"))
    monkeypatch.undo()
    assert load_checkpoint(run / "checkpoint.pt")[1]["step"] == 4


def test_finetune_on_a_picture_without_a_face(trained, tmp_path, capsys):
    import cv2

    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((128, 128, 3), 127, np.uint8))
    _one_line(capsys, main(["finetune", "--checkpoint", str(trained / "checkpoint.pt"), "--images", str(wall),
                            "--out", str(tmp_path / "ft")]), "wall", "no face")


@pytest.mark.parametrize("progress", [False, True], ids=["quiet", "watched"])
def test_no_tensorboard_is_a_note_once_per_watched_run_not_a_warning(tmp_path, monkeypatch, capsys, recwarn, progress):
    from avatar_app.training.monitor import Monitor

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as on a machine without tensorboard
    monitor = Monitor(tmp_path, start_step=0, total_steps=2, enabled=True, progress=progress)
    monitor.close()
    assert monitor.writer is None
    assert not [w for w in recwarn if "tensorboard" in str(w.message)]
    err = capsys.readouterr().err
    assert err.count("tensorboard is not installed") == (1 if progress else 0)
