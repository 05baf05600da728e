"""Network sizes in one place: the paper's configuration and a small one that runs in real time on a CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


# Bounds on every size: far above both configurations below, low enough that no configuration asks for more
# memory than a training machine has (the widest allowed networks hold well under 2 G parameters).
_LIMITS = {
    "image_size": (16, 1024), "embed_dim": (1, 1024), "base_channels": (1, 512), "max_channels": (1, 1024),
    "encoder_blocks": (1, 10), "encoder_attention": (0, 1024), "gen_stem_stride": (1, 4), "gen_middle_blocks": (0, 8),
    "landmark_thickness": (1, 32),
}
CONDITIONINGS = ("landmarks", "warp", "mouth")
_LIST_LIMITS = {"gen_channels": (1, 1024, 6), "gen_attention_down": (1, 1024, 4), "gen_attention_up": (1, 1024, 4)}


def _whole(value, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


@dataclass(frozen=True)
class ModelConfig:
    name: str
    image_size: int = 256
    embed_dim: int = 512
    # Embedder and discriminator: residual downsampling blocks, channels doubling from base to max.
    base_channels: int = 64
    max_channels: int = 512
    encoder_blocks: int = 6
    encoder_attention: int = 32  # resolution of the self-attention layer (0: none)
    # Generator: an optional strided stem, downsampling blocks (instance norm), AdaIN residual blocks at the
    # bottleneck, upsampling AdaIN blocks back to image_size.
    gen_channels: tuple[int, ...] = (64, 128, 256, 512)  # after the stem, then after each down block
    gen_stem_stride: int = 1
    gen_middle_blocks: int = 4
    gen_attention_down: tuple[int, ...] = (32,)
    gen_attention_up: tuple[int, ...] = (64,)
    landmark_thickness: int = 2  # polyline width at image_size
    # What G is drawn from: "landmarks" (the paper's: the landmark image alone), "warp" (the app's own mesh
    # warp of the portrait plus the landmark image; G predicts a correction and a blend mask) or "mouth" (the
    # mouth crop: G draws it from the lip landmark image and a degraded driver mouth, model/mouth_generator.py).
    conditioning: str = "landmarks"

    def __post_init__(self) -> None:
        # Sizes come from files too (checkpoints, --config JSON): checked here, before any network is allocated.
        if not isinstance(self.name, str):
            raise ValueError(f"name must be text, got {self.name!r}"[:160])
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {self.conditioning!r}"[:160])
        for name, (lo, hi) in _LIMITS.items():
            value = getattr(self, name)
            if not _whole(value, lo, hi):
                raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}"[:160])
        for name, (lo, hi, most) in _LIST_LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) > most or not all(_whole(v, lo, hi) for v in value):
                raise ValueError(f"{name} must be a list of at most {most} whole numbers from {lo} to {hi}, got {value!r}"[:160])
        if not self.gen_channels:
            raise ValueError("gen_channels must list at least one width")
        if self.image_size % (self.gen_stem_stride * 2 ** (len(self.gen_channels) - 1)):
            raise ValueError("image_size must be divisible by the generator's total downsampling")
        if self.image_size >> self.encoder_blocks < 1:
            raise ValueError("too many encoder blocks for this image size")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        if not isinstance(data, dict):
            raise ValueError("model settings must be a JSON object of ModelConfig fields")
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


CONFIGS = {
    # The paper's sizes: 256², 64 base channels up to 512, attention at 32² (down) and 64² (up).
    "paper": ModelConfig(name="paper"),
    # Warp-conditioned, small enough to train on a 2-core CPU and to run inside a frame there: G is a 128² U-Net
    # (~1.5 GFLOP, avatar_app/model/warp_generator.py) that corrects the mesh renderer's warp; E and D are the
    # paper's trunk at a quarter of its widths, with attention at 16².
    "realtime": ModelConfig(
        name="realtime",
        image_size=128,
        embed_dim=256,
        base_channels=16,
        max_channels=128,
        encoder_blocks=5,
        encoder_attention=16,
        gen_channels=(16, 32, 64, 128),
        gen_middle_blocks=1,
        gen_attention_down=(),
        gen_attention_up=(),
        landmark_thickness=1,
        conditioning="warp",
    ),
    # The inside of the mouth at a 64² mouth crop (face/crop.py mouth_affine): G is a U-Net (~0.4 GFLOP, ~3 ms
    # with onnxruntime on one core of this CPU; model/mouth_generator.py) from the lip landmark image and a degraded
    # driver mouth; E and D are the paper's trunk at a quarter of its widths, attention at 16², a 128-d ê.
    # 64², not 96²: G's cost grows with its pixels (2.25x at 96²: 14 ms in torch against 7), the training clips'
    # mouth crops span 66-197 source pixels (median 108, so 96² would upsample a third of them), and a 64² run
    # gets about twice the steps in the same CPU time.
    "mouth": ModelConfig(
        name="mouth",
        image_size=64,
        embed_dim=128,
        base_channels=16,
        max_channels=128,
        encoder_blocks=4,
        encoder_attention=16,
        gen_channels=(16, 32, 64, 128),
        gen_middle_blocks=2,
        gen_attention_down=(),
        gen_attention_up=(),
        landmark_thickness=1,
        conditioning="mouth",
    ),
}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model configuration '{name}' - choose one of: {', '.join(CONFIGS)}") from None
