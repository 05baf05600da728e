"""A preview that paints the newest picture it was given, scaled to fit, with optional banner and HUD text."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget


def to_qimage(image_bgr: np.ndarray) -> QImage:
    """A QImage that owns a copy of a BGR uint8 picture (so the array may change afterwards)."""
    image = np.ascontiguousarray(image_bgr)
    h, w = image.shape[:2]
    return QImage(image.data, w, h, image.strides[0], QImage.Format.Format_BGR888).copy()


def to_pixmap(image_bgr: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(to_qimage(image_bgr))


def fit_lines(lines: list[str], metrics: QFontMetrics, width: float) -> list[str]:
    """``lines`` broken where they are wider than ``width`` pixels, so nothing is cut off at the view's edge: at
    the double spaces between the HUD's figures (else between words), a continuation indented; a single piece
    still too wide ends in an ellipsis."""
    out = []
    for line in lines:
        if metrics.horizontalAdvance(line) <= width:
            out.append(line)
            continue
        gap = "  " if "  " in line.strip() else " "
        pieces = [piece for piece in line.split(gap) if piece.strip()]
        current = pieces[0]
        for piece in pieces[1:]:
            joined = f"{current}{gap}{piece}"
            if metrics.horizontalAdvance(joined) <= width:
                current = joined
            else:
                out.append(current)
                current = f"  {piece.strip()}"
        out.append(current)
    return [metrics.elidedText(line, Qt.TextElideMode.ElideRight, int(width)) for line in out]


class FrameView(QWidget):
    """Paints one picture at a time (the newest wins: setting a picture replaces the last one, nothing
    queues). ``mirrored`` flips the picture only, never the text drawn over it."""

    def __init__(self, placeholder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 180)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._image: QImage | None = None
        self._array: np.ndarray | None = None
        self._placeholder = placeholder
        self._banner: str | None = None
        self._hud: list[str] = []
        self.mirrored = False

    def sizeHint(self) -> QSize:
        return QSize(480, 480)

    # -- what the window sets ----------------------------------------------------------------------------------
    def set_image(self, image_bgr: np.ndarray | None) -> None:
        self._array = image_bgr
        self._image = None if image_bgr is None else to_qimage(image_bgr)
        self.update()

    def image(self) -> np.ndarray | None:
        """The picture last set (as given, before mirroring)."""
        return self._array

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def placeholder(self) -> str:
        return self._placeholder

    def banner(self) -> str | None:
        return self._banner

    def set_banner(self, text: str | None) -> None:
        if text != self._banner:
            self._banner = text
            self.update()

    def set_mirrored(self, mirrored: bool) -> None:
        self.mirrored = mirrored
        self.update()

    def set_hud(self, lines: list[str]) -> None:
        self._hud = list(lines)
        self.update()

    def hud(self) -> list[str]:
        return list(self._hud)

    # -- painting ----------------------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 24, 28))
        if self._image is not None:
            iw, ih = self._image.width(), self._image.height()
            scale = min(self.width() / iw, self.height() / ih)
            w, h = iw * scale, ih * scale
            target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
            p.save()
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            if self.mirrored:
                p.translate(self.width(), 0)
                p.scale(-1, 1)
            p.drawImage(target, self._image)
            p.restore()
        elif self._placeholder:
            p.setPen(QColor(200, 200, 205))
            p.drawText(self.rect().adjusted(24, 24, -24, -24), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self._placeholder)
        if self._banner:
            self._draw_box(p, [self._banner], bottom=True)
        if self._hud:
            self._draw_box(p, self._hud, bottom=False)
        p.end()

    def _draw_box(self, p: QPainter, lines: list[str], bottom: bool) -> None:
        font = QFont(self.font())
        font.setStyleHint(QFont.StyleHint.Monospace if not bottom else QFont.StyleHint.SansSerif)
        if not bottom:
            font.setFamily("monospace")
        p.setFont(font)
        metrics = QFontMetrics(font)
        pad = 6
        lines = fit_lines(lines, metrics, self.width() - 4 * pad)  # the box's margin and the text's
        width = min(self.width() - 2 * pad, max(metrics.horizontalAdvance(line) for line in lines) + 2 * pad)
        height = metrics.height() * len(lines) + 2 * pad
        x = pad if not bottom else (self.width() - width) / 2
        y = pad if not bottom else self.height() - height - pad
        p.fillRect(QRectF(x, y, width, height), QColor(0, 0, 0, 170))
        p.setPen(QColor(255, 255, 255) if not bottom else QColor(255, 210, 120))
        for i, line in enumerate(lines):
            p.drawText(QRectF(x + pad, y + pad + i * metrics.height(), width - 2 * pad, metrics.height()),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, line)
