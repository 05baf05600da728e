"""The mouth model on the clips its run held out: feed-forward self-reenactment at the mouth crop, L1 over the
crop and inside the opening (the inner lips), against a naive baseline - another frame of the same clip pasted
as it is (what a still avatar's mouth gives).

    python benchmarks/mouth_holdout.py --checkpoint FILE.pt --data /work/data/mouth [--episodes 20] [--threads 1]

Each held-out clip (a clip of the data that is not one of the checkpoint's training videos) gives --episodes
episodes of K = 4 frames + a target, with the driver's mouth as in training (degraded, from another frame half
the time) and without it. Not a test: it prints figures; quote the checkpoint's step with them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="the mouth data the run trained on")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import dataclasses

    import torch

    from avatar_app.model.checkpoint import load_checkpoint
    from avatar_app.training.dataset import MouthEpisodeDataset, read_index

    torch.set_num_threads(args.threads)
    nets, raw = load_checkpoint(args.checkpoint)
    data = read_index(args.data)
    held = [c for c in data.clips if c.id not in set(raw.get("videos") or [])]
    if not held:
        raise SystemExit(f"{args.data}: every clip was trained on - nothing held out to judge")
    data = dataclasses.replace(data, clips=held)
    cfg = nets.config
    E, G = nets.embedder.eval(), nets.generator.eval()
    print(f"{args.checkpoint}: step {raw.get('step')}, {len(held)} held-out clips, {args.episodes} episodes each")
    print(f"{'clip':<36} {'L1 crop':>8} {'L1 open':>8} {'no drv':>8} {'still':>8}   (opening L1: model, model "
          f"without driver, another frame)")
    totals = []
    for i, clip in enumerate(held):
        with_driver = MouthEpisodeDataset(data, cfg.image_size, 4, cfg.landmark_thickness, drop=0.0, other_frame=0.5)
        rows = []
        for e in range(args.episodes):
            item = with_driver[(i, 10_000 + e)]
            rng = np.random.default_rng(e)
            still = with_driver._read(clip, int(rng.integers(clip.frames)))
            still = torch.from_numpy(still).permute(2, 0, 1).float() / 127.5 - 1.0
            with torch.no_grad():
                psi = G.project(E(item["frames"], item["landmarks"]).mean(0, keepdim=True))
                out = G(item["target_landmarks"][None], item["driver"][None], psi)[0]
                bare = G(item["target_landmarks"][None], torch.zeros_like(item["driver"])[None], psi)[0]
            m = item["mouth"]
            opening = lambda x: float(((x - item["target"]).abs().mean(0, keepdim=True) * m).sum() / m.sum().clamp(min=1))  # noqa: E731
            if m.sum() < 4:  # a shut mouth has no opening to judge
                continue
            rows.append([float((out - item["target"]).abs().mean()), opening(out), opening(bare), opening(still)])
        if rows:
            r = np.mean(rows, axis=0)
            totals.append(r)
            print(f"{clip.id[:36]:<36} {r[0]:8.4f} {r[1]:8.4f} {r[2]:8.4f} {r[3]:8.4f}   ({len(rows)} open)")
    t = np.mean(totals, axis=0)
    print(f"{'mean':<36} {t[0]:8.4f} {t[1]:8.4f} {t[2]:8.4f} {t[3]:8.4f}")
    print(f"opening L1, model / still frame: {t[1] / t[3]:.2f}x (below 1: the model's mouth is nearer the target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
