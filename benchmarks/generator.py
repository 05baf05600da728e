"""Generator milliseconds per frame at 256²: eager torch, TorchScript and onnxruntime, for each configuration.

    python benchmarks/generator.py [--configs realtime paper] [--frames 30] [--threads 2] [--provider cpu|cuda]

Random weights (speed does not depend on them). Prints median and p95 per runtime and the ORT/eager ratio.
Not a test: figures depend on the machine; say which one when you quote them.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _time(fn, frames: int) -> tuple[float, float]:
    for _ in range(3):
        fn()
    ts = []
    for _ in range(frames):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts = np.array(ts) * 1000
    return float(np.median(ts)), float(np.percentile(ts, 95))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["realtime", "paper"])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch

    from avatar_app.model.checkpoint import build_networks, save_checkpoint
    from avatar_app.model.config import CONFIGS
    from avatar_app.model.layers import bake_spectral_norm
    from avatar_app.render.neural import ExportedModel

    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, "
          f"onnxruntime {ort.__version__} {args.provider}")
    print(f"{'config':<10} {'runtime':<12} {'median ms':>10} {'p95 ms':>8}")
    for name in args.configs:
        nets = build_networks(CONFIGS[name])
        with tempfile.TemporaryDirectory() as tmp:
            from avatar_app.model.export import export_checkpoint

            save_checkpoint(Path(tmp) / "c.pt", nets)
            export_checkpoint(Path(tmp) / "c.pt", Path(tmp) / "m", ["onnx", "torchscript"])
            s = CONFIGS[name].image_size
            lm = np.random.rand(1, 3, s, s).astype(np.float32)
            psi = np.random.randn(1, nets.generator.n_psi).astype(np.float32)
            gen = bake_spectral_norm(nets.generator).eval()
            lt, pt = torch.from_numpy(lm), torch.from_numpy(psi)
            results = {}
            with torch.no_grad():
                results["eager"] = _time(lambda: gen(lt, pt), args.frames)
            ts = ExportedModel(Path(tmp) / "m", "torchscript", trust_code=True)
            results["torchscript"] = _time(lambda: ts.generate(lm, psi), args.frames)
            onnx = ExportedModel(Path(tmp) / "m", "onnx", args.provider)
            results[f"onnxruntime-{onnx.provider}"] = _time(lambda: onnx.generate(lm, psi), args.frames)
        for runtime, (med, p95) in results.items():
            print(f"{name:<10} {runtime:<12} {med:>10.1f} {p95:>8.1f}")
        ort_med = results[f"onnxruntime-{onnx.provider}"][0]
        print(f"{name:<10} ORT / eager = {ort_med / results['eager'][0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
