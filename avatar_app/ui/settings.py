"""What the app remembers between runs (QSettings): the avatar, the source, the preview and output choices."""

from __future__ import annotations

from dataclasses import dataclass, fields

from PySide6.QtCore import QSettings

RENDER_SIZES = (256, 384, 512, 768, 1024)
CAMERA_SIZES = ("640x360", "640x480", "960x540", "1280x720", "1920x1080")
FRAME_RATES = (15, 24, 25, 30, 60)


@dataclass
class AppSettings:
    """``avatar``: path of the chosen portrait or avatar file. ``source``: a camera index or a video file.
    ``size``: the avatar's longer side in pixels. ``renderer``: "mesh", or "neural:<model folder>".
    ``camera_size`` / ``fps``: what the virtual camera sends (``fps`` also paces recordings).
    ``overlay`` / ``hud``: whether they were showing."""

    avatar: str = ""
    source: str = ""
    mirror: bool = True
    size: int = 512
    camera_size: str = "1280x720"
    fps: int = 30
    renderer: str = "mesh"
    overlay: bool = False
    hud: bool = False

    @classmethod
    def load(cls, store: QSettings) -> AppSettings:
        out = cls()
        for f in fields(cls):
            default = getattr(out, f.name)
            try:
                value = store.value(f.name, default, type=type(default))
            except (TypeError, ValueError):  # a hand-edited file with junk in it: keep the default
                value = default
            setattr(out, f.name, value)
        if out.size not in RENDER_SIZES and not 32 <= out.size <= 4096:
            out.size = cls.size
        if out.camera_size not in CAMERA_SIZES:
            out.camera_size = cls.camera_size
        if out.fps not in FRAME_RATES:
            out.fps = cls.fps
        return out

    def save(self, store: QSettings) -> None:
        for f in fields(self):
            store.setValue(f.name, getattr(self, f.name))
        store.sync()

    @property
    def camera_width_height(self) -> tuple[int, int]:
        w, h = self.camera_size.split("x")
        return int(w), int(h)
