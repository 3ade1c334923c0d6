#!/usr/bin/env python3
"""Where an int8 bundle loses labels, simulated on ONNX Runtime:

    python models/int8_sensitivity.py --model DIR --stream FILE \
        [--configs all qkv attnout ffn1 ffn2 all:act_bits=14 all:w_bits=16 ...]

The plugin's int8 arithmetic (crate::int8: weights signed per output column,
activations unsigned per row with a zero point, 7 bits) is imitated by
rewriting the ONNX graph: each selected MatMul with a constant weight gets
its weight quantised and dequantised, and its input a fake-quantisation
subgraph of the same rounding (ties to even). Every other node stays f32.
The texts are PostHog's 2026 mode's (models/posthog_bench.py: the last user
message, head 300 + tail 695), one message at a time, and the labels are
counted per generation against the unmodified model's.

A configuration is a set of products (all, qkv, attnout, ffn1, ffn2,
no-ffn2) and optional widths, `:act_bits=N` and `:w_bits=N`; or
`ort-dynamic`, ONNX Runtime's own dynamic int8 quantisation of the model
(`quantize_dynamic`, signed weights per channel), for comparison. This is a
sensitivity study (which products and which side's bits lose labels), not
the plugin's own figure: `llma-bench posthog` runs the real int8 bundle.
"""

import argparse
import os
import re
import tempfile
import time
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from tokenizers import Tokenizer

from posthog_bench import posthog_work

KINDS = {
    "all": lambda k: k is not None,
    "qkv": lambda k: k == "qkv",
    "attnout": lambda k: k == "attnout",
    "ffn1": lambda k: k == "ffn1",
    "ffn2": lambda k: k == "ffn2",
    "no-ffn2": lambda k: k not in (None, "ffn2"),
}


def kind(node_name):
    """Which of the encoder's constant-weight products a MatMul is."""
    if re.search(r"self\.(query|key|value)/", node_name):
        return "qkv"
    if "attention.output.dense" in node_name:
        return "attnout"
    if "intermediate.dense" in node_name:
        return "ffn1"
    if "output.dense" in node_name:
        return "ffn2"
    return None


def fake_quantised(base, selected, act_bits, w_bits):
    model = onnx.ModelProto()
    model.CopyFrom(base)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    levels = float(2**act_bits - 1)
    for name, value in (("fq_zero", 0.0), ("fq_levels", levels), ("fq_eps", 1e-30)):
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
    nodes = []
    for n in graph.node:
        if n.op_type == "MatMul" and n.input[1] in inits and selected(kind(n.name)):
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            wl = float(2 ** (w_bits - 1) - 1)
            amax = np.abs(w).max(axis=0)
            scale = np.where(amax > 0, amax / wl, 1.0)
            wq = (np.clip(np.round(w / scale), -wl, wl) * scale).astype(np.float32)
            inits[n.input[1]].CopyFrom(numpy_helper.from_array(wq, n.input[1]))
            a, p = n.input[0], n.name + "/fq/"
            mk = helper.make_node
            nodes += [
                # The row's range, widened to hold 0 (crate::int8::kernel::range).
                mk("ReduceMin", [a], [p + "mn"], axes=[-1], keepdims=1),
                mk("ReduceMax", [a], [p + "mx"], axes=[-1], keepdims=1),
                mk("Min", [p + "mn", "fq_zero"], [p + "lo"]),
                mk("Max", [p + "mx", "fq_zero"], [p + "hi"]),
                mk("Sub", [p + "hi", p + "lo"], [p + "r0"]),
                mk("Add", [p + "r0", "fq_eps"], [p + "r"]),
                mk("Div", ["fq_levels", p + "r"], [p + "inv"]),
                mk("Div", [p + "r", "fq_levels"], [p + "scale"]),
                # zero = round(-lo inv) in 0..=levels; q = round(x inv) + zero, clamped.
                mk("Mul", [p + "lo", p + "inv"], [p + "loi"]),
                mk("Neg", [p + "loi"], [p + "nloi"]),
                mk("Round", [p + "nloi"], [p + "z0"]),
                mk("Clip", [p + "z0", "fq_zero", "fq_levels"], [p + "z"]),
                mk("Mul", [a, p + "inv"], [p + "ai"]),
                mk("Round", [p + "ai"], [p + "ar"]),
                mk("Add", [p + "ar", p + "z"], [p + "q0"]),
                mk("Clip", [p + "q0", "fq_zero", "fq_levels"], [p + "q"]),
                mk("Sub", [p + "q", p + "z"], [p + "qz"]),
                mk("Mul", [p + "qz", p + "scale"], [p + "deq"]),
            ]
            n.input[0] = p + "deq"
        nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def scores(model, encoded, threads, optimise=False):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # No fusions for the fake quantisation: they could fold it away.
    if not optimise:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    out = []
    for ids in encoded:
        feed = {"input_ids": np.array([ids], dtype=np.int64)}
        if "attention_mask" in names:
            feed["attention_mask"] = np.ones((1, len(ids)), dtype=np.int64)
        logits = session.run(None, feed)[0][0]
        e = np.exp(logits - logits.max())
        out.append(e / e.sum())
    return np.array(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--stream", required=True, help="JSON lines of $ai_generation events")
    ap.add_argument("--configs", nargs="+", default=["all"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    texts = [text for _, text in posthog_work(args.stream)[1]]
    count = Counter(texts)
    distinct = list(count)
    weight = np.array([count[t] for t in distinct])
    tokenizer = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tokenizer.enable_truncation(512)
    encoded = [tokenizer.encode(t).ids for t in distinct]
    base = onnx.load(os.path.join(args.model, "model.onnx"))

    ref = scores(base, encoded, args.threads)
    ref_label = ref.argmax(1)
    top = np.sort(ref, 1)
    margin = top[:, -1] - top[:, -2]
    total = weight.sum()
    print(f"f32: {total} generations, {len(distinct)} distinct messages, labels {dict(Counter(np.repeat(ref_label, weight).tolist()))}")
    print("f32's top-two margin below 0.01 / 0.02 / 0.05 / 0.1: "
          + " / ".join(str(int(weight[margin < t].sum())) for t in (0.01, 0.02, 0.05, 0.1))
          + f" generations; median top score {np.median(np.repeat(top[:, -1], weight)):.3f}")
    for config in args.configs:
        started = time.time()
        if config == "ort-dynamic":
            got = scores(ort_dynamic(args.model), encoded, args.threads, optimise=True)
            report(config, got, ref, margin, weight, started)
            continue
        name, *opts = config.split(":")
        widths = {"act_bits": 7, "w_bits": 8}
        for opt in opts:
            key, value = opt.split("=")
            widths[key] = int(value)
        got = scores(fake_quantised(base, KINDS[name], **widths), encoded, args.threads)
        report(config, got, ref, margin, weight, started)


def report(config, got, ref, margin, weight, started):
    same = got.argmax(1) == ref.argmax(1)
    agree, total = int(weight[same].sum()), int(weight.sum())
    print(f"{config:26s} labels {agree}/{total} ({100 * agree / total:.1f}%), largest score difference "
          f"{np.abs(got - ref).max():.3f}, largest margin of a flip {margin[~same].max() if (~same).any() else 0:.3f} "
          f"({time.time() - started:.0f} s)", flush=True)


def ort_dynamic(model_dir):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.int8.onnx")
        quantize_dynamic(os.path.join(model_dir, "model.onnx"), out, per_channel=True, weight_type=QuantType.QInt8)
        return onnx.load(out)


if __name__ == "__main__":
    main()
