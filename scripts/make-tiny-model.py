#!/usr/bin/env python3
"""Build the few-KB ONNX models that cutout's tests run through the real
ONNX Runtime (no big download needed).

    python3 scripts/make-tiny-model.py [OUT_DIR]      # default tests/fixtures/onnx

Needs the `onnx` package (`pip install onnx`). Writes:

  tiny.onnx      input `input` float32 [1,3,320,320] (the u2net/u2netp input);
                 output 0 `mask`  float32 [1,1,320,320] = R - B  (channel 0 minus channel 2)
                 output 1 `side`  float32 [1,1,320,320] = B - R  (a decoy, like IS-Net's side outputs)
  tiny-f16.onnx  the same graph with float16 input and outputs.

With rembg's u2net preprocessing and min-max scaling, a red square on blue
gives a mask of 255 on the square and 0 on the background, so tests can
assert where the alpha must be high. The output is deterministic: the graph
has no weights, only Split and Sub.
"""

import os
import sys

import onnx
from onnx import TensorProto, helper

SIZE = 320


def build(elem_type: int, name: str) -> onnx.ModelProto:
    shape_in = [1, 3, SIZE, SIZE]
    shape_out = [1, 1, SIZE, SIZE]
    split = helper.make_tensor("split_sizes", TensorProto.INT64, [3], [1, 1, 1])
    nodes = [
        helper.make_node("Split", ["input", "split_sizes"], ["r", "g", "b"], axis=1),
        helper.make_node("Sub", ["r", "b"], ["mask"]),
        helper.make_node("Sub", ["b", "r"], ["side"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", elem_type, shape_in)],
        [
            helper.make_tensor_value_info("mask", elem_type, shape_out),
            helper.make_tensor_value_info("side", elem_type, shape_out),
        ],
        initializer=[split],
    )
    model = helper.make_model(
        graph,
        producer_name="cutout scripts/make-tiny-model.py",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    # IR 8 loads on every ONNX Runtime from 1.14 on.
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "fixtures", "onnx")
    os.makedirs(out_dir, exist_ok=True)
    for file, elem in [("tiny.onnx", TensorProto.FLOAT), ("tiny-f16.onnx", TensorProto.FLOAT16)]:
        path = os.path.join(out_dir, file)
        onnx.save(build(elem, file.removesuffix(".onnx")), path)
        print(f"{os.path.normpath(path)}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
