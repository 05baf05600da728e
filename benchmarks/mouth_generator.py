"""The mouth generator's cost per frame: GFLOP and milliseconds in eager torch and (a rough figure: the app's model
format does not describe a mouth model yet, so this is a bare ONNX export of G, checked against torch) in
onnxruntime, against its budget of 6 ms p50 on this CPU.

    python benchmarks/mouth_generator.py [--checkpoint FILE.pt] [--frames 200] [--threads 1]

Without --checkpoint, the `mouth` configuration with random weights (speed does not depend on them). Not a
test: figures depend on the machine and what else runs on it; say which when you quote them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from generator import _time, gflop  # benchmarks/generator.py, beside this file

BUDGET_MS = 6.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="a mouth model's checkpoint (default: random weights)")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads (default 1)")
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch

    from avatar_app.model.checkpoint import build_networks, load_checkpoint
    from avatar_app.model.config import get_config
    from avatar_app.model.layers import bake_spectral_norm
    from avatar_app.model.mouth_generator import DRIVER_CHANNELS

    torch.set_num_threads(args.threads)
    nets = load_checkpoint(args.checkpoint)[0] if args.checkpoint else build_networks(get_config("mouth"))
    cfg = nets.config
    if cfg.conditioning != "mouth":
        raise SystemExit(f"{args.checkpoint}: not a mouth model ({cfg.conditioning})")
    gen = bake_spectral_norm(nets.generator).eval()
    s, rng = cfg.image_size, np.random.default_rng(0)
    inputs = (rng.random((1, 3, s, s), dtype=np.float32), rng.random((1, DRIVER_CHANNELS, s, s), dtype=np.float32),
              (0.1 * rng.standard_normal((1, gen.n_psi))).astype(np.float32))
    tensors = [torch.from_numpy(a) for a in inputs]
    params = sum(p.numel() for n, p in gen.named_parameters() if not n.startswith("project"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} thread(s), "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(f"G '{cfg.name}' at {s}x{s}: {params / 1e6:.2f} M parameters outside P (P: {gen.project.weight.numel() / 1e6:.2f} M), "
          f"{gflop(gen, inputs):.3f} GFLOP")
    with torch.no_grad():
        med, p95 = _time(lambda: gen(*tensors), args.frames)
        want = gen(*tensors).numpy()
    print(f"eager torch        {med:6.2f} ms p50  {p95:6.2f} ms p95")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # the exporter's progress is not the figures
        path = Path(tmp) / "mouth_generator.onnx"
        torch.onnx.export(gen, tuple(tensors), path, input_names=["landmarks", "driver", "psi"],
                          output_names=["image"], dynamo=True, verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = dict(zip(["landmarks", "driver", "psi"], inputs))
    diff = float(np.abs(session.run(None, feed)[0] - want).max())
    med, p95 = _time(lambda: session.run(None, feed), args.frames)
    print(f"onnxruntime cpu    {med:6.2f} ms p50  {p95:6.2f} ms p95  (max |onnx - torch| {diff:.1e})")
    print(f"budget <= {BUDGET_MS} ms p50 with onnxruntime: {'PASS' if med <= BUDGET_MS else 'MISS'} ({med:.2f} ms)")
    # Quantised: onnxruntime's dynamic int8 (weights int8, activations quantised per run) and fp16 weights.
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        path = Path(tmp) / "g.onnx"
        torch.onnx.export(gen, tuple(tensors), path, input_names=["landmarks", "driver", "psi"],
                          output_names=["image"], dynamo=True, verbose=False, external_data=False)
        rows = {}
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(path), str(Path(tmp) / "int8.onnx"), weight_type=QuantType.QInt8)
            rows["onnxruntime int8  "] = Path(tmp) / "int8.onnx"
        except Exception as err:  # noqa: BLE001 - a figure, not a feature
            print(f"int8: not made ({type(err).__name__}: {str(err)[:100]})", file=sys.stderr)
        try:
            import onnx
            from onnx import numpy_helper

            m = onnx.load(str(path))
            for init in m.graph.initializer:  # fp16 weights, cast back to fp32 where used (no fp16 kernels on CPU)
                if init.data_type == onnx.TensorProto.FLOAT:
                    a = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
                    init.CopyFrom(numpy_helper.from_array(a, init.name))
            onnx.save(m, str(Path(tmp) / "fp16w.onnx"))
            rows["fp16 weights      "] = Path(tmp) / "fp16w.onnx"
        except Exception as err:  # noqa: BLE001
            print(f"fp16: not made ({type(err).__name__}: {str(err)[:100]})", file=sys.stderr)
        sessions = {k: ort.InferenceSession(str(v), options, providers=["CPUExecutionProvider"]) for k, v in rows.items()}
    for name, q in sessions.items():
        got = q.run(None, feed)[0]
        med, p95 = _time(lambda q=q: q.run(None, feed), args.frames)
        print(f"{name} {med:6.2f} ms p50  {p95:6.2f} ms p95  (mean |q - fp32| {float(np.abs(got - want).mean()):.1e} "
              f"of [-1, 1], max {float(np.abs(got - want).max()):.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
