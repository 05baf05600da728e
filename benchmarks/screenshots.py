"""Screenshots of the real window (run it under a display, e.g. `xvfb-run -a -s "-screen 0 1500x900x24"`).

It starts on the demo face with the chosen portrait and saves, under --out: 1_calibrating.png (the countdown
with the alignment overlay), 2_calibrated_follow_hud.png (calibrated, "Follow the head", HUD on), 3_fit.png
("Fit (bars)") and 4_green_follow.png (green screen behind the avatar, following the head). Each line it prints
says what the window showed at that moment (banner, status bar, frames shown, whether it is calibrated).

    xvfb-run -a -s "-screen 0 1500x900x24" python benchmarks/screenshots.py --out shots/
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--portrait", type=Path, default=ROOT / "assets" / "portraits" / "mona_lisa.jpg")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtCore import QSettings
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from avatar_app.ui.main_window import MainWindow, StartOptions

    app = QApplication(sys.argv)
    print("platform:", QGuiApplication.platformName())
    with tempfile.TemporaryDirectory() as scratch:  # fresh settings: what a first run looks like
        store = QSettings(str(Path(scratch) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(store=store, data_dir=Path(scratch) / "data", recordings_dir=Path(scratch) / "rec",
                            options=StartOptions(source="demo", avatar=args.portrait))
        window.resize(1500, 900)
        window.show()

        def pump(seconds: float, until=lambda: False) -> None:
            end = time.time() + seconds
            while time.time() < end and not until():
                app.processEvents()
                time.sleep(0.01)

        def calibrated() -> bool:
            stages = window.pipeline.stages
            return stages is not None and stages.animator.retargeter.reference is not None

        def shot(name: str) -> None:
            QGuiApplication.primaryScreen().grabWindow(0).save(str(args.out / f"{name}.png"))
            print(f"{name}: banner={window.camera_view.banner()!r} status={window.statusBar().currentMessage()!r}"
                  f" frames={window.frames_shown} calibrated={calibrated()}")

        pump(20, lambda: "taking your pose in" in (window.camera_view.banner() or ""))
        shot("1_calibrating")
        pump(10, calibrated)
        pump(3)
        window.hud.action.setChecked(True)
        pump(1.5)
        shot("2_calibrated_follow_hud")
        framing = window.outputs.framing_combo
        framing.setCurrentIndex(framing.findData("fit"))
        pump(2)
        shot("3_fit")
        background = window.background.background_combo
        background.setCurrentIndex(background.findData("green"))
        background.activated.emit(background.findData("green"))
        framing.setCurrentIndex(framing.findData("follow"))
        pump(3)
        shot("4_green_follow")
        window.close()
        app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
