"""Which renderer a RenderSettings names: the one place that knows every backend (each imported only when chosen,
so the mesh renderer runs without onnxruntime and the neural one without numba's compile)."""

from __future__ import annotations

from avatar_app.errors import AvatarAppError
from avatar_app.pipeline.render.base import BACKENDS, Renderer, RenderSettings


def create_renderer(settings: RenderSettings | str = "mesh") -> Renderer:
    """The renderer for these settings (or a backend name); an unknown name is a user error naming the others."""
    if isinstance(settings, str):
        settings = RenderSettings(backend=settings)
    if settings.backend == "mesh":
        from avatar_app.pipeline.render.mesh import MeshRenderer

        return MeshRenderer()
    if settings.backend == "neural":
        from avatar_app.pipeline.render.neural import NeuralRenderer, default_model

        model = settings.model or default_model()
        return NeuralRenderer(model, settings.runtime, settings.provider, settings.trust_code)
    raise AvatarAppError(f"renderer '{settings.backend}' is not available - choose one of: {', '.join(BACKENDS)}")
