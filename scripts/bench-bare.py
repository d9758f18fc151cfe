"""Bare ONNX Runtime inference, the floor for cutout and rembg: one session
(graph optimisation "all", THREADS intra-op threads, sequential), the model
run once per picture on rembg's pre-processed input (RGB, Lanczos to the
model's square, / max, (x - mean) / std). Prints one line per run:

    bare PICTURE infer_ms=...

    python bench-bare.py MODEL THREADS PICTURE...
"""
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

model, threads, pictures = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
started = time.perf_counter()
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
side = inp.shape[-1] if isinstance(inp.shape[-1], int) else 1024
dtype = np.float16 if "float16" in inp.type else np.float32
print(f"bare load_ms={(time.perf_counter() - started) * 1000:.0f} onnxruntime={ort.__version__} input={inp.type}")
# IS-Net's mean/std (0.5, 1.0); the timing does not depend on them.
for p in pictures:
    im = np.asarray(Image.open(p).convert("RGB").resize((side, side), Image.LANCZOS), dtype=np.float64)
    im = (im / max(im.max(), 1e-6) - 0.5) / 1.0
    x = im.transpose(2, 0, 1)[None].astype(dtype)
    t = time.perf_counter()
    sess.run([sess.get_outputs()[0].name], {inp.name: x})
    print(f"bare {p} infer_ms={(time.perf_counter() - t) * 1000:.0f}")
