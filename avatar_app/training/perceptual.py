"""The content loss's perceptual networks, defined here so nothing is downloaded: VGG19 (ImageNet) and VGGFace,
their convolutional layers only, weights read from files the user gives.

Where the weights come from (both are the files the public ports of the paper use):
  VGG19    torchvision's ImageNet weights, vgg19-dcbb9e9d.pth
           (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth); keys features.N.weight / .bias;
           input RGB in [0, 1] normalised by ImageNet's mean and std.
  VGGFace  the Oxford VGG-Face model converted to PyTorch by S. Albanie, vgg_face_dag.pth
           (https://www.robots.ox.ac.uk/~albanie/models/pytorch-mcn/vgg_face_dag.pth); keys conv1_1.weight ...;
           input RGB in 0-255 minus the model's mean colour (the Caffe convention, RGB order).
Each network sees the input its weights were trained on, so the paper's loss weights stay in balance.
Files are read with torch.load(weights_only=True): a pickled object is refused, never run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from avatar_app.errors import InputFileError
from avatar_app.model.checkpoint import read_weights_file


@dataclass(frozen=True)
class PerceptualSpec:
    name: str
    layers: tuple  # channels per conv, "M" for max-pooling (torchvision's VGG notation)
    taps: tuple[int, ...]  # indices (in torchvision's `features` numbering) whose outputs the loss compares
    mean: tuple[float, float, float]  # RGB, in the network's input units
    std: tuple[float, float, float]
    scale: float  # [0, 1] -> the network's input units
    source: str  # where users get the file


VGG19 = PerceptualSpec(
    "VGG19", (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    taps=(1, 6, 11, 20, 29),  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (the paper's conv layers 1, 6, 11, 20, 29)
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=1.0,
    source="torchvision's vgg19-dcbb9e9d.pth (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth)",
)
VGGFACE = PerceptualSpec(
    "VGGFace", (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    taps=(1, 6, 11, 18, 25),  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of VGG16
    mean=(129.186279296875, 104.76238250732422, 93.59396362304688), std=(1.0, 1.0, 1.0), scale=255.0,
    source="vgg_face_dag.pth (https://www.robots.ox.ac.uk/~albanie/models/pytorch-mcn/vgg_face_dag.pth)",
)


class PerceptualNet(nn.Module):
    """VGG feature layers up to the last tap, frozen; forward: RGB in [-1, 1] -> the tapped activations."""

    def __init__(self, spec: PerceptualSpec):
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        cin = 3
        for c in spec.layers:
            if c == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=False)]
                cin = c
        self.features = nn.Sequential(*layers[: max(spec.taps) + 1])
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def conv_indices(self) -> list[int]:
        return [i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        h = ((rgb + 1) * (0.5 * self.spec.scale) - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.spec.taps:
                out.append(h)
        return out

    def train(self, mode: bool = True) -> PerceptualNet:
        return super().train(False)  # always in inference mode


def load_perceptual(spec: PerceptualSpec, path: str | Path) -> PerceptualNet:
    """The network with its weights from ``path``; a file that is not these weights is one clear line."""
    path = Path(path)
    flag = f"--{spec.name.lower()}-weights"
    if not path.is_file():
        raise InputFileError(f"{path}: no such {spec.name} weights file - check {flag} (the file is {spec.source})")

    def wrong(why: str) -> InputFileError:
        return InputFileError(f"{path}: not {spec.name} weights ({why}) - {flag} takes {spec.source}")

    try:
        raw = read_weights_file(path)
    except ValueError as err:
        raise wrong(str(err)) from None
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise wrong("not a state dict of tensors")
    net = PerceptualNet(spec)
    convs = net.conv_indices()
    names = _conv_names(spec)
    state = {}
    for n, (index, name) in enumerate(zip(convs, names)):
        for part in ("weight", "bias"):
            candidates = (f"features.{index}.{part}", f"{name}.{part}", f"{index}.{part}")
            key = next((k for k in candidates if k in raw), None)
            if key is None:
                raise wrong(f"no weights for conv layer {n + 1} ({candidates[0]} or {candidates[1]})")
            want = getattr(net.features[index], part).shape
            if tuple(raw[key].shape) != tuple(want):
                raise wrong(f"{key} has shape {tuple(raw[key].shape)}, {spec.name} needs {tuple(want)}")
            state[f"features.{index}.{part}"] = raw[key].float()
    if not all(torch.isfinite(t).all() for t in state.values()):
        raise wrong("it holds NaN or infinite values")
    net.load_state_dict(state, strict=False)  # mean and std are the spec's, not the file's
    return net


def _conv_names(spec: PerceptualSpec) -> list[str]:
    """conv1_1, conv1_2, conv2_1, ... in the network's order (the names vgg_face_dag.pth uses)."""
    names, block, n = [], 1, 0
    for c in spec.layers:
        if c == "M":
            block, n = block + 1, 0
        else:
            n += 1
            names.append(f"conv{block}_{n}")
    return names
