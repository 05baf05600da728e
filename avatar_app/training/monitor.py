"""What a training run shows while it runs (main process only): a progress bar with the losses, TensorBoard
scalars, losses.csv and its plot, and sample grids (landmarks | target | output) as PNG."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from avatar_app.atomic import atomic_path

CSV_NAME = "losses.csv"
NO_TENSORBOARD = "tensorboard is not installed: losses go to losses.csv only (pip install tensorboard)"

log = logging.getLogger(__name__)


class Monitor:
    def __init__(self, run_dir: Path, start_step: int, total_steps: int, enabled: bool, progress: bool):
        self.run_dir, self.enabled = run_dir, enabled
        self.writer = None
        self.bar = None
        self.columns: list[str] | None = None
        if not enabled:
            return
        (run_dir / "samples").mkdir(exist_ok=True)
        self._trim_csv(start_step)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            # Not a warning: TensorBoard is an extra nobody asked for by name, and losses.csv has the same numbers.
            # Said once per run where a person watches it (beside the progress bar), else only logged.
            if progress:
                print(f"training: {NO_TENSORBOARD}", file=sys.stderr, flush=True)
            else:
                log.info(NO_TENSORBOARD)
        else:
            # purge_step drops events a killed run logged after its last checkpoint.
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, initial=start_step, desc="training", unit="step", disable=not progress,
                        dynamic_ncols=True)

    def _trim_csv(self, start_step: int) -> None:
        """Keep the rows up to the step the run resumes from: a killed run may have logged beyond its checkpoint."""
        path = self.run_dir / CSV_NAME
        if not path.is_file():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        self.columns = rows[0]
        kept = [r for r in rows[1:] if r and int(r[0]) <= start_step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([rows[0], *kept])

    def step(self, step: int, scalars: dict[str, float], log: bool) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix({k: f"{scalars[k]:.3g}" for k in ("G", "D", "content", "match") if k in scalars}, refresh=False)
            self.bar.update()
        if not log:
            return
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(f"train/{k}", v, step)
        path = self.run_dir / CSV_NAME
        if self.columns is None or not path.is_file():
            self.columns = ["step", *scalars]
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow([step, *(f"{scalars.get(k, float('nan')):.6g}" for k in self.columns[1:])])

    def samples(self, step: int, landmarks: torch.Tensor, target: torch.Tensor, output: torch.Tensor,
                warp: torch.Tensor | None = None) -> Path | None:
        if not self.enabled:
            return None
        from avatar_app.images import save_image_atomic

        path = self.run_dir / "samples" / f"step_{step:07d}.png"
        save_image_atomic(path, sample_grid(landmarks, target, output, warp=warp))
        return path

    def plot(self) -> Path | None:
        if not self.enabled:
            return None
        return plot_losses(self.run_dir / CSV_NAME, self.run_dir / "losses.png")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def sample_grid(landmarks: torch.Tensor, target: torch.Tensor, output: torch.Tensor, rows: int = 4,
                warp: torch.Tensor | None = None) -> np.ndarray:
    """BGR uint8: one row per episode, landmark image | (the image G is given: the warp it corrects, or the
    degraded driver mouth |) target | output."""
    def to_u8(x: torch.Tensor, signed: bool) -> np.ndarray:
        x = x.detach().float().cpu()
        x = (x + 1) / 2 if signed else x
        return (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)

    n = min(rows, len(target))
    lm, tg, out = to_u8(landmarks[:n], False), to_u8(target[:n], True), to_u8(output[:n], True)
    columns = [lm] + ([to_u8(warp[:n], True)] if warp is not None else []) + [tg, out]
    grid = np.concatenate([np.concatenate([c[i] for c in columns], axis=1) for i in range(n)], axis=0)
    return np.ascontiguousarray(grid[:, :, ::-1])


def plot_losses(csv_path: Path, png_path: Path) -> Path | None:
    """The loss curves as PNG (one panel per loss, smoothed over 20 logged points); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not csv_path.is_file():
        return None
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 3:
        return None
    head, data = rows[0], np.array([[float(v) for v in r] for r in rows[1:]])
    names = [h for h in head[1:] if h not in ("seconds", "unreadable")]
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 1.7 * len(names)), sharex=True)
    for ax, name in zip(np.atleast_1d(axes), names):
        y = data[:, head.index(name)]
        ax.plot(data[:, 0], y, lw=0.6, alpha=0.35)
        w = min(20, len(y))
        ax.plot(data[w - 1:, 0], np.convolve(y, np.ones(w) / w, mode="valid"), lw=1.4)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.tick_params(labelsize=7)
    np.atleast_1d(axes)[-1].set_xlabel("step")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return png_path
