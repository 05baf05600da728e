"""The avatar gallery's contents: the shipped paintings plus the user's own avatars in their data folder.

A picture the user adds becomes an `.avatar` file in that folder (its face found once, the mesh precomputed),
so it is there on the next run and loads without detection. Everything slow here runs off the GUI thread.
"""

from __future__ import annotations

import shutil
import threading
import zipfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np

from avatar_app.atomic import unused_path
from avatar_app.pipeline.avatar import (
    AVATAR_SUFFIX,
    Avatar,
    create_avatar,
    is_avatar_file,
    load_avatar,
    load_portrait_or_avatar,
    save_avatar,
)
from avatar_app.images import load_image

SHIPPED_PORTRAITS = Path(str(files("avatar_app.assets") / "portraits"))  # package data, in a wheel too
SHIPPED, MINE, FILE = "shipped", "mine", "file"


@dataclass(frozen=True)
class GalleryEntry:
    """One picture in the gallery. ``kind``: shipped with the app, the user's own (in the data folder),
    or a file elsewhere that was opened from the command line."""

    name: str
    path: Path
    kind: str

    @property
    def key(self) -> str:
        """What the settings remember."""
        return str(self.path)

    @property
    def removable(self) -> bool:
        return self.kind == MINE


class AvatarLibrary:
    def __init__(self, data_dir: Path, shipped_dir: Path = SHIPPED_PORTRAITS):
        self.folder = Path(data_dir) / "avatars"
        self.shipped_dir = Path(shipped_dir)
        self._cache: dict[tuple[str, float], Avatar] = {}
        self._lock = threading.Lock()

    def entries(self, extra: list[str | Path] = ()) -> list[GalleryEntry]:
        """Shipped portraits, then the user's avatars (oldest first), then ``extra`` files not among them."""
        out = [GalleryEntry(_title(p), p, SHIPPED) for p in sorted(self.shipped_dir.glob("*.jpg"))]
        if self.folder.is_dir():
            # Hidden names are a killed write's temp files (".me.1a2b3c4d.partial.avatar"), never avatars.
            found = (p for p in self.folder.glob(f"*{AVATAR_SUFFIX}") if not p.name.startswith("."))
            mine = sorted(found, key=lambda p: (p.stat().st_mtime, p.name))
            out += [GalleryEntry(_title(p), p, MINE) for p in mine]
        known = {e.path.resolve() for e in out}
        for path in extra:
            path = Path(path)
            if path.is_file() and path.resolve() not in known:
                out.append(GalleryEntry(_title(path), path, FILE))
                known.add(path.resolve())
        return out

    def add(self, path: str | Path) -> GalleryEntry:
        """Make ``path`` (an image with a face, or an .avatar file) one of the user's avatars.

        Slow (face detection); raises a one-line AvatarAppError for a file that is not an image, has no face,
        or cannot be saved.
        """
        path = Path(path)
        self.folder.mkdir(parents=True, exist_ok=True)
        target = _free_name(self.folder, path.stem)
        if is_avatar_file(path):
            load_avatar(path)  # refuse a broken or foreign file before it enters the gallery
            shutil.copyfile(path, target)
        else:
            avatar = create_avatar(load_image(path), name=path.stem)  # the name is in a no-face message
            avatar.name = _title(path)
            save_avatar(avatar, target)
        return GalleryEntry(_title(target), target, MINE)

    def remove(self, entry: GalleryEntry) -> None:
        if entry.kind != MINE:
            raise ValueError(f"{entry.path}: only your own avatars can be removed")
        entry.path.unlink(missing_ok=True)

    def load(self, entry: GalleryEntry) -> Avatar:
        """The avatar, ready to animate (slow the first time for a plain picture: the face is found)."""
        key = (str(entry.path), entry.path.stat().st_mtime if entry.path.exists() else 0.0)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        avatar = load_portrait_or_avatar(entry.path)
        avatar.name = entry.name
        with self._lock:
            self._cache[key] = avatar
        return avatar


def thumbnail(path: Path, size: int = 96) -> np.ndarray | None:
    """A small BGR picture of the portrait (from inside an .avatar file too); None if unreadable."""
    try:
        if is_avatar_file(path):
            with zipfile.ZipFile(path) as zf:
                data = zf.read("portrait.png")
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        else:
            image = load_image(path)
    except Exception:  # noqa: BLE001 - a thumbnail is decoration; the load reports what is wrong
        return None
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = size / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _title(path: Path) -> str:
    """'girl_with_a_pearl_earring.jpg' -> 'Girl with a Pearl Earring'."""
    words = path.stem.replace("_", " ").replace("-", " ").split()
    small = {"a", "an", "and", "at", "by", "for", "in", "of", "on", "the", "to", "with"}
    titled = [w if (w.lower() in small and i) or not w.islower() else w.capitalize() for i, w in enumerate(words)]
    return " ".join(titled) or path.name


def _free_name(folder: Path, stem: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_ " else "_" for c in stem).strip() or "avatar"
    return unused_path(folder, safe, AVATAR_SUFFIX)

