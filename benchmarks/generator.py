"""Generator cost per frame: GFLOP (printed) and milliseconds in eager torch, TorchScript and onnxruntime, for
each configuration at its own image size, or for a model folder (the shipped one, by default with --model).

    python benchmarks/generator.py [--configs realtime paper] [--model DIR] [--frames 50] [--threads 2]
                                   [--provider cpu|cuda]

Configurations run with random weights (speed does not depend on them). Prints median and p95 per runtime and
the budget of the realtime generator (<= 3 GFLOP, <= 12 ms p50 with onnxruntime on 2 cores): PASS or MISS.
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

BUDGET_GFLOP, BUDGET_MS = 3.0, 12.0


def _time(fn, frames: int) -> tuple[float, float]:
    for _ in range(5):
        fn()
    ts = []
    for _ in range(frames):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts = np.array(ts) * 1000
    return float(np.median(ts)), float(np.percentile(ts, 95))


def generator_inputs(cfg, n_psi: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Sample inputs in the exported generator's order (warp, landmarks, psi) or (landmarks, psi)."""
    rng = np.random.default_rng(seed)
    s = cfg.image_size
    lm = rng.random((1, 3, s, s), dtype=np.float32)
    psi = (0.1 * rng.standard_normal((1, n_psi))).astype(np.float32)
    if cfg.conditioning == "warp":
        return (rng.random((1, 3, s, s), dtype=np.float32) * 2 - 1, lm, psi)
    return (lm, psi)


def gflop(generator, inputs) -> float:
    """Floating-point operations of one forward pass (multiply and add counted apart), in GFLOP."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    args = [torch.from_numpy(a) for a in inputs]
    run = generator.correction if hasattr(generator, "correction") else generator
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run(*args)
    return counter.get_total_flops() / 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["realtime", "paper"])
    p.add_argument("--model", type=Path, default=None, nargs="?", const="shipped",
                   help="time this exported model folder instead (no value: the shipped model); ONNX only")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch

    from avatar_app.model.checkpoint import build_networks, save_checkpoint
    from avatar_app.model.config import CONFIGS, ModelConfig
    from avatar_app.model.export import export_checkpoint
    from avatar_app.model.layers import bake_spectral_norm
    from avatar_app.pipeline.render.neural import ExportedModel, default_model

    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, "
          f"onnxruntime {ort.__version__} {args.provider}")
    print(f"{'config':<12} {'size':>5} {'GFLOP':>6} {'runtime':<18} {'median ms':>10} {'p95 ms':>8}")

    def run(label: str, cfg, model_dir: Path, eager=None) -> None:
        onnx = ExportedModel(model_dir, "onnx", args.provider)
        n_psi = next(i for i in onnx.manifest["generator"]["inputs"] if i["name"] == "psi")["shape"][1]
        inputs = generator_inputs(cfg, n_psi)
        gen = eager if eager is not None else bake_spectral_norm(build_networks(cfg).generator).eval()
        flops = gflop(gen, inputs)
        call = onnx.correct if cfg.conditioning == "warp" else onnx.generate
        results = {f"onnxruntime-{onnx.provider}": _time(lambda: call(*inputs), args.frames)}
        if eager is not None:
            tensors = [torch.from_numpy(a) for a in inputs]
            fn = gen.correction if cfg.conditioning == "warp" else gen
            with torch.no_grad():
                results["eager torch"] = _time(lambda: fn(*tensors), args.frames)
        for runtime, (med, p95) in results.items():
            print(f"{label:<12} {cfg.image_size:>5} {flops:>6.2f} {runtime:<18} {med:>10.1f} {p95:>8.1f}")
        if cfg.name == "realtime" or args.model is not None:
            med = results[f"onnxruntime-{onnx.provider}"][0]
            verdict = "PASS" if flops <= BUDGET_GFLOP and med <= BUDGET_MS else "MISS"
            print(f"{label:<12} budget <= {BUDGET_GFLOP} GFLOP and <= {BUDGET_MS} ms p50: {verdict} "
                  f"({flops:.2f} GFLOP, {med:.1f} ms)")

    if args.model is not None:
        folder = default_model() if str(args.model) == "shipped" else args.model
        cfg = ModelConfig.from_dict(ExportedModel(folder).manifest["config"])
        run(folder.name, cfg, folder)
        return 0
    for name in args.configs:
        cfg = CONFIGS[name]
        nets = build_networks(cfg)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp) / "c.pt", nets)
            export_checkpoint(Path(tmp) / "c.pt", Path(tmp) / "m", ["onnx"])
            run(name, cfg, Path(tmp) / "m", eager=bake_spectral_norm(nets.generator).eval())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
