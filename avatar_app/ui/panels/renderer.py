"""The renderer, size and mouth pickers: which renderer draws the avatar (the mesh, or a neural model shipped with
the app or put in the user's data folder), how large, and where an opened mouth's inside comes from; a choice that
cannot run falls back to the last that did."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from avatar_app.pipeline.avatar import Avatar
from avatar_app.pipeline.render.base import BACKENDS, RenderSettings
from avatar_app.pipeline.render.neural import is_mouth_model, shipped_models_dir
from avatar_app.ui.panels.toolbar import combo, select_quietly
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.settings import MOUTH_CHOICES, RENDER_SIZES, AppSettings


def model_folders(data_dir: Path) -> list[Path]:
    """Where the picker looks for neural models: the shipped ones (package data, so in a wheel too) and the
    user's own, one folder each under the data folder's models/ (e.g. what `avatar-app export` made)."""
    return [shipped_models_dir(), Path(data_dir) / "models"]


def renderer_choices(model_dirs: list[Path]) -> list[tuple[str, str | None]]:
    """(label, setting) for each renderer that can run: the mesh always, the neural one once per exported
    model folder found in ``model_dirs`` (a folder with a manifest.json); setting None: listed, not usable."""
    out: list[tuple[str, str | None]] = []
    for backend in BACKENDS:
        if backend != "neural":
            out.append((backend, backend))
            continue
        found = {m.parent.resolve(): m.parent for d in model_dirs if d.is_dir() for m in d.glob("*/manifest.json")
                 if not m.parent.name.startswith(".") and not is_mouth_model(m.parent)}  # hidden: an export's temp or old folder
        models = sorted(found.values(), key=lambda m: (m.name, str(m)))
        out += [(f"neural: {m.name}", f"neural:{m}") for m in models]
        if not models:
            out.append(("neural (no exported model)", None))
    return out


class RendererPicker(QObject):
    """``renderer_combo`` and ``size_combo``, bound to ``settings.renderer`` and ``settings.size``.

    ``changed``: the user chose another renderer or size; ``restored``: a choice could not be prepared, so the
    last one that worked is chosen again (the pipeline should switch back to it); ``status(text, ms)``,
    ``message(title, text, details, technical)`` and ``settings_changed`` as in the other panels.
    """

    changed = Signal()
    restored = Signal()
    status = Signal(str, int)
    message = Signal(str, str, object, object)
    settings_changed = Signal()

    def __init__(self, settings: AppSettings, pipeline: LivePipeline, data_dir: Path, parent: QObject | None = None):
        super().__init__(parent)
        self.settings = settings
        models = Path(data_dir) / "models"
        self.renderer_combo = combo([], tip="mesh: warps the portrait, no model needed. neural: a model shipped with "
                                            f"the app, or an exported one copied to {models}/NAME")
        for label, value in renderer_choices(model_folders(data_dir)):
            self.renderer_combo.addItem(label, value)
            if value is None:  # listed so the user knows it exists, but there is nothing to run it with
                self.renderer_combo.model().item(self.renderer_combo.count() - 1).setEnabled(False)
        if self.renderer_combo.findData(settings.renderer) < 0:
            settings.renderer = "mesh"
        select_quietly(self.renderer_combo, settings.renderer)
        self.size_combo = combo([(f"{size} px", size) for size in sorted(set(RENDER_SIZES) | {settings.size})],
                                settings.size, "The avatar's longer side in pixels: smaller is faster")
        self.mouth_combo = combo(MOUTH_CHOICES, settings.mouth,
                                 "The inside of an opened mouth. Mine: your own mouth from the camera, in the "
                                 "portrait's colours. Neural: drawn by the mouth model. Painted: shaded from the "
                                 "portrait's palette (also what shows while no face is seen)")
        self._worked = (settings.renderer, settings.size, settings.mouth)  # what to fall back to when a choice fails

        self.renderer_combo.currentIndexChanged.connect(self._chosen)
        self.size_combo.currentIndexChanged.connect(self._chosen)
        self.mouth_combo.currentIndexChanged.connect(self._chosen)
        pipeline.started.connect(self._remember)
        pipeline.avatar_switched.connect(self._switched)
        pipeline.avatar_failed.connect(self._failed)

    def render_settings(self) -> RenderSettings:
        backend, _, model = self.settings.renderer.partition(":")
        # live_fps: the rate the virtual camera sends; a renderer that cannot hold it lowers its own (neural)
        return RenderSettings(size=self.settings.size, backend=backend, model=model or None, mouth=self.settings.mouth,
                              live_fps=float(self.settings.fps))

    def label(self) -> str:
        """The renderer in the user's words, as the picker shows it."""
        return self.renderer_combo.currentText() or self.settings.renderer

    def _chosen(self) -> None:
        self.settings.renderer = self.renderer_combo.currentData()
        self.settings.size = int(self.size_combo.currentData())
        self.settings.mouth = self.mouth_combo.currentData()
        self.settings_changed.emit()
        self.changed.emit()

    def _remember(self, *_) -> None:
        self._worked = (self.settings.renderer, self.settings.size, self.settings.mouth)

    def _switched(self, avatar: Avatar) -> None:
        self._remember()
        self.status.emit(f"Animating {avatar.name} - it follows your pose from now on (press C to calibrate again)",
                         6000)

    def _failed(self, text: str) -> None:
        """A renderer, size or avatar could not be prepared: say why and go back to what worked."""
        self.message.emit("Not changed", text, None, None)
        renderer, size, mouth = self._worked
        if (self.settings.renderer, self.settings.size, self.settings.mouth) != (renderer, size, mouth):
            select_quietly(self.renderer_combo, renderer)
            select_quietly(self.size_combo, size)
            select_quietly(self.mouth_combo, mouth)
            self.settings.renderer, self.settings.size, self.settings.mouth = renderer, size, mouth
            self.settings_changed.emit()
            self.restored.emit()
