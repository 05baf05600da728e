"""What the app remembers between runs (QSettings): the avatar, the source, the preview and output choices."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from PySide6.QtCore import QSettings

from avatar_app.call.background import BACKGROUNDS

RENDER_SIZES = (256, 384, 512, 768, 1024)
CAMERA_SIZES = ("640x360", "640x480", "960x540", "1280x720", "1920x1080")
FRAME_RATES = (15, 24, 25, 30, 60)
FRAMING_CHOICES = (("Follow the head", "follow"), ("Fill", "fill"), ("Fit (bars)", "fit"))
MOUTH_CHOICES = (("Mouth: mine", "mine"), ("Mouth: neural", "neural"), ("Mouth: painted", "painted"))


@dataclass
class AppSettings:
    """``avatar``: path of the chosen portrait or avatar file. ``source``: a camera index or a video file.
    ``size``: the avatar's longer side in pixels. ``renderer``: "mesh", or "neural:<model folder>".
    ``camera_size`` / ``fps``: what the virtual camera sends (``fps`` also paces recordings).
    ``framing``: how the avatar fills the call's picture (follow, fill or fit; call/framing.py).
    ``background`` (keep, blur or colour) and ``background_colour`` ("#rrggbb"): what shows behind the avatar.
    ``pose_strength`` / ``expression_strength`` (0-2), ``follow_eyes`` / ``follow_mouth`` / ``follow_gaze``,
    ``smoothing`` (0-1): how the avatar follows (ui/panels/controls.py).
    ``mouth``: where the inside of an opened mouth comes from (mine, neural or painted).
    ``microphone``: the sound of recordings from a camera or the demo: "" the default input, "off", or a device.
    ``overlay`` / ``hud``: whether they were showing."""

    avatar: str = ""
    source: str = ""
    mirror: bool = True
    size: int = 512
    camera_size: str = "1280x720"
    fps: int = 30
    framing: str = "follow"
    recordings: str = ""  # the folder recordings go to ("": the Videos folder's avatar_app)
    microphone: str = ""  # "": the default input; "off"; else a device's name (pipeline/microphone.py)
    background: str = "keep"
    background_colour: str = "#00b140"
    pose_strength: float = 1.0
    expression_strength: float = 1.0
    follow_eyes: bool = True
    follow_mouth: bool = True
    follow_gaze: bool = True
    smoothing: float = 0.5
    renderer: str = "mesh"
    mouth: str = "mine"  # the inside of an opened mouth: mine, neural or painted (render/mouth_sources.py)
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
        if out.framing not in {value for _, value in FRAMING_CHOICES}:
            out.framing = cls.framing
        if out.mouth not in {value for _, value in MOUTH_CHOICES}:
            out.mouth = cls.mouth
        if out.background not in BACKGROUNDS:
            out.background = cls.background
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", out.background_colour):
            out.background_colour = cls.background_colour
        for name, top in (("pose_strength", 2.0), ("expression_strength", 2.0), ("smoothing", 1.0)):
            if not 0.0 <= getattr(out, name) <= top:  # a hand-edited file
                setattr(out, name, getattr(cls, name))
        return out

    def save(self, store: QSettings) -> None:
        for f in fields(self):
            store.setValue(f.name, getattr(self, f.name))
        store.sync()

    @property
    def camera_width_height(self) -> tuple[int, int]:
        w, h = self.camera_size.split("x")
        return int(w), int(h)
