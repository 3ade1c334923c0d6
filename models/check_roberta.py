#!/usr/bin/env python3
"""Cross-check a RoBERTa bundle: an independent float64 numpy implementation
of HF RobertaForSequenceClassification (position ids from input_ids, masked
attention, GELU, LayerNorm, <s> head), fed with the ONNX initializers, against
ONNX Runtime, batch 1 and padded batch. Also prints how much the logits vary
between texts.

    python models/check_roberta.py --model DIR
"""

import argparse
import os
import sys
from math import erf

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ort_reference import DEFAULT_TEXTS, Bundle  # noqa: E402

TEXTS = DEFAULT_TEXTS + ["x", "ok \U0001F44D <mask> done", ""]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()

    b = Bundle(args.model)
    cfg = b.config
    W = {i.name: numpy_helper.to_array(i).astype(np.float64)
         for i in onnx.load(os.path.join(args.model, "model.onnx")).graph.initializer}
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = H // nh
    pad = cfg["pad_token_id"]
    eps = cfg["layer_norm_eps"]
    verf = np.vectorize(erf)

    def ln(x, p):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * W[p + ".weight"] + W[p + ".bias"]

    def lin(x, p):
        return x @ W[p + ".weight_T"] + W[p + ".bias"]

    def forward(ids, mask):
        ids = np.array(ids)
        mask = np.array(mask, dtype=np.float64)
        m = (ids != pad).astype(np.int64)
        pos = np.cumsum(m, 1) * m + pad
        x = (W["roberta.embeddings.word_embeddings.weight"][ids]
             + W["roberta.embeddings.token_type_embeddings.row0"]
             + W["roberta.embeddings.position_embeddings.weight"][pos])
        x = ln(x, "roberta.embeddings.LayerNorm")
        B, S = ids.shape
        ext = (1 - mask)[:, None, None, :] * np.finfo(np.float32).min
        for layer in range(cfg["num_hidden_layers"]):
            p = f"roberta.encoder.layer.{layer}"
            q, k, v = [lin(x, f"{p}.attention.self.{n}").reshape(B, S, nh, hd).transpose(0, 2, 1, 3)
                       for n in ("query", "key", "value")]
            s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + ext
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            c = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, H)
            x = ln(lin(c, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            f = lin(x, f"{p}.intermediate.dense")
            f = f * 0.5 * (1 + verf(f / np.sqrt(2)))
            x = ln(lin(f, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        h = np.tanh(x[:, 0] @ W["classifier.dense.weight"].T + W["classifier.dense.bias"])
        return h @ W["classifier.out_proj.weight"].T + W["classifier.out_proj.bias"]

    ids = [b.encode(t) for t in TEXTS]
    single = np.stack([b.run_single(i) for i in ids])
    ref = np.stack([forward([i], [[1] * len(i)])[0] for i in ids])
    padded, masks, batch = b.run_batch(ids)
    ref_b = forward(padded, masks)
    for t, i, lg in zip(TEXTS, ids, single):
        print(f"  {t!r:40} {len(i):3d} ids  logits {np.round(lg.astype(np.float64), 4).tolist()}  {b.label(lg)}")
    d1 = float(np.abs(single - ref).max())
    d2 = float(np.abs(batch - ref_b).max())
    d3 = float(np.abs(batch - single).max())
    print(f"max |ORT - numpy| batch-1 {d1:.2e}, padded batch {d2:.2e}; ORT batch vs batch-1 {d3:.2e}")
    print(f"logit std across texts: {np.round(single.std(0).astype(np.float64), 4).tolist()}")
    ok = d1 < 1e-4 and d2 < 1e-4 and float(single.std(0).max()) > 1e-3
    print("OK" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
