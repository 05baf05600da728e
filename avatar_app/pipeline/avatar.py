"""Avatars: a portrait with its landmarks and what the renderers precompute, and the `.avatar` file that holds them.

An `.avatar` file is a zip archive (no pickle anywhere) with three members:
  avatar.json   format name, version, the avatar's name, image size, faces found, app version
  portrait.png  the portrait, lossless
  arrays.npz    landmarks (478 x 3 float32, portrait pixels; z on x's scale), mesh_points (V x 2 float32),
                mesh_triangles (T x 3 int32), mesh_follow (V float32), mesh_anchor (V int32),
                mesh_groups (T uint8); with a neural model also neural_embedding (ê) and neural_psi (ψ),
                and avatar.json names the model's id ("model": {"id": ...})
Readers refuse other format names, newer versions, members outside the archive's root, oversized members and
arrays of the wrong shape, each with one line that names the file.
"""

from __future__ import annotations

import io
import json
import math
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avatar_app import __version__
from avatar_app.atomic import atomic_path
from avatar_app.errors import InputFileError, OutputPathError, first_line
from avatar_app.images import MAX_IMAGE_PIXELS, load_image
from avatar_app.face.landmarks import N_POINTS
from avatar_app.face.mesh_layout import MeshLayout, build_mesh
from avatar_app.model.format import NeuralIdentity

AVATAR_FORMAT = "avatar_app.avatar"
AVATAR_VERSION = 1
AVATAR_SUFFIX = ".avatar"
_MEMBERS = ("avatar.json", "portrait.png", "arrays.npz")
_MAX_MEMBER_BYTES = 256 * 1024 * 1024
_MAX_MESH_POINTS = 100_000
_ARRAYS = ("landmarks", "mesh_points", "mesh_triangles", "mesh_follow", "mesh_anchor", "mesh_groups")
_NEURAL_ARRAYS = ("neural_embedding", "neural_psi")
# What a damaged zip archive can raise while it is read (zipfile reports bad offsets and fields in many ways).
_ZIP_ERRORS = (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, OverflowError, struct.error,
               zipfile.BadZipFile, zipfile.LargeZipFile)


@dataclass
class Avatar:
    """A portrait ready to animate."""

    name: str
    image: np.ndarray  # H x W x 3 uint8 BGR
    landmarks: np.ndarray  # 478 x 3 float32, portrait pixels
    mesh: MeshLayout
    faces_found: int = 1
    neural: NeuralIdentity | None = None  # ê and ψ for one exported model (made on first use with it)
    file: Path | None = None  # the .avatar file it was read from (where a new ê and ψ are kept)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


def create_avatar(image: np.ndarray, name: str) -> Avatar:
    """Find the face (the largest, with a warning when there are several) and precompute the mesh."""
    from avatar_app.pipeline.tracker import detect_portrait

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        face = detect_portrait(image, name=name)
    for w in caught:
        warnings.warn(str(w.message), stacklevel=2)
    h, w = image.shape[:2]
    points = face.points.astype(np.float32)
    return Avatar(name=name, image=image, landmarks=points, mesh=build_mesh(points, (w, h)), faces_found=face.faces_found)


def keep_identity(avatar: Avatar) -> Path | None:
    """Write an avatar's new ê and ψ back into the .avatar file it came from (None: it came from a picture,
    whose identity lives for this run only). A file that cannot be written costs only the recomputation next
    time, so that is a warning, not an error."""
    if avatar.file is None:
        return None
    try:
        return save_avatar(avatar, avatar.file)
    except OutputPathError as err:
        warnings.warn(f"{err} - its neural identity is made again next time", stacklevel=2)
        return None


def is_avatar_file(path: str | Path) -> bool:
    path = Path(path)
    if path.suffix.lower() == AVATAR_SUFFIX:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def load_portrait_or_avatar(path: str | Path) -> Avatar:
    """Everything that takes a portrait also takes an avatar file."""
    path = Path(path)
    if is_avatar_file(path):
        return load_avatar(path)
    return create_avatar(load_image(path), name=path.stem)


def save_avatar(avatar: Avatar, path: str | Path) -> Path:
    """Write an `.avatar` file atomically (a temp file renamed into place)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder - give a file name such as {path / 'me.avatar'}")
    ok, png = cv2.imencode(".png", avatar.image)
    if not ok:
        raise OutputPathError(f"{path}: could not encode the portrait as PNG")
    arrays = io.BytesIO()
    neural = {}
    if avatar.neural is not None:
        neural = {"neural_embedding": avatar.neural.embedding.astype(np.float32), "neural_psi": avatar.neural.psi.astype(np.float32)}
    np.savez(
        arrays,
        **neural,
        landmarks=avatar.landmarks.astype(np.float32),
        mesh_points=avatar.mesh.points.astype(np.float32),
        mesh_triangles=avatar.mesh.triangles.astype(np.int32),
        mesh_follow=avatar.mesh.follow.astype(np.float32),
        mesh_anchor=avatar.mesh.anchor.astype(np.int32),
        mesh_groups=avatar.mesh.groups.astype(np.uint8),
    )
    h, w = avatar.image.shape[:2]
    manifest = {
        "format": AVATAR_FORMAT,
        "version": AVATAR_VERSION,
        "name": avatar.name,
        "image": {"width": w, "height": h},
        "faces_found": avatar.faces_found,
        "landmarks": "mediapipe-face-mesh-478",
        "app_version": __version__,
    }
    if avatar.neural is not None:
        manifest["model"] = {"id": avatar.neural.model_id}
    try:
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr("avatar.json", json.dumps(manifest, indent=2))
                zf.writestr("portrait.png", png.tobytes())
                zf.writestr("arrays.npz", arrays.getvalue())
    except OSError as err:
        raise OutputPathError(f"{path}: cannot write ({err.strerror or err}) - choose a folder you can write to") from None
    return path


def load_avatar(path: str | Path) -> Avatar:
    """Read an `.avatar` file; anything wrong with it is one InputFileError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such avatar file - check the path")

    def bad(why: str) -> InputFileError:
        return InputFileError(f"{path}: not a usable avatar file ({why}) - create it again with 'avatar-app avatar create'")

    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            for name in infos:
                if name.startswith("/") or ".." in Path(name).parts or "\\" in name:
                    raise bad(f"member {name!r} points outside the archive")
            for name in _MEMBERS:
                if name not in infos:
                    raise bad(f"'{name}' missing")
                if infos[name].file_size > _MAX_MEMBER_BYTES:
                    raise bad(f"'{name}' is too large")
            manifest_bytes = zf.read("avatar.json")
            png = zf.read("portrait.png")
            arrays_bytes = zf.read("arrays.npz")
    except InputFileError:
        raise
    except zipfile.BadZipFile as err:
        raise bad(f"not a zip archive, or a damaged one: {first_line(err)}") from None
    except _ZIP_ERRORS as err:
        raise bad(first_line(err)) from None
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise bad("avatar.json is not valid JSON") from None

    if not isinstance(manifest, dict) or manifest.get("format") != AVATAR_FORMAT:
        raise bad("wrong format name")
    version = manifest.get("version")
    if not isinstance(version, int) or version < 1:
        raise bad("no format version")
    if version > AVATAR_VERSION:
        raise InputFileError(f"{path}: avatar format version {version} is newer than this app reads ({AVATAR_VERSION}) - update avatar_app")

    image = _decode_png(png, bad)
    found = _read_arrays(arrays_bytes, bad)
    missing = [k for k in _ARRAYS if k not in found]
    if missing:
        raise bad(f"arrays.npz: array '{missing[0]}' missing")
    arrays = {k: found[k] for k in _ARRAYS}
    extra = {k: found[k] for k in _NEURAL_ARRAYS if k in found}

    lm, pts, tris = arrays["landmarks"], arrays["mesh_points"], arrays["mesh_triangles"]
    follow, anchor, groups = arrays["mesh_follow"], arrays["mesh_anchor"], arrays["mesh_groups"]
    if lm.shape != (N_POINTS, 3) or lm.dtype.kind != "f" or not np.isfinite(lm).all():
        raise bad(f"landmarks must be {N_POINTS} x 3 finite floats")
    if pts.ndim != 2 or pts.shape[1] != 2 or not N_POINTS <= len(pts) <= _MAX_MESH_POINTS or pts.dtype.kind != "f":
        raise bad("mesh points malformed")
    if not np.isfinite(pts).all() or follow.shape != (len(pts),) or follow.dtype.kind != "f" or not np.isfinite(follow).all():
        raise bad("mesh points malformed")
    if tris.ndim != 2 or tris.shape[1] != 3 or tris.dtype.kind not in "iu" or tris.size == 0:
        raise bad("mesh triangles malformed")
    if tris.min() < 0 or tris.max() >= len(pts):
        raise bad("mesh triangles point outside the mesh")
    if anchor.shape != (len(pts),) or anchor.dtype.kind != "i" or anchor.min() < -1 or anchor.max() >= N_POINTS:
        raise bad("mesh anchors malformed")
    if groups.shape != (len(tris),) or groups.dtype.kind != "u" or groups.max() > 3:
        raise bad("mesh groups malformed")
    h, w = image.shape[:2]
    if manifest.get("image") != {"width": w, "height": h}:
        raise bad("image size does not match its manifest")
    neural = None
    model = manifest.get("model")
    if model is not None or extra:
        e, psi = extra.get("neural_embedding"), extra.get("neural_psi")
        if not isinstance(model, dict) or not isinstance(model.get("id"), str) or e is None or psi is None:
            raise bad("its neural part is incomplete")
        if e.ndim != 1 or psi.ndim != 1 or e.dtype.kind != "f" or psi.dtype.kind != "f" or not (np.isfinite(e).all() and np.isfinite(psi).all()):
            raise bad("its neural arrays are malformed")
        neural = NeuralIdentity(model["id"], e.astype(np.float32), psi.astype(np.float32))
    name = manifest.get("name")
    mesh = MeshLayout(
        points=pts.astype(np.float32),
        triangles=tris.astype(np.int32),
        follow=follow.astype(np.float32),
        anchor=anchor.astype(np.int32),
        groups=groups.astype(np.uint8),
    )
    return Avatar(
        name=name if isinstance(name, str) and name else path.stem,
        image=image,
        landmarks=lm.astype(np.float32),
        mesh=mesh,
        faces_found=int(manifest.get("faces_found", 1)) if isinstance(manifest.get("faces_found", 1), int) else 1,
        neural=neural,
        file=path,
    )


def _read_arrays(data: bytes, bad) -> dict[str, np.ndarray]:
    """The known arrays of arrays.npz. Each .npy header is checked before its array is allocated: np.load would
    allocate whatever size a header claims (a few bytes can claim terabytes), and never unpickles anything."""
    fmt = np.lib.format
    out = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                key = info.filename.removesuffix(".npy")
                if key not in _ARRAYS + _NEURAL_ARRAYS or not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as f:
                    version = fmt.read_magic(f)
                    if version not in ((1, 0), (2, 0)):
                        raise bad(f"arrays.npz: array '{key}' has .npy version {version}")
                    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read_header(f)
                if dtype.hasobject:
                    raise bad(f"arrays.npz: array '{key}' holds Python objects, which are never loaded")
                size = math.prod(shape) * dtype.itemsize
                if size < 0 or size > min(info.file_size, _MAX_MEMBER_BYTES):
                    raise bad(f"arrays.npz: array '{key}' claims {'x'.join(map(str, shape))} values, more than it holds")
                with zf.open(info) as f:
                    out[key] = fmt.read_array(f, allow_pickle=False)
    except InputFileError:
        raise
    except _ZIP_ERRORS as err:
        raise bad(f"arrays.npz unreadable: {first_line(err)}") from None
    return out


def _decode_png(data: bytes, bad) -> np.ndarray:
    """Decode the stored portrait, refusing PNGs that claim more pixels than any portrait needs."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n":
        raise bad("portrait.png is not a PNG")
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if w * h > MAX_IMAGE_PIXELS or w == 0 or h == 0:
        raise bad(f"portrait.png claims {w}x{h} pixels")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[:2] != (h, w):
        raise bad("portrait.png is damaged")
    return image
