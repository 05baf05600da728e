"""Renderers: turn the portrait's target landmarks into an image. `mesh` needs no weights and is the default."""

from avatar_app.pipeline.render.backends import create_renderer
from avatar_app.pipeline.render.base import BACKENDS, Renderer, RenderSettings, output_size

__all__ = ["BACKENDS", "Renderer", "RenderSettings", "create_renderer", "output_size"]
