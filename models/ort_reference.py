#!/usr/bin/env python3
"""Numeric reference for a model bundle: HF tokenizers + ONNX Runtime.

    python models/ort_reference.py --model DIR [--batch] [--texts-file F | TEXT ...]

Each text is tokenized with the bundle's tokenizer.json (truncated to
tokenizer_config.json's model_max_length, 512) and run through model.onnx with
ONNX Runtime on one thread. By default every text runs alone (batch 1). With
--batch all texts run in one batch, right-padded with config.json's
pad_token_id and attention_mask 0 on the padding; then each item also carries
"padded_ids" and "attention_mask", and the largest difference to the
batch-1 logits is reported on stderr.

Prints a JSON list: [{"text", "ids", "logits", "probs": {label: p}}].

--texts-file: a JSON list of strings, or else one text per non-empty line.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

DEFAULT_TEXTS = [
    "I love this, thank you!",
    "this is broken and I hate it",
    "what time is the meeting",
    "this is not good",
    "I don't love it",
]


class Bundle:
    def __init__(self, model_dir, optimize=True):
        self.dir = model_dir
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as fh:
            self.config = json.load(fh)
        tc_path = os.path.join(model_dir, "tokenizer_config.json")
        tc = {}
        if os.path.exists(tc_path):
            with open(tc_path, encoding="utf-8") as fh:
                tc = json.load(fh)
        self.max_length = int(tc.get("model_max_length", 512))
        self.pad_id = int(self.config.get("pad_token_id", 0))
        id2label = self.config["id2label"]
        self.labels = [id2label[str(i)] for i in range(len(id2label))]

        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        so.log_severity_level = 3
        self.session = ort.InferenceSession(
            os.path.join(model_dir, "model.onnx"), sess_options=so, providers=["CPUExecutionProvider"]
        )

    def encode(self, text):
        return list(self.tokenizer.encode(text).ids)

    def run(self, ids_rows, mask_rows):
        ids = np.asarray(ids_rows, dtype=np.int64)
        mask = np.asarray(mask_rows, dtype=np.int64)
        (logits,) = self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})
        return logits.astype(np.float32)

    def run_single(self, ids):
        return self.run([ids], [[1] * len(ids)])[0]

    def run_batch(self, id_lists):
        width = max(len(x) for x in id_lists)
        padded = [x + [self.pad_id] * (width - len(x)) for x in id_lists]
        masks = [[1] * len(x) + [0] * (width - len(x)) for x in id_lists]
        return padded, masks, self.run(padded, masks)

    def probs(self, logits):
        z = np.asarray(logits, dtype=np.float64)
        e = np.exp(z - z.max())
        p = e / e.sum()
        return {label: float(p[i]) for i, label in enumerate(self.labels)}

    def label(self, logits):
        return self.labels[int(np.argmax(logits))]


def read_texts(path):
    with open(path, encoding="utf-8") as fh:
        data = fh.read()
    try:
        texts = json.loads(data)
        if isinstance(texts, list) and all(isinstance(t, str) for t in texts):
            return texts
    except json.JSONDecodeError:
        pass
    return [line for line in data.splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="bundle directory")
    ap.add_argument("--texts-file", help="JSON list of strings or one text per line")
    ap.add_argument("--batch", action="store_true", help="run all texts as one padded batch")
    ap.add_argument("--no-opt", action="store_true", help="disable ORT graph optimizations")
    ap.add_argument("texts", nargs="*")
    args = ap.parse_args()

    texts = list(args.texts)
    if args.texts_file:
        texts += read_texts(args.texts_file)
    if not texts:
        texts = DEFAULT_TEXTS

    b = Bundle(args.model, optimize=not args.no_opt)
    id_lists = [b.encode(t) for t in texts]
    single = [b.run_single(ids) for ids in id_lists]

    out = []
    if args.batch:
        padded, masks, logits = b.run_batch(id_lists)
        diff = float(np.max(np.abs(np.stack(single) - logits)))
        print(f"batch vs batch-1 max |diff| = {diff:.3g}", file=sys.stderr)
        for t, ids, pids, m, lg in zip(texts, id_lists, padded, masks, logits):
            out.append({"text": t, "ids": ids, "padded_ids": pids, "attention_mask": m,
                        "logits": [float(x) for x in lg], "probs": b.probs(lg)})
    else:
        for t, ids, lg in zip(texts, id_lists, single):
            out.append({"text": t, "ids": ids, "logits": [float(x) for x in lg], "probs": b.probs(lg)})
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
