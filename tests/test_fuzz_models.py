"""Fuzzed inputs (model folders, checkpoints, settings, the command line): random bytes and mutated valid files fed to every loader a user can reach.

Each case must end in a valid load or in the project's own error (an AvatarAppError) whose message is one line
naming the file - never another exception, a hang, a decoded decompression bomb or an unpickled object.
Hypothesis runs derandomized, so CI sees the same cases every time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from avatar_app.commands.cli import main
from avatar_app.errors import AvatarAppError

from tests.fuzzing import one_error_line
from tests.fuzzing import fuzz, time_limit, attempt, case_dir, mutated, junk_with_magic, json_values, Tripwire, _tripped

# PIL warns about the corrupt EXIF blocks these tests make; the loaders' results are what is checked.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning", "ignore:Tag data larger:UserWarning",
                                        "ignore:Metadata Warning:UserWarning")


# --- 4. model folders, weights and checkpoints ------------------------------------------------------------

try:
    import torch

    from avatar_app.model.checkpoint import build_networks, load_checkpoint, read_weights_file, save_checkpoint
    from avatar_app.model.config import CONFIGS, ModelConfig
    from avatar_app.commands.train import model_config
    from avatar_app.training.dataset import read_index
except ImportError:  # the [train] extra is not installed: the tests below skip, the rest still run
    torch = None
try:
    import onnxruntime
except ImportError:
    onnxruntime = None
from avatar_app.model.format import read_manifest  # noqa: E402 - needs neither
from avatar_app.pipeline.render.neural import ExportedModel  # noqa: E402 - needs neither

needs_torch = pytest.mark.skipif(torch is None, reason="the model needs torch (pip install -e .[train])")
needs_onnx = pytest.mark.skipif(torch is None or onnxruntime is None,
                                reason="exporting and running a model needs torch and onnxruntime (.[train,cpu])")


@pytest.fixture(scope="module")
def tiny_config():
    return ModelConfig(
        name="tiny", image_size=64, embed_dim=64, base_channels=8, max_channels=32, encoder_blocks=4,
        encoder_attention=16, gen_channels=(8, 16, 32), gen_stem_stride=2, gen_middle_blocks=1,
        gen_attention_down=(), gen_attention_up=(), landmark_thickness=1,
    )


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_config) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", build_networks(tiny_config, num_videos=3, seed=1))


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory, tiny_checkpoint) -> Path:
    """A real model folder, made once by `avatar-app export` (ONNX only, the app's default runtime)."""
    out = tmp_path_factory.mktemp("model") / "tiny"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--format", "onnx"]) == 0
    assert json.loads((out / "manifest.json").read_text())["generator"]["inputs"][1]["shape"] == [1, 320]
    return out


def model_copy(exported: Path, into: Path, manifest: bytes | None = None, replace: dict | None = None) -> Path:
    """A model folder whose files link to the exported ones, except those given."""
    folder = into / "tiny_model_folder"
    folder.mkdir()
    replace = dict(replace or {})
    if manifest is not None:
        replace["manifest.json"] = manifest
    for f in exported.iterdir():
        if f.name in replace:
            (folder / f.name).write_bytes(replace[f.name])
        else:
            (folder / f.name).symlink_to(f)
    return folder


def run_model(folder: Path):
    """What the app does with a model folder: read it, then run the generator once (on a ψ of the tiny
    model's length: a mutated manifest must not decide what the test feeds in)."""
    model = ExportedModel(folder, "onnx", "cpu")
    s = model.size
    return model.generate(np.zeros((1, 3, s, s), np.float32), np.zeros((1, 320), np.float32))


@needs_onnx
@fuzz(80)
@given(data=st.data())
def test_model_folder_with_a_mutated_manifest(tmp_path, exported_model, data):
    manifest = json.loads((exported_model / "manifest.json").read_text())
    how = data.draw(st.sampled_from(["top", "nested", "files", "delete", "replace", "bytes"]))
    if how == "top":
        manifest[data.draw(st.sampled_from(sorted(manifest)))] = data.draw(json_values)
    elif how == "nested":
        section = data.draw(st.sampled_from(["landmark_image", "crop"]))
        manifest[section][data.draw(st.sampled_from(sorted(manifest[section])))] = data.draw(
            json_values | st.sampled_from([0, -1, 10**9, 1e308, float("nan")]))
    elif how == "files":
        name = data.draw(st.sampled_from(["../../etc/passwd", "/etc/hostname", "identity.onnx", "manifest.json",
                                          "generator.onnx.data", "nowhere.onnx", "", "a\nb.onnx"]))
        manifest["files"]["onnx"][data.draw(st.sampled_from(["generator", "identity"]))] = name
    elif how == "delete":
        del manifest[data.draw(st.sampled_from(sorted(manifest)))]
    elif how == "replace":
        manifest = data.draw(json_values)
    text = data.draw(st.binary(max_size=256)) if how == "bytes" else json.dumps(manifest).encode()
    folder = model_copy(exported_model, case_dir(tmp_path), manifest=text)
    result = attempt(run_model, folder, names=folder.name)
    if not isinstance(result, AvatarAppError):
        assert isinstance(result, np.ndarray) and result.ndim == 4


@needs_onnx
@fuzz(60)
@given(data=st.data())
def test_model_folder_with_mutated_onnx_files(tmp_path, exported_model, data):
    name = data.draw(st.sampled_from(["generator.onnx", "generator.onnx", "generator.onnx.data"]))
    if data.draw(st.integers(0, 5)) == 0:
        content = data.draw(st.binary(max_size=1024))
    else:
        content = data.draw(mutated((exported_model / name).read_bytes()))
    folder = model_copy(exported_model, case_dir(tmp_path), replace={name: content})
    result = attempt(run_model, folder, names=folder.name)
    if not isinstance(result, AvatarAppError):
        assert result.shape == (1, 3, 64, 64)


def test_manifest_nested_too_deep_is_refused(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    assert isinstance(attempt(read_manifest, folder, names="manifest.json"), AvatarAppError)


def check_checkpoint(result, path: Path) -> None:
    assert not _tripped, f"{path}: a pickle was loaded"
    if not isinstance(result, AvatarAppError):
        nets, raw = result
        assert nets.config.image_size > 0 and isinstance(raw, dict)


@needs_torch
@fuzz(40)
@given(data=junk_with_magic([b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", b"PK\x05\x06"]))
def test_checkpoint_random_bytes(tmp_path, data):
    path = case_dir(tmp_path) / "c.pt"
    path.write_bytes(data)
    assert isinstance(attempt(load_checkpoint, path), AvatarAppError)
    try:
        read_weights_file(path)  # other readers (perceptual weights) take any plain tensors or containers
    except ValueError as err:
        assert "\n" not in str(err)
    assert not _tripped


@needs_torch
@fuzz(60)
@given(data=st.data())
def test_checkpoint_mutated_file(tmp_path, tiny_checkpoint, data):
    path = case_dir(tmp_path) / "c.pt"
    path.write_bytes(data.draw(mutated(tiny_checkpoint.read_bytes())))
    check_checkpoint(attempt(load_checkpoint, path), path)


@needs_torch
@fuzz(60)
@given(data=st.data())
def test_checkpoint_with_mutated_contents(tmp_path, tiny_checkpoint, data):
    raw = torch.load(tiny_checkpoint, weights_only=True)
    how = data.draw(st.sampled_from(["top", "config", "weights", "pickle"]))
    if how == "top":
        raw[data.draw(st.sampled_from(["format", "version", "num_videos", "config", "generator"]))] = data.draw(
            json_values | st.sampled_from([10**12, -5, 3.5]))
    elif how == "config":
        raw["config"][data.draw(st.sampled_from(sorted(raw["config"]) + ["bogus"]))] = data.draw(
            json_values | st.sampled_from([10**9, 0, -1, [10**6], 100_000, 2.5]))
    elif how == "weights":
        state = raw[data.draw(st.sampled_from(["embedder", "generator", "discriminator"]))]
        key = data.draw(st.sampled_from(sorted(state)))
        state[key] = data.draw(st.sampled_from([torch.zeros(3), torch.zeros(2, 2, dtype=torch.int64),
                                                torch.full_like(state[key], float("nan")), "x"]))
    else:
        raw[data.draw(st.sampled_from(["extra", "config", "generator"]))] = Tripwire()
    path = case_dir(tmp_path) / "c.pt"
    torch.save(raw, path)
    result = attempt(load_checkpoint, path, seconds=20)
    check_checkpoint(result, path)
    if how == "pickle":
        assert isinstance(result, AvatarAppError) and "pickled" in str(result)


# --- 5. settings ------------------------------------------------------------------------------------------


def parameter_count(config) -> int:
    """Parameters of E, G and D for a configuration, counted on the meta device (nothing is allocated), without
    spectral norm (its power iteration is slow on meta, and it adds no parameters)."""
    import dataclasses
    from unittest import mock

    key = dataclasses.replace(config, name="")
    if key not in _parameter_counts:
        with torch.device("meta"), mock.patch("avatar_app.model.layers.spectral_norm", lambda module: module):
            nets = build_networks(config, seed=None)
        _parameter_counts[key] = sum(p.numel() for m in (nets.embedder, nets.generator, nets.discriminator)
                                     for p in m.parameters())
    return _parameter_counts[key]


_parameter_counts: dict = {}


@needs_torch
@fuzz(100)
@given(data=st.data())
def test_model_config_file(tmp_path, data):
    base = CONFIGS["realtime"].to_dict()
    how = data.draw(st.sampled_from(["set", "set", "delete", "replace", "bytes"]))
    if how == "set":
        base[data.draw(st.sampled_from(sorted(base) + ["bogus\nkey"]))] = data.draw(
            json_values | st.sampled_from([10**9, 0, -1, [10**6], [], 2.5, True]))
    elif how == "delete":
        del base[data.draw(st.sampled_from(sorted(base)))]
    text = (data.draw(st.binary(max_size=128) | st.just(b"[" * 50_000)) if how == "bytes"
            else json.dumps(data.draw(json_values) if how == "replace" else base).encode())
    path = case_dir(tmp_path) / "sizes.json"
    path.write_bytes(text)
    result = attempt(model_config, path)
    if not isinstance(result, AvatarAppError):
        assert isinstance(result, ModelConfig)
        params = parameter_count(result)  # whatever it accepts can be built without exhausting memory
        assert params < 2e9, f"{path}: accepted a config of {params / 1e9:.1f} G parameters"


@pytest.fixture(scope="module")
def prepared_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for cid in ("a", "b"):
        (root / "clips" / cid).mkdir(parents=True)
        np.save(root / "clips" / cid / "landmarks.npy", np.zeros((3, 478, 2), np.float32))
    index = {"format": "avatar_app.training_data", "version": 1, "size": 64, "image_format": "jpg", "crop_scale": 1.8,
             "clips": [{"id": "a", "video": "v1", "frames": 3, "source": "a.mp4"},
                       {"id": "b", "video": "v1", "frames": 3, "source": "b.mp4"}]}
    (root / "index.json").write_text(json.dumps(index))
    return root


@needs_torch
@fuzz(80)
@given(data=st.data())
def test_training_data_index(tmp_path, prepared_data, data):
    index = json.loads((prepared_data / "index.json").read_text())
    how = data.draw(st.sampled_from(["top", "clip", "clip", "delete", "replace", "bytes"]))
    if how == "top":
        index[data.draw(st.sampled_from(sorted(index)))] = data.draw(json_values)
    elif how == "clip":
        index["clips"][0][data.draw(st.sampled_from(["id", "video", "frames", "source"]))] = data.draw(
            json_values | st.sampled_from(["../../etc", "/etc", "a/../b", "", float("inf"), 10**30, -3]))
    elif how == "delete":
        del index[data.draw(st.sampled_from(sorted(index)))]
    text = (data.draw(st.binary(max_size=128)) if how == "bytes"
            else json.dumps(data.draw(json_values) if how == "replace" else index).encode())
    folder = case_dir(tmp_path)
    (folder / "clips").symlink_to(prepared_data / "clips")
    (folder / "index.json").write_bytes(text)
    result = attempt(read_index, folder, names=folder.name)
    if not isinstance(result, AvatarAppError):
        assert result.size > 0 and result.clips
        for clip in result.clips:
            inside = clip.directory.relative_to(folder / "clips").parts
            assert clip.frames >= 1 and inside and ".." not in inside, clip


ini_values = st.one_of(
    st.text(max_size=20), st.integers(-(2**40), 2**40).map(str), st.sampled_from(["true", "false", "@Invalid()", ""]),
    st.binary(max_size=24).map(lambda b: "@Variant(" + b.decode("latin-1") + ")"),
    st.binary(max_size=24).map(lambda b: "@ByteArray(" + b.decode("latin-1") + ")"),
    st.lists(st.text(max_size=5), min_size=2, max_size=3).map(", ".join),
)


@fuzz(100)
@given(data=st.data())
def test_app_settings_from_a_junk_ini_file_fall_back_to_defaults(tmp_path, data):
    QSettings = pytest.importorskip("PySide6.QtCore", reason="the desktop app needs PySide6 (.[gui])").QSettings
    from avatar_app.ui.settings import CAMERA_SIZES, FRAME_RATES, AppSettings

    how = data.draw(st.sampled_from(["values", "values", "bytes", "mutated"]))
    names = ["avatar", "source", "mirror", "size", "camera_size", "fps", "renderer", "overlay", "hud"]
    if how == "values":
        lines = ["[General]"] + [f"{k}={data.draw(ini_values)}" for k in data.draw(st.lists(st.sampled_from(names)))]
        content = "\n".join(lines).encode("utf-8", "surrogatepass")
    elif how == "bytes":
        content = data.draw(st.binary(max_size=512))
    else:
        valid = "[General]\navatar=/x/me.avatar\nsource=0\nmirror=true\nsize=512\ncamera_size=1280x720\nfps=30\n"
        content = data.draw(mutated(valid.encode()))
    path = case_dir(tmp_path) / "settings.ini"
    path.write_bytes(content)
    with time_limit(10):
        loaded = AppSettings.load(QSettings(str(path), QSettings.Format.IniFormat))
    defaults = AppSettings()
    for name in names:
        assert type(getattr(loaded, name)) is type(getattr(defaults, name)), (name, getattr(loaded, name))
    assert 32 <= loaded.size <= 4096 and loaded.camera_size in CAMERA_SIZES and loaded.fps in FRAME_RATES


def test_app_settings_harness_reads_what_save_wrote(tmp_path):
    """The fuzz test above is only worth something if its files are read at all."""
    QSettings = pytest.importorskip("PySide6.QtCore", reason="the desktop app needs PySide6 (.[gui])").QSettings
    from avatar_app.ui.settings import AppSettings

    path = tmp_path / "settings.ini"
    AppSettings(avatar="/x/me.avatar", source="clip.mp4", mirror=False, size=384, camera_size="640x480", fps=25,
                renderer="neural:export/rt", hud=True).save(QSettings(str(path), QSettings.Format.IniFormat))
    loaded = AppSettings.load(QSettings(str(path), QSettings.Format.IniFormat))
    assert (loaded.avatar, loaded.source, loaded.mirror, loaded.size) == ("/x/me.avatar", "clip.mp4", False, 384)
    assert (loaded.camera_size, loaded.fps, loaded.renderer, loaded.hud) == ("640x480", 25, "neural:export/rt", True)


# --- 6. the command line (the media cases are in test_fuzz_media.py) -------------------------------------
@needs_torch
@fuzz(6)
@given(text=st.binary(max_size=128) | json_values.filter(lambda v: not isinstance(v, dict) or "name" not in v).map(
    lambda v: json.dumps(v).encode()))  # a dict with a name would be a valid config (paper sizes) and train
def test_cli_train_with_a_damaged_config_file(tmp_path, capsys, prepared_data, text):
    folder = case_dir(tmp_path)
    config = folder / "sizes.json"
    config.write_bytes(text)
    code = main(["train", "--data", str(prepared_data), "--out", str(folder / "run"), "--config", str(config)])
    one_error_line(capsys, code, config)
    assert not (folder / "run" / "checkpoint.pt").exists()



def test_the_cli_says_one_line_for_a_junk_checkpoint_even_when_torch_would_warn(tmp_path):
    """Run as a user does (a real process, warnings not captured by pytest): a plain pickle given as a checkpoint
    makes torch warn about its protocol; the user still sees exactly one line, and exit code 2."""
    import pickle
    import subprocess
    import sys

    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps({"format": "avatar_app.checkpoint", "nets": [1, 2, 3]}, protocol=4))
    run = subprocess.run([sys.executable, "-m", "avatar_app", "export", "--checkpoint", str(junk), "--out",
                          str(tmp_path / "m")], capture_output=True, text=True, timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and str(junk) in lines[0], run.stderr
    assert not (tmp_path / "m").exists()
