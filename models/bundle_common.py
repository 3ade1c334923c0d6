"""Helpers shared by the bundle builders: graph-building sugar and the
HF-style bundle files (config.json, tokenizer_config.json).

Everything here is deterministic: no timestamps, sorted JSON keys where the
order does not matter, fixed producer strings.
"""

import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 14
IR_VERSION = 8  # what opset-14 exports (torch/optimum) write; readable by tract and ORT
LABELS = ["negative", "neutral", "positive"]


class GraphBuilder:
    """Tiny helper to emit ONNX nodes with unique, readable names."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self._names = {}
        self._consts = {}

    def _fresh(self, base):
        n = self._names.get(base, 0)
        self._names[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def init(self, name, array):
        name = self._fresh(name)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C", copy=True), name))
        return name

    def const(self, value, dtype):
        """Shared scalar/1-D constant initializer (deduplicated by value)."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            tag = "i" if arr.dtype.kind in "iu" else "f"
            shape = "x".join(str(d) for d in arr.shape) or "s"
            vals = "_".join(f"{v:g}".replace("-", "m").replace(".", "p") for v in arr.flatten()[:4])
            self._consts[key] = self.init(f"const_{tag}_{shape}_{vals}", arr)
        return self._consts[key]

    def f(self, value):
        return self.const(value, np.float32)

    def i64(self, value):
        return self.const(value, np.int64)

    def op(self, op_type, inputs, name=None, n_out=1, **attrs):
        base = name or op_type.lower()
        node_name = self._fresh(base)
        outs = [node_name if n_out == 1 else f"{node_name}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=node_name, **attrs))
        return outs[0] if n_out == 1 else outs


def token_inputs():
    return [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ]


def logits_output():
    return [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])]


def make_model(gb, graph_name, outputs_map, doc=""):
    """outputs_map: the name of the tensor that should become `logits`."""
    gb.nodes.append(helper.make_node("Identity", [outputs_map], ["logits"], name="logits_identity"))
    graph = helper.make_graph(gb.nodes, graph_name, token_inputs(), logits_output(), gb.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="llma-sentiment-models",
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def save_model(model, out_dir):
    path = os.path.join(out_dir, "model.onnx")
    # Inline weights: every bundle here is far below the 2 GB protobuf limit.
    with open(path, "wb") as fh:
        fh.write(model.SerializeToString(deterministic=True))
    onnx.checker.check_model(path, full_check=True)
    return path


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def label_maps():
    id2label = {str(i): l for i, l in enumerate(LABELS)}
    label2id = {l: i for i, l in enumerate(LABELS)}
    return id2label, label2id


def write_tokenizer_config(out_dir, extra=None, model_max_length=512):
    cfg = {"model_max_length": model_max_length}
    if extra:
        cfg.update(extra)
    write_json(os.path.join(out_dir, "tokenizer_config.json"), cfg)


# Texts every bundle's canaries are drawn from: clear sentiment either way,
# neutral questions, negation, non-ASCII.
CANARY_CANDIDATES = [
    "I love this, thank you!",
    "this is broken and I hate it",
    "what time is the meeting",
    "this is not good",
    "great answer, exactly what I needed",
    "terrible, it wasted my whole afternoon",
    "can you summarise the document",
    "naïve café ☕ this is wonderful",
    "the update made everything worse",
    "ok",
]
# A canary's top class must lead the next by this much, so that the small
# differences between runtimes (1e-6 on the logits) can never flip it.
CANARY_MARGIN = 0.05


def write_canaries(out_dir):
    """canary.json: texts with the label ONNX Runtime gives them on this
    bundle; a plugin version that labels them otherwise is refused at
    activation (a real export gets its own: see models/README.md)."""
    # Imported here: ort_reference imports onnxruntime, which only the
    # builders that call this need.
    from ort_reference import Bundle

    bundle = Bundle(out_dir)
    canaries = []
    for text in CANARY_CANDIDATES:
        logits = bundle.run_single(bundle.encode(text)).astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        if probs[order[0]] - probs[order[1]] >= CANARY_MARGIN:
            canaries.append({"text": text, "label": bundle.labels[int(order[0])]})
    write_json(os.path.join(out_dir, "canary.json"), {"from": "ONNX Runtime at bundle build", "texts": canaries})
    return canaries
