"""What an evaluation is asked to do: the T values, the rows (methods), the crop size and the frames to score."""

from __future__ import annotations

from dataclasses import dataclass

from avatar_app.errors import AvatarAppError

BACKENDS = ("mesh", "neural")
STATIC = "static"  # the do-nothing row: the output is the source frame itself
FINETUNED = "neural-ft"  # the neural row after the paper's few-shot fine-tuning on the T frames


class BackendNotAvailable(AvatarAppError):
    """A renderer that exists in the paper's design but not (yet) in this version."""


@dataclass(frozen=True)
class EvaluationSettings:
    """shots: the T values (first T frames make the avatar); frames: driven frames per video; size: crop side;
    mediapipe: also measure landmark error with MediaPipe (the tracker the renderer uses), a second column."""

    shots: tuple[int, ...] = (1, 8, 32)
    backend: str = "mesh"
    size: int = 256
    frames: int = 32
    model: str | None = None  # the neural backend's model folder
    mediapipe: bool = True
    finetune_steps: int = 0  # > 0: also a neural-ft row, fine-tuned on the T frames from `checkpoint`
    checkpoint: str | None = None  # the model's training checkpoint (fine-tuning needs the full networks)

    def __post_init__(self) -> None:
        shots = tuple(sorted({int(t) for t in self.shots}))
        if not shots or shots[0] < 1:
            raise ValueError(f"shots must be one or more frame counts of at least 1, got {list(self.shots)}")
        object.__setattr__(self, "shots", shots)
        if self.backend not in BACKENDS:
            raise BackendNotAvailable(f"backend '{self.backend}' is not available - choose one of: {', '.join(BACKENDS)}")
        if self.backend == "neural" and not self.model:
            raise BackendNotAvailable("the neural backend needs its model folder - pass --model export/NAME")
        if not 32 <= self.size <= 4096:
            raise ValueError(f"size must be between 32 and 4096 pixels, got {self.size}")
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1, got {self.frames}")
        if self.finetune_steps and (self.backend != "neural" or not self.checkpoint):
            raise BackendNotAvailable("fine-tuned rows need --backend neural and the model's --checkpoint (.pt)")

    @property
    def methods(self) -> tuple[str, ...]:
        """The rows: the static baseline, the mesh renderer, and the backend under test when it is not mesh."""
        if self.backend == "mesh":
            return (STATIC, "mesh")
        return (STATIC, "mesh", self.backend) + ((FINETUNED,) if self.finetune_steps else ())


