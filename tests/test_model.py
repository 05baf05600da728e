"""The paper's networks, their export, and the neural backend (random weights: shapes and plumbing, not looks)."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the model needs torch (pip install -e .[train])")
pytest.importorskip("onnxruntime", reason="the neural backend needs onnxruntime (pip install -e .[cpu])")

from avatar_app.commands.cli import main  # noqa: E402
from avatar_app.errors import AvatarAppError, InputFileError  # noqa: E402
from avatar_app.model.checkpoint import build_networks, load_checkpoint, model_id, save_checkpoint  # noqa: E402
from avatar_app.model.config import CONFIGS  # noqa: E402
from avatar_app.model.export import export_checkpoint  # noqa: E402
from avatar_app.model.layers import adain  # noqa: E402
from avatar_app.pipeline.sources import probe_video  # noqa: E402
from tests.conftest import PORTRAITS  # noqa: E402


@pytest.mark.parametrize("name", ["realtime", "paper"])
def test_shapes_through_embedder_generator_and_discriminator(name):
    cfg = CONFIGS[name]
    nets = build_networks(cfg, num_videos=5)
    s = cfg.image_size
    frames, lms = torch.rand(2, 3, s, s) * 2 - 1, torch.rand(2, 3, s, s)
    with torch.no_grad():
        e = nets.embedder(frames, lms)
        assert e.shape == (2, cfg.embed_dim)
        psi = nets.generator.project(e)
        assert psi.shape == (2, nets.generator.n_psi)
        if cfg.conditioning == "warp":
            out, mask = nets.generator(frames, lms, psi)
            assert mask.shape == (2, 1, s, s) and 0 <= mask.min() <= mask.max() <= 1
        else:
            out = nets.generator(lms, psi)
        assert out.shape == (2, 3, s, s) and out.abs().max() <= 1
        score, features = nets.discriminator(frames, lms, torch.tensor([0, 4]))
        assert score.shape == (2,) and len(features) >= cfg.encoder_blocks


def test_adain_scales_by_one_plus_gamma():
    """psi = P e_hat is centred on 0: gamma 0 must keep the normalised contrast (a raw gamma made the output's
    contrast proportional to |e_hat|, and a shrinking e_hat drew grey faces)."""
    x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])  # one channel: mean 4, std sqrt(5)
    out = adain(x, torch.tensor([[2.0]]), torch.tensor([[10.0]]), eps=0.0)
    torch.testing.assert_close(out, (x - 4) / np.sqrt(5) * 3 + 10)
    torch.testing.assert_close(adain(x, torch.tensor([[0.0]]), torch.tensor([[0.0]]), eps=0.0), (x - 4) / np.sqrt(5))


def test_identity_is_the_mean_embedding_over_k_frames():
    nets = build_networks(CONFIGS["realtime"])
    nets.embedder.eval()  # in training mode spectral norm refines its estimate on every call
    s = CONFIGS["realtime"].image_size
    frames, lms = torch.rand(4, 3, s, s) * 2 - 1, torch.rand(4, 3, s, s)
    with torch.no_grad():
        each = nets.embedder(frames, lms)
        torch.testing.assert_close(nets.embedder.identity(frames, lms), each.mean(0, keepdim=True))


def test_checkpoint_round_trip_and_pickle_refusal(tmp_path):
    nets = build_networks(CONFIGS["realtime"], num_videos=3)
    path = save_checkpoint(tmp_path / "a.pt", nets, step=7)
    back, raw = load_checkpoint(path)
    assert model_id(back) == model_id(nets) and raw["step"] == 7 and back.num_videos == 3

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "avatar_app.checkpoint", "version": 1, "x": Payload()}, evil)
    with pytest.raises(InputFileError, match="pickled objects"):
        load_checkpoint(evil)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputFileError, match="junk.pt"):
        load_checkpoint(junk)


@pytest.mark.parametrize("name", ["realtime", "paper"])
def test_export_matches_eager_torch(tmp_path, name):
    save_checkpoint(tmp_path / "c.pt", build_networks(CONFIGS[name]))
    reports = export_checkpoint(tmp_path / "c.pt", tmp_path / "m", ["onnx", "torchscript"])
    assert {r.format for r in reports} == {"onnx", "torchscript"}
    assert all(r.max_difference <= 1e-4 and r.bytes > 0 for r in reports)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["format"] == "avatar_app.model" and manifest["version"] == 2
    assert manifest["conditioning"] == CONFIGS[name].conditioning
    psi = next(i for i in manifest["generator"]["inputs"] if i["name"] == "psi")
    assert psi["shape"][1] == build_networks(CONFIGS[name]).generator.n_psi
    assert not list(tmp_path.glob(".m.*"))  # no temp folder left


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    save_checkpoint(root / "rt.pt", build_networks(CONFIGS["realtime"], seed=3), step=5)
    export_checkpoint(root / "rt.pt", root / "rt", ["onnx", "torchscript"], with_networks=True)
    return root / "rt"


def test_a_model_folder_can_carry_its_networks_for_fine_tuning(exported):
    nets, raw = load_checkpoint(exported / "checkpoint.pt")
    manifest = json.loads((exported / "manifest.json").read_text())
    assert model_id(nets) == manifest["model_id"] and raw["step"] == 5 and "optimizers" not in raw


@pytest.fixture(scope="module")
def neural_avatar(exported, tmp_path_factory):
    path = tmp_path_factory.mktemp("av") / "mona_rt.avatar"
    assert main(["avatar", "create", str(PORTRAITS / "mona_lisa.jpg"), str(PORTRAITS / "girl_with_a_pearl_earring.jpg"),
                 "--model", str(exported), "--out", str(path)]) == 0
    return path


def test_an_exported_model_renders_through_render_backend_neural(tmp_path, exported, neural_avatar, generated_driver,
                                                                 capsys):
    for runtime in ("onnx", "torchscript"):
        out = tmp_path / f"n_{runtime}.mp4"
        code = main(["render", "--driver", str(generated_driver), "--avatar", str(neural_avatar), "--backend", "neural",
                     "--model", str(exported), "--runtime", runtime, "--out", str(out), "--size", "256", "--trust-model"])
        assert code == 0
        info = probe_video(out)
        assert info.frame_count == probe_video(generated_driver).frame_count and (info.width, info.height) == (144, 256)
        # The summary names the backend and the model folder that ran, so a fallback to mesh could not pass unseen.
        assert f"; drawn by neural (model {exported.name}, {runtime} on cpu);" in capsys.readouterr().out


def test_a_torchscript_model_runs_only_when_the_user_vouches_for_it(tmp_path, exported, neural_avatar,
                                                                    generated_driver, capsys):
    """A .ts file is code that runs (it can read and overwrite files): never loaded without --trust-model."""
    out = tmp_path / "ts.mp4"
    code = main(["render", "--driver", str(generated_driver), "--avatar", str(neural_avatar), "--backend", "neural",
                 "--model", str(exported), "--runtime", "torchscript", "--out", str(out), "--size", "128"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "--trust-model" in err and "--runtime onnx" in err


def test_evaluate_scores_the_neural_backend_beside_mesh_and_static(tmp_path, exported, generated_driver):
    report = tmp_path / "r.json"
    code = main(["evaluate", "--videos", str(generated_driver), "--backend", "neural", "--model", str(exported),
                 "--shots", "1", "2", "--frames", "3", "--size", "128", "--json", str(report)])
    assert code == 0
    rows = {(r["method"], r["shots"]) for r in json.loads(report.read_text())["overall"]}
    assert {("static", 1), ("mesh", 1), ("neural", 1), ("neural", 2)} <= rows


def _one_line(capsys, code, *fragments):
    assert code == 2
    err = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if ln.strip() and not ln.startswith(("tracking:", "rendering:"))]
    assert len(err) == 1 and err[0].startswith("avatar-app: error:"), err
    for f in fragments:
        assert f in err[0]


def test_bad_models_and_mismatched_avatars(tmp_path, capsys, exported, neural_avatar, generated_driver):
    def render(model, avatar=neural_avatar, *extra):
        return main(["render", "--driver", str(generated_driver), "--avatar", str(avatar), "--backend", "neural",
                     "--model", str(model), "--out", str(tmp_path / "o.mp4"), "--size", "128", *extra])

    _one_line(capsys, render(tmp_path / "nowhere"), "no such model folder")
    empty = tmp_path / "empty_model"
    empty.mkdir()
    _one_line(capsys, render(empty), "no manifest.json")

    other_version = tmp_path / "v3"
    shutil.copytree(exported, other_version)
    manifest = json.loads((other_version / "manifest.json").read_text())
    manifest["version"] = 3
    (other_version / "manifest.json").write_text(json.dumps(manifest))
    _one_line(capsys, render(other_version), "format version 3")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(exported, corrupt)
    (corrupt / "generator.onnx").write_bytes(b"garbage")
    _one_line(capsys, render(corrupt), "generator.onnx", "cannot load the model")

    assert not (tmp_path / "o.mp4").exists()


def test_an_avatar_gets_its_identity_the_first_time_it_meets_a_model(tmp_path, exported, generated_driver):
    """No extra step: a mesh-only avatar (or one made for another model) is given e_hat and psi from its portrait
    on first use, and they are kept in its file, so the next run does not compute them again."""
    from avatar_app.pipeline.avatar import load_avatar

    mesh_only = tmp_path / "mesh_only.avatar"
    assert main(["avatar", "create", str(PORTRAITS / "mona_lisa.jpg"), "--out", str(mesh_only)]) == 0
    assert load_avatar(mesh_only).neural is None
    other = tmp_path / "other"
    save_checkpoint(tmp_path / "o.pt", build_networks(CONFIGS["realtime"], seed=99))
    export_checkpoint(tmp_path / "o.pt", other, ["onnx"])
    for model in (exported, other):
        out = tmp_path / f"{model.name}.mp4"
        assert main(["render", "--driver", str(generated_driver), "--avatar", str(mesh_only), "--backend", "neural",
                     "--model", str(model), "--out", str(out), "--size", "128"]) == 0
        kept = load_avatar(mesh_only).neural
        assert kept is not None and kept.model_id == json.loads((model / "manifest.json").read_text())["model_id"]
        assert out.is_file()



def test_cuda_asked_for_without_cuda_is_one_line(tmp_path, capsys, exported, neural_avatar, generated_driver):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    code = main(["render", "--driver", str(generated_driver), "--avatar", str(neural_avatar), "--backend", "neural",
                 "--model", str(exported), "--provider", "cuda", "--out", str(tmp_path / "o.mp4")])
    _one_line(capsys, code, "CUDA was asked for", "--provider cpu")


def test_neural_without_a_model_uses_the_shipped_one_or_says_none_is_shipped(monkeypatch, tmp_path):
    from avatar_app.pipeline.render import exported
    from avatar_app.pipeline.render.backends import create_renderer
    from avatar_app.pipeline.render.base import RenderSettings

    shipped = exported.shipped_models()
    monkeypatch.setattr(exported, "shipped_models_dir", lambda: tmp_path / "none")
    with pytest.raises(AvatarAppError, match="--model"):
        create_renderer(RenderSettings(backend="neural"))
    monkeypatch.undo()
    if not shipped:
        pytest.skip("no model is shipped in this checkout")
    renderer = create_renderer(RenderSettings(backend="neural"))
    assert renderer.model.directory == shipped[0] and renderer.model.conditioning == "warp"


def test_the_neural_render_is_the_generated_correction_blended_over_the_warp(exported, tmp_path):
    """Open the exported model's mask (a G that repaints everywhere): the output inside the face crop must be
    what the generator drew, not the mesh warp - so a renderer that dropped the generated part fails here."""
    import cv2

    from avatar_app.pipeline.avatar import create_avatar
    from avatar_app.images import load_image
    from avatar_app.face.landmark_image import draw_landmarks
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.render.mesh import MeshRenderer
    from avatar_app.face.crop import face_crop
    from avatar_app.pipeline.render.neural import NeuralRenderer
    from tests.conftest import open_mouth

    nets, _ = load_checkpoint(exported.parent / "rt.pt")
    with torch.no_grad():
        nets.generator.to_out.bias[3].fill_(8.0)  # mask = sigmoid(8 + ...) ~ 1
    save_checkpoint(tmp_path / "open.pt", nets)
    export_checkpoint(tmp_path / "open.pt", tmp_path / "open", ["onnx"])

    avatar = create_avatar(load_image(PORTRAITS / "mona_lisa.jpg"), "mona")
    target = open_mouth(avatar.landmarks, 0.6)
    settings = RenderSettings(size=256)
    neural_r, mesh_r = NeuralRenderer(tmp_path / "open"), MeshRenderer()
    neural_r.prepare(avatar, settings)
    mesh_r.prepare(avatar, settings)
    assert neural_r.identity_made and avatar.neural.model_id == neural_r.model.model_id
    got, warp = neural_r.render(target).astype(np.float32), mesh_r.render(target)

    # What the generator drew, placed back by hand: its rgb at the crop, in output pixels.
    s = neural_r.model.size
    crop = face_crop(warp, neural_r._to_crop, s)
    x = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1
    lm = draw_landmarks(target, neural_r._box, s, neural_r.model.thickness).transpose(2, 0, 1)[None].astype(np.float32)
    rgb, mask = neural_r.model.correct(x, lm, avatar.neural.psi[None])
    assert mask.min() > 0.99
    drawn = cv2.cvtColor(((rgb[0].transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    w, h = neural_r.output_size
    placed = cv2.warpAffine(drawn, neural_r._from_crop, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inner = np.zeros((h, w), bool)  # the middle of the crop, where the taper leaves the correction whole
    x0, y0, side = np.array(neural_r._box) * neural_r._scale[0]
    inner[max(0, int(y0 + side / 4)): int(y0 + 3 * side / 4), max(0, int(x0 + side / 4)): int(x0 + 3 * side / 4)] = True
    assert np.abs(got - placed)[inner].mean() < 3.0  # the generator's picture, to rounding
    assert np.abs(got - warp.astype(np.float32))[inner].mean() > 10.0  # and not the warp it was given

