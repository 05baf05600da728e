"""The desktop app (PySide6): gallery, live previews, calibration, alignment overlay, virtual camera, recording.

The only package that imports Qt. This file itself imports nothing, so the CLI can register the `gui` command
on a machine without PySide6 and say in one line what to install.
"""
