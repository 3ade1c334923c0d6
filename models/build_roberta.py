#!/usr/bin/env python3
"""Build a RoBERTa sequence-classification bundle with seeded random weights,
laid out like the HF/optimum opset-14 ONNX export of
cardiffnlp/twitter-roberta-base-sentiment-latest.

    python models/build_roberta.py --shape tiny|base --cumsum int64|int32 --out DIR --seed N

The weights are random (normal; std 0.5 for tiny, 0.02 = HF's
initializer_range for base; --init-std overrides): the labels it predicts
mean nothing. The point is the graph: the same operators, dtypes and tensor shapes
as the real export, so the runtime (tract) can be tested on it, and a
byte-level BPE tokenizer.json of the same kind as the real one.

* tiny: 2 layers, hidden 32, 4 heads, intermediate 64, vocab = tokenizer size
  (2000).
* base: 12 layers, hidden 768, 12 heads, intermediate 3072, vocab 50265
  (about 500 MB, inline weights); its tokenizer is trained as far as the
  corpus allows (min_frequency 1, about 30k tokens, all ids < 50265).

--cumsum selects how position ids are computed from input_ids:
  int64: Cast(mask, INT64) -> CumSum (int64) -> Cast INT32, as torch exports
         `torch.cumsum(mask, dim=1).type_as(mask)`;
  int32: CumSum directly over the int32 mask.
"""

import argparse
import math
import os
import random
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # deterministic, modest CPU

import numpy as np  # noqa: E402
from onnx import TensorProto  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

import vaderSentiment  # noqa: E402
from vaderSentiment import vaderSentiment as vs  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_common import (  # noqa: E402
    GraphBuilder,
    label_maps,
    make_model,
    save_model,
    write_json,
    write_canaries,
    write_tokenizer_config,
)

INIT_STD = 0.02  # HF initializer_range

SHAPES = {
    # std: default init std. HF's initializer_range 0.02 makes a 2-layer,
    # 32-wide model almost input-independent (logits equal to ~1e-4 across
    # texts), which would make a 1e-4 comparison meaningless; 0.5 gives
    # logits of order 1 that differ clearly between texts.
    "tiny": dict(layers=2, hidden=32, heads=4, intermediate=64, vocab=None, tok_vocab=2000, min_freq=2,
                 name="llma/roberta-tiny-random", std=0.5),
    "base": dict(layers=12, hidden=768, heads=12, intermediate=3072, vocab=50265, tok_vocab=50265, min_freq=1,
                 name="llma/roberta-base-shape-random", std=INIT_STD),
}
MAX_POSITIONS = 514
MODEL_MAX_LENGTH = 512
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID = 1, 0, 2, 3, 4
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
LN_EPS = 1e-5
CORPUS_SEED = 20240521  # the tokenizer corpus does not depend on --seed


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------

SUBJECTS = ["I", "you", "we", "they", "my manager", "the assistant", "this model", "the team", "she", "he",
            "our users", "the customer", "everyone", "nobody", "my friend", "the answer", "this code"]
VERBS = ["love", "hate", "like", "need", "want", "fixed", "broke", "explained", "wrote", "read", "tried",
         "enjoyed", "ignored", "appreciate", "dislike", "expected", "reviewed", "deployed", "tested"]
OBJECTS = ["the report", "this answer", "your code", "the meeting", "the new feature", "the documentation",
           "my essay", "the summary", "the translation", "the function", "the weather", "this movie",
           "the results", "the deadline", "the prompt", "that idea", "the bug", "the dashboard"]
ADVERBS = ["really", "very", "not", "never", "kind of", "absolutely", "barely", "so", "quite", "totally",
           "somewhat", "extremely", "slightly", "honestly", "actually"]
PROMPTS = [
    "Can you summarize this article for me?",
    "Please translate the following paragraph into French.",
    "Write a Python function that reverses a list.",
    "What time is the meeting tomorrow?",
    "Explain how transformers work in simple terms.",
    "Give me three ideas for a birthday party.",
    "Why does my program crash with a segmentation fault?",
    "How many tokens does this prompt use?",
    "Rewrite this email so it sounds more polite.",
    "List the capitals of European countries.",
    "Thanks, that works perfectly!",
    "This answer is wrong and useless.",
    "I don't understand, could you explain it again?",
    "Great job, that was really helpful :)",
]


def training_corpus():
    """Deterministic English-ish corpus: VADER lexicon words and emoji
    descriptions inside templated sentences, plus LLM-style prompts."""
    rng = random.Random(CORPUS_SEED)
    lex_path = os.path.join(os.path.dirname(vaderSentiment.__file__), "vader_lexicon.txt")
    words = []
    with open(lex_path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                words.append(line.split("\t")[0])
    emoji_path = os.path.join(os.path.dirname(vaderSentiment.__file__), "emoji_utf8_lexicon.txt")
    emojis = []
    with open(emoji_path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                emojis.append((parts[0], parts[1]))
    extra = list(vs.NEGATE) + list(vs.BOOSTER_DICT)

    lines = []
    for w in words + extra:
        lines.append(w)
        lines.append(f"This is {w}.")
        lines.append(f"{rng.choice(SUBJECTS)} said it was {w} and {rng.choice(words)}")
    for e, desc in emojis:
        lines.append(f"{e} {desc}")
        lines.append(f"I sent a {desc} {e} to {rng.choice(SUBJECTS)}.")
    for _ in range(6000):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(ADVERBS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        tail = rng.choice(["", ".", "!", "?", "!!", " :)", " :(", ", thanks", ", but it is " + rng.choice(words)])
        s = s + tail
        lines.append(s[0].upper() + s[1:] if rng.random() < 0.5 else s)
    for _ in range(20):
        lines.extend(PROMPTS)
    return lines


def build_tokenizer(vocab_size, min_frequency=2):
    tok = Tokenizer(models.BPE(dropout=None, unk_token=None, continuing_subword_prefix="",
                               end_of_word_suffix="", fuse_unk=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    special = [
        AddedToken("<s>", special=True, normalized=False),
        AddedToken("<pad>", special=True, normalized=False),
        AddedToken("</s>", special=True, normalized=False),
        AddedToken("<unk>", special=True, normalized=False),
        AddedToken("<mask>", special=True, normalized=False, lstrip=True),
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(
        sep=("</s>", EOS_ID), cls=("<s>", BOS_ID), trim_offsets=True, add_prefix_space=False
    )
    for i, t in enumerate(SPECIALS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    tok.no_truncation()
    tok.no_padding()
    return tok


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------

class Init:
    def __init__(self, seed, std=INIT_STD):
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.std = std

    def normal(self, shape, std=None):
        std = self.std if std is None else std
        return (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def bias(self, n):
        return self.normal((n,), std=self.std / 2)

    def ln(self, n):
        gamma = (1.0 + self.normal((n,), std=0.02)).astype(np.float32)
        beta = self.normal((n,), std=0.01)
        return gamma, beta


# --------------------------------------------------------------------------
# Graph
# --------------------------------------------------------------------------

def build_graph(shape, vocab, cumsum, seed, std=INIT_STD):
    hidden, heads, inter, layers = shape["hidden"], shape["heads"], shape["intermediate"], shape["layers"]
    head_dim = hidden // heads
    init = Init(seed, std)
    g = GraphBuilder()
    I64, I32, F = TensorProto.INT64, TensorProto.INT32, TensorProto.FLOAT

    def layer_norm(x, prefix, gamma, beta):
        gi = g.init(f"{prefix}.weight", gamma)
        bi = g.init(f"{prefix}.bias", beta)
        mean = g.op("ReduceMean", [x], name=f"{prefix}/ReduceMean", axes=[-1], keepdims=1)
        d = g.op("Sub", [x, mean], name=f"{prefix}/Sub")
        sq = g.op("Pow", [d, g.f(2.0)], name=f"{prefix}/Pow")
        var = g.op("ReduceMean", [sq], name=f"{prefix}/ReduceMean_1", axes=[-1], keepdims=1)
        std = g.op("Sqrt", [g.op("Add", [var, g.f(LN_EPS)], name=f"{prefix}/Add")], name=f"{prefix}/Sqrt")
        y = g.op("Div", [d, std], name=f"{prefix}/Div")
        y = g.op("Mul", [y, gi], name=f"{prefix}/Mul")
        return g.op("Add", [y, bi], name=f"{prefix}/Add_1")

    def linear(x, prefix, n_in, n_out):
        # 3-D Linear as torch exports it: MatMul with the transposed weight, then Add.
        w = g.init(f"{prefix}.weight_T", init.normal((n_in, n_out)))
        b = g.init(f"{prefix}.bias", init.bias(n_out))
        return g.op("Add", [b, g.op("MatMul", [x, w], name=f"{prefix}/MatMul")], name=f"{prefix}/Add")

    def gemm(x, prefix, n_in, n_out):
        # 2-D Linear (classification head): Gemm with transB=1, weight as [out, in].
        w = g.init(f"{prefix}.weight", init.normal((n_out, n_in)))
        b = g.init(f"{prefix}.bias", init.bias(n_out))
        return g.op("Gemm", [x, w, b], name=f"{prefix}/Gemm", alpha=1.0, beta=1.0, transB=1)

    def batch_seq_dims(x, prefix):
        shp = g.op("Shape", [x], name=f"{prefix}/Shape")
        b = g.op("Gather", [shp, g.i64(0)], name=f"{prefix}/Gather", axis=0)
        s = g.op("Gather", [shp, g.i64(1)], name=f"{prefix}/Gather_1", axis=0)
        b = g.op("Unsqueeze", [b, g.i64([0])], name=f"{prefix}/Unsqueeze")
        s = g.op("Unsqueeze", [s, g.i64([0])], name=f"{prefix}/Unsqueeze_1")
        return b, s

    # ---- embeddings
    word_emb = init.normal((vocab, hidden))
    word_emb[PAD_ID] = 0.0  # padding_idx row is zero in HF init
    pos_emb = init.normal((MAX_POSITIONS, hidden))
    pos_emb[PAD_ID] = 0.0
    tt_emb = init.normal((1, hidden))
    emb_ln = init.ln(hidden)

    # position ids, as RobertaEmbeddings.create_position_ids_from_input_ids
    p = "/roberta/embeddings"
    is_pad = g.op("Equal", ["input_ids", g.i64(PAD_ID)], name=f"{p}/Equal")
    not_pad = g.op("Not", [is_pad], name=f"{p}/Not")
    mask_i32 = g.op("Cast", [not_pad], name=f"{p}/Cast", to=I32)
    axis1 = g.i64(1)  # scalar axis, as torch exports it (tract wants rank 0)
    if cumsum == "int64":
        m64 = g.op("Cast", [mask_i32], name=f"{p}/Cast_1", to=I64)
        cs64 = g.op("CumSum", [m64, axis1], name=f"{p}/CumSum")
        cs = g.op("Cast", [cs64], name=f"{p}/Cast_2", to=I32)
    else:
        cs = g.op("CumSum", [mask_i32, axis1], name=f"{p}/CumSum")
    inc = g.op("Mul", [cs, mask_i32], name=f"{p}/Mul")
    inc64 = g.op("Cast", [inc], name=f"{p}/Cast_3", to=I64)
    position_ids = g.op("Add", [inc64, g.i64(PAD_ID)], name=f"{p}/Add")

    we = g.op("Gather", [g.init("roberta.embeddings.word_embeddings.weight", word_emb), "input_ids"],
              name=f"{p}/word_embeddings/Gather", axis=0)
    # token_type_ids are all zero: the export reduces to adding row 0
    h = g.op("Add", [we, g.init("roberta.embeddings.token_type_embeddings.row0", tt_emb[0])], name=f"{p}/Add_1")
    pe = g.op("Gather", [g.init("roberta.embeddings.position_embeddings.weight", pos_emb), position_ids],
              name=f"{p}/position_embeddings/Gather", axis=0)
    h = g.op("Add", [h, pe], name=f"{p}/Add_2")
    h = layer_norm(h, "roberta.embeddings.LayerNorm", *emb_ln)

    # ---- extended attention mask: (1 - mask[:, None, None, :]) * finfo(float32).min
    ext = g.op("Unsqueeze", ["attention_mask", g.i64([1])], name="/roberta/Unsqueeze")
    ext = g.op("Unsqueeze", [ext, g.i64([2])], name="/roberta/Unsqueeze_1")
    ext = g.op("Cast", [ext], name="/roberta/Cast", to=F)
    ext = g.op("Sub", [g.f(1.0), ext], name="/roberta/Sub")
    ext = g.op("Mul", [ext, g.f(np.finfo(np.float32).min)], name="/roberta/Mul")

    scale = g.f(math.sqrt(head_dim))
    for li in range(layers):
        p = f"roberta.encoder.layer.{li}"
        q = linear(h, f"{p}.attention.self.query", hidden, hidden)
        k = linear(h, f"{p}.attention.self.key", hidden, hidden)
        v = linear(h, f"{p}.attention.self.value", hidden, hidden)

        def split_heads(x, name):
            b, s = batch_seq_dims(x, f"{name}/dims")
            shp = g.op("Concat", [b, s, g.i64([heads]), g.i64([head_dim])], name=f"{name}/Concat", axis=0)
            return g.op("Reshape", [x, shp], name=f"{name}/Reshape")

        q = g.op("Transpose", [split_heads(q, f"{p}.attention.self/q")], name=f"{p}.attention.self/Transpose",
                 perm=[0, 2, 1, 3])
        kt = g.op("Transpose", [split_heads(k, f"{p}.attention.self/k")],
                  name=f"{p}.attention.self/Transpose_1", perm=[0, 2, 3, 1])
        v = g.op("Transpose", [split_heads(v, f"{p}.attention.self/v")], name=f"{p}.attention.self/Transpose_2",
                 perm=[0, 2, 1, 3])
        scores = g.op("MatMul", [q, kt], name=f"{p}.attention.self/MatMul")
        scores = g.op("Div", [scores, scale], name=f"{p}.attention.self/Div")
        scores = g.op("Add", [scores, ext], name=f"{p}.attention.self/Add")
        probs = g.op("Softmax", [scores], name=f"{p}.attention.self/Softmax", axis=-1)
        ctx = g.op("MatMul", [probs, v], name=f"{p}.attention.self/MatMul_1")
        ctx = g.op("Transpose", [ctx], name=f"{p}.attention.self/Transpose_3", perm=[0, 2, 1, 3])
        b, s = batch_seq_dims(ctx, f"{p}.attention.self/ctx_dims")
        shp = g.op("Concat", [b, s, g.i64([hidden])], name=f"{p}.attention.self/Concat", axis=0)
        ctx = g.op("Reshape", [ctx, shp], name=f"{p}.attention.self/Reshape")

        att = linear(ctx, f"{p}.attention.output.dense", hidden, hidden)
        att = g.op("Add", [att, h], name=f"{p}.attention.output/Add")
        h = layer_norm(att, f"{p}.attention.output.LayerNorm", *init.ln(hidden))

        ff = linear(h, f"{p}.intermediate.dense", hidden, inter)
        # GELU(x) = x * 0.5 * (1 + erf(x / sqrt(2))), as exported
        e = g.op("Erf", [g.op("Div", [ff, g.f(1.4142135381698608)], name=f"{p}.intermediate/Div")],
                 name=f"{p}.intermediate/Erf")
        e = g.op("Add", [e, g.f(1.0)], name=f"{p}.intermediate/Add")
        ff = g.op("Mul", [g.op("Mul", [ff, e], name=f"{p}.intermediate/Mul"), g.f(0.5)],
                  name=f"{p}.intermediate/Mul_1")
        out = linear(ff, f"{p}.output.dense", inter, hidden)
        out = g.op("Add", [out, h], name=f"{p}.output/Add")
        h = layer_norm(out, f"{p}.output.LayerNorm", *init.ln(hidden))

    # ---- classification head on <s> (token 0)
    x = g.op("Gather", [h, g.i64(0)], name="/classifier/Gather", axis=1)
    x = gemm(x, "classifier.dense", hidden, hidden)
    x = g.op("Tanh", [x], name="/classifier/Tanh")
    logits = gemm(x, "classifier.out_proj", hidden, 3)
    return make_model(g, "main_graph", logits, doc=f"RoBERTa-shaped random model, seed {seed}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--cumsum", choices=["int64", "int32"], default="int64")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-std", type=float, default=None,
                    help="std of the random weights (default: 0.5 tiny, 0.02 base)")
    args = ap.parse_args()
    shape = SHAPES[args.shape]
    std = shape["std"] if args.init_std is None else args.init_std
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()

    tok = build_tokenizer(shape["tok_vocab"], shape["min_freq"])
    tok_vocab = tok.get_vocab_size(with_added_tokens=True)
    vocab = shape["vocab"] or tok_vocab
    assert tok_vocab <= vocab, (tok_vocab, vocab)
    tok.save(os.path.join(args.out, "tokenizer.json"), pretty=True)
    t1 = time.time()

    model = build_graph(shape, vocab, args.cumsum, args.seed, std)
    path = save_model(model, args.out)
    t2 = time.time()

    id2label, label2id = label_maps()
    write_json(
        os.path.join(args.out, "config.json"),
        {
            "_name_or_path": shape["name"],
            "architectures": ["RobertaForSequenceClassification"],
            "attention_probs_dropout_prob": 0.1,
            "bos_token_id": BOS_ID,
            "classifier_dropout": None,
            "eos_token_id": EOS_ID,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": shape["hidden"],
            "id2label": id2label,
            "initializer_range": std,
            "intermediate_size": shape["intermediate"],
            "label2id": label2id,
            "layer_norm_eps": LN_EPS,
            "max_position_embeddings": MAX_POSITIONS,
            "model_type": "roberta",
            "num_attention_heads": shape["heads"],
            "num_hidden_layers": shape["layers"],
            "pad_token_id": PAD_ID,
            "position_embedding_type": "absolute",
            "torch_dtype": "float32",
            "type_vocab_size": 1,
            "use_cache": True,
            "vocab_size": vocab,
            "llma_random_seed": args.seed,
            "llma_position_cumsum": args.cumsum,
        },
    )
    write_tokenizer_config(
        args.out,
        {
            "tokenizer_class": "RobertaTokenizer",
            "add_prefix_space": False,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "cls_token": "<s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
            "errors": "replace",
            "trim_offsets": True,
        },
        model_max_length=MODEL_MAX_LENGTH,
    )
    write_canaries(args.out)
    size = os.path.getsize(path)
    print(f"wrote {args.out}: {args.shape}, cumsum {args.cumsum}, seed {args.seed}, std {std}, model vocab {vocab}, "
          f"tokenizer vocab {tok_vocab}, model.onnx {size / 1e6:.1f} MB "
          f"(tokenizer {t1 - t0:.1f}s, graph {t2 - t1:.1f}s)")


if __name__ == "__main__":
    main()
