"""Avatar files: a round trip keeps everything; corrupt, foreign or pickled files are refused in one line."""

import io
import json
import zipfile

import numpy as np
import pytest

from avatar_app.pipeline.avatar import (
    AVATAR_VERSION,
    create_avatar,
    load_avatar,
    load_portrait_or_avatar,
    save_avatar,
)
from avatar_app.errors import InputFileError, NoFaceError, OutputPathError
from tests.conftest import PORTRAITS


@pytest.fixture(scope="module")
def saved(tmp_path_factory, mona_avatar):
    path = tmp_path_factory.mktemp("avatars") / "mona.avatar"
    save_avatar(mona_avatar, path)
    return path


def test_round_trip_keeps_image_landmarks_and_mesh(saved, mona_avatar):
    back = load_avatar(saved)
    assert back.name == "mona_lisa"
    np.testing.assert_array_equal(back.image, mona_avatar.image)
    np.testing.assert_array_equal(back.landmarks, mona_avatar.landmarks)
    np.testing.assert_array_equal(back.mesh.triangles, mona_avatar.mesh.triangles)
    np.testing.assert_array_equal(back.mesh.points, mona_avatar.mesh.points)
    np.testing.assert_array_equal(back.mesh.follow, mona_avatar.mesh.follow)
    np.testing.assert_array_equal(back.mesh.anchor, mona_avatar.mesh.anchor)
    np.testing.assert_array_equal(back.mesh.groups, mona_avatar.mesh.groups)


def test_everything_that_takes_a_portrait_takes_an_avatar_file(saved, tmp_path):
    from_file = load_portrait_or_avatar(saved)
    renamed = tmp_path / "no_suffix"
    renamed.write_bytes(saved.read_bytes())  # recognised by content, not only by name
    assert load_portrait_or_avatar(renamed).landmarks.shape == (478, 3)
    from_image = load_portrait_or_avatar(PORTRAITS / "mona_lisa.jpg")
    np.testing.assert_allclose(from_file.landmarks, from_image.landmarks, atol=1e-3)


def test_a_portrait_without_a_face_is_refused():
    blank = np.full((400, 300, 3), 200, np.uint8)
    with pytest.raises(NoFaceError, match="blank: no face found"):
        create_avatar(blank, "blank")


def _rewrite(src, dst, replace: dict):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = replace.get(item.filename, zin.read(item.filename))
            if data is not None:
                zout.writestr(item.filename, data)
        for name, data in replace.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data)


def _assert_refused(path, *fragments):
    with pytest.raises(InputFileError) as err:
        load_avatar(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for f in fragments:
        assert f in message


def test_random_bytes_are_not_an_avatar(tmp_path):
    bad = tmp_path / "junk.avatar"
    bad.write_bytes(np.random.default_rng(1).bytes(5000))
    _assert_refused(bad, "not a zip")


def test_truncated_avatar_is_refused(tmp_path, saved):
    cut = tmp_path / "cut.avatar"
    cut.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    _assert_refused(cut)


def test_pickled_arrays_are_refused_not_executed(tmp_path, saved):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    arrays = np.empty(1, dtype=object)
    arrays[0] = Exploit()
    np.savez(buf, landmarks=arrays, mesh_points=arrays, mesh_triangles=arrays, mesh_follow=arrays,
             mesh_anchor=arrays, mesh_groups=arrays)
    evil = tmp_path / "evil.avatar"
    _rewrite(saved, evil, {"arrays.npz": buf.getvalue()})
    _assert_refused(evil, "arrays.npz")
    assert not marker.exists()
    # ...and the payload was a real pickle that would have run on allow_pickle=True.
    with np.load(io.BytesIO(buf.getvalue()), allow_pickle=True) as npz:
        npz["landmarks"]
    assert marker.exists()


def test_foreign_and_newer_formats_are_refused(tmp_path, saved):
    foreign = tmp_path / "foreign.avatar"
    _rewrite(saved, foreign, {"avatar.json": json.dumps({"format": "something.else", "version": 1})})
    _assert_refused(foreign, "wrong format")
    newer = tmp_path / "newer.avatar"
    manifest = json.loads(zipfile.ZipFile(saved).read("avatar.json"))
    manifest["version"] = AVATAR_VERSION + 1
    _rewrite(saved, newer, {"avatar.json": json.dumps(manifest)})
    _assert_refused(newer, "newer than this app reads")


def test_members_outside_the_archive_and_bad_arrays_are_refused(tmp_path, saved):
    slip = tmp_path / "slip.avatar"
    _rewrite(saved, slip, {"../../evil.txt": b"x"})
    _assert_refused(slip, "outside the archive")
    buf = io.BytesIO()
    with np.load(io.BytesIO(zipfile.ZipFile(saved).read("arrays.npz"))) as npz:
        arrays = dict(npz)
    arrays["mesh_triangles"] = arrays["mesh_triangles"] + 10_000
    np.savez(buf, **arrays)
    bad = tmp_path / "bad_tris.avatar"
    _rewrite(saved, bad, {"arrays.npz": buf.getvalue()})
    _assert_refused(bad, "outside the mesh")
    missing = tmp_path / "missing.avatar"
    _rewrite(saved, missing, {"portrait.png": None})
    _assert_refused(missing, "portrait.png")


def test_saving_is_atomic_and_checks_the_folder(tmp_path, mona_avatar, monkeypatch):
    with pytest.raises(OutputPathError):
        save_avatar(mona_avatar, tmp_path / "no" / "such" / "folder" / "a.avatar")
    target = tmp_path / "a.avatar"

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(OutputPathError, match="No space left"):
        save_avatar(mona_avatar, target)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
