#!/usr/bin/env python3
"""Build the default bundle: the VADER sentiment lexicon compiled into a small
ONNX graph plus a word-level HF tokenizer.

    python models/build_default.py --out DIR

This is not a neural network. The graph looks up a per-token valence from the
VADER lexicon (vaderSentiment 3.3.2, MIT) and re-implements the main VADER
rules with tensor ops:

* negation: a negation word (VADER's NEGATE list) within the 3 preceding tokens
  multiplies the valence by N_SCALAR = -0.74 (once per negation word, counted
  with a CumSum window); "no" negates the next 2 tokens; "least" (not "at
  least") negates the next token;
* boosters/dampeners (BOOSTER_DICT) 1, 2 or 3 tokens before a lexicon word add
  +/-0.293 (x1, x0.95, x0.9) to its magnitude; "kind of"/"sort of" dampen;
* "never so/this X" and "so/this X" are emphasised (x1.25) rather than
  negated, "without (a) doubt" does not negate, as in VADER;
* "no" followed by a lexicon word and "kind" followed by "of" lose their own
  valence;
* contrastive "but": valence before the first "but" x0.5, after it x1.5;
* "!" (up to 4, +0.292 each) and "??"/"???" emphasis;
* emoji: each single-code-point emoji of VADER's emoji lexicon gets the
  valence VADER gives to its textual description;
* compound = s / sqrt(s^2 + 15), then three logits whose argmax reproduces
  VADER's usual thresholds (compound >= 0.05 positive, <= -0.05 negative).

Not reproduced: ALL-CAPS emphasis (the tokenizer lowercases), multi-word
idioms ("the shit", "bad ass", "yeah right"...), and VADER's exact word
positions (the tokenizer drops most punctuation, as VADER strips it, but
positions can still differ in corner cases).
"""

import argparse
import os
import sys
import unicodedata

import numpy as np
from onnx import TensorProto
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

import vaderSentiment
from vaderSentiment import vaderSentiment as vs

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

MODEL_NAME = "llma/vader-lexicon-sentiment"
MAX_LEN = 512
LOGIT_SCALE = 12.0  # k: logits = k * (margin); softmax is confident away from the 0.05 thresholds
THRESHOLD = 0.05
ALPHA = 15.0  # VADER normalize() alpha
MAX_NEG_COUNT = 4

PAD, UNK = "[PAD]", "[UNK]"

# Characters that have a meaning inside a regex for onig (python tokenizers)
# or fancy-regex (Rust tokenizers built for wasm). '<' and '>' must NOT be
# escaped: fancy-regex reads \< and \> as word boundaries.
_REGEX_META = set("\\.+*?()|[]{}^$")

WORD_RE = r"[\p{L}\p{M}\p{N}_]+(?:['\-][\p{L}\p{M}\p{N}_]+)*"
# Kept single characters: ! and ? (VADER's punctuation emphasis) and symbols
# (emoji are \p{So}). Other punctuation is dropped, as VADER strips it.
OTHER_RE = r"[!?]|\p{S}"


def regex_escape(s):
    return "".join("\\" + c if c in _REGEX_META else c for c in s)


def normalize_text(s):
    return unicodedata.normalize("NFKC", s).replace("\u2019", "'").lower()


def load_lexicon():
    path = os.path.join(os.path.dirname(vaderSentiment.__file__), "vader_lexicon.txt")
    entries = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            word, measure = line.strip().split("\t")[0:2]
            # Same keys VADER uses (it lowercases the text it looks up; for
            # upper-case variants like ':D' vs ':d' we keep the first one).
            key = normalize_text(word)
            entries.setdefault(key, float(measure))
    return path, entries


def vader_raw_sentiments(analyzer, text):
    """The per-word valences VADER computes for `text` (before summing)."""
    sentitext = vs.SentiText(text)
    sentiments = []
    words = sentitext.words_and_emoticons
    for i, item in enumerate(words):
        if item.lower() in vs.BOOSTER_DICT:
            sentiments.append(0)
            continue
        if i < len(words) - 1 and item.lower() == "kind" and words[i + 1].lower() == "of":
            sentiments.append(0)
            continue
        sentiments = analyzer.sentiment_valence(0, sentitext, item, i, sentiments)
    return analyzer._but_check(words, sentiments)


def build_pattern(emoticons):
    emo = "|".join(regex_escape(e) for e in sorted(emoticons, key=lambda e: (-len(e), e)))
    # An emoticon only counts when it is a whole whitespace-separated token,
    # as in VADER ("word:)" is not split into an emoticon).
    return rf"(?<!\S)(?:{emo})(?!\S)|{WORD_RE}|{OTHER_RE}"


def make_tokenizer(vocab, pattern):
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace("\u2019", "'"), normalizers.Lowercase()]
    )
    # invert=True + "removed": the regex matches the tokens to keep, everything
    # between matches (whitespace, most punctuation) is dropped.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)
    tok.add_special_tokens([PAD, UNK])
    return tok


def pre_tokenize(tok, text):
    return [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text))]


def build_vocab_and_tables():
    lex_path, lexicon = load_lexicon()
    # Emoticon alternation: lexicon entries that the word regex does not cover
    # as a single token (contain punctuation) and have no whitespace.
    import re

    simple_word = re.compile(r"^[\w]+(?:['\-][\w]+)*$")
    emoticons = [w for w in lexicon if not simple_word.match(w) and not any(c.isspace() for c in w)]
    pattern = build_pattern(emoticons)
    probe = make_tokenizer({PAD: 0, UNK: 1}, pattern)

    analyzer = vs.SentimentIntensityAnalyzer()

    tokens = {}  # token -> dict of features

    def feat(tok_text):
        return tokens.setdefault(tok_text, {})

    skipped = []
    for word, val in lexicon.items():
        if pre_tokenize(probe, word) != [word]:
            skipped.append(word)
            continue
        feat(word)["valence"] = val
        feat(word)["lex"] = 1.0

    for w in vs.NEGATE:
        if pre_tokenize(probe, w) == [w]:
            feat(w)["neg"] = 1.0
    for w, b in vs.BOOSTER_DICT.items():
        if pre_tokenize(probe, w) == [w]:
            feat(w)["boost"] = b
    feat("but")["but"] = 1.0
    feat("no")["no"] = 1.0
    feat("least")["least"] = 1.0
    feat("at")["atvery"] = 1.0
    feat("very")["atvery"] = 1.0
    feat("kind")["kind"] = 1.0
    feat("kind")["kindsort"] = 1.0
    feat("sort")["kindsort"] = 1.0
    feat("of")["of"] = 1.0
    feat("never")["never"] = 1.0
    feat("so")["sothis"] = 1.0
    feat("this")["sothis"] = 1.0
    feat("without")["without"] = 1.0
    feat("doubt")["doubt"] = 1.0
    feat("!")["excl"] = 1.0
    feat("?")["qm"] = 1.0

    # Emoji: VADER replaces each emoji code point by its description and
    # scores those words; give the emoji token the summed valence.
    n_emoji = 0
    for emoji, desc in sorted(analyzer.emojis.items()):
        if len(emoji) != 1 or normalize_text(emoji) != emoji:
            continue
        if pre_tokenize(probe, emoji) != [emoji] or emoji in tokens:
            continue
        val = float(sum(vader_raw_sentiments(analyzer, desc)))
        if abs(val) < 1e-9:
            continue
        feat(emoji)["valence"] = round(val, 6)
        feat(emoji)["lex"] = 1.0
        n_emoji += 1

    words = sorted(tokens)
    vocab = {PAD: 0, UNK: 1}
    for w in words:
        vocab[w] = len(vocab)

    names = ["valence", "lex", "neg", "no", "least", "atvery", "boost", "kind", "kindsort",
             "of", "but", "excl", "qm", "never", "sothis", "without", "doubt"]
    tables = {n: np.zeros(len(vocab), dtype=np.float32) for n in names}
    for w, f in tokens.items():
        for n, v in f.items():
            tables[n][vocab[w]] = v
    stats = {
        "lexicon_path": lex_path,
        "lexicon_entries": len(lexicon),
        "lexicon_skipped": skipped,
        "emoji_tokens": n_emoji,
        "vocab_size": len(vocab),
    }
    return vocab, pattern, tables, stats


def build_graph(tables):
    g = GraphBuilder()
    F = TensorProto.FLOAT
    mask = g.op("Cast", ["attention_mask"], name="mask_f", to=F)

    feats = {}
    for name, table in tables.items():
        t = g.init(f"table_{name}", table)
        gathered = g.op("Gather", [t, "input_ids"], name=f"gather_{name}", axis=0)
        feats[name] = g.op("Mul", [gathered, mask], name=f"{name}_masked")

    zero_pads = {}

    def shift(x, k, name):
        """y[:, t] = x[:, t-k] (k > 0), zeros where t-k < 0."""
        pads = g.i64([0, k, 0, 0])
        p = g.op("Pad", [x, pads, g.f(0.0)], name=f"{name}_pad", mode="constant")
        return g.op("Slice", [p, g.i64([0]), g.i64([-k]), g.i64([1])], name=name)

    def shift_back(x, k, name):
        """y[:, t] = x[:, t+k], zeros past the end."""
        pads = g.i64([0, 0, 0, k])
        p = g.op("Pad", [x, pads, g.f(0.0)], name=f"{name}_pad", mode="constant")
        return g.op("Slice", [p, g.i64([k]), g.i64([np.iinfo(np.int64).max]), g.i64([1])], name=name)

    axis1 = g.i64(1)  # CumSum axis: scalar tensor (tract requires rank 0)

    def mul(a, b, name):
        return g.op("Mul", [a, b], name=name)

    def add(a, b, name):
        return g.op("Add", [a, b], name=name)

    def sub(a, b, name):
        return g.op("Sub", [a, b], name=name)

    one = g.f(1.0)

    # 1. own valence, with "no <lexicon word>" and "kind of" zeroing the first word
    lex_next = shift_back(feats["lex"], 1, "lex_next")
    of_next = shift_back(feats["of"], 1, "of_next")
    zero = add(mul(feats["no"], lex_next, "no_before_lex"),
               mul(feats["kind"], of_next, "kind_before_of"), "zeroed")
    keep = sub(one, zero, "keep")
    v1 = mul(feats["valence"], keep, "valence_kept")
    applies = mul(feats["lex"], keep, "rule_applies")

    # 2. boosters / dampeners in the 3 preceding tokens, signed like the valence
    b1 = shift(feats["boost"], 1, "boost_prev1")
    b2 = mul(shift(feats["boost"], 2, "boost_prev2"), g.f(0.95), "boost_prev2_w")
    b3 = mul(shift(feats["boost"], 3, "boost_prev3"), g.f(0.9), "boost_prev3_w")
    bsum = add(add(b1, b2, "boost_12"), b3, "boost_sum")
    is_negative = g.op("Less", [v1, g.f(0.0)], name="valence_is_negative")
    sign = g.op("Where", [is_negative, g.f(-1.0), one], name="valence_sign")
    boost = mul(mul(bsum, sign, "boost_signed"), applies, "boost_applied")
    v2 = add(v1, boost, "valence_boosted")

    # 3. negation: count negation words in the window t-3..t-1 with a CumSum
    cs_neg = g.op("CumSum", [feats["neg"], axis1], name="neg_cumsum")
    win_neg = sub(shift(cs_neg, 1, "neg_cs_prev1"), shift(cs_neg, 4, "neg_cs_prev4"), "neg_window")
    # VADER's exceptions: "never so/this X" and "without (a) doubt" do not
    # negate; "so/this X" (and "never so ... X") multiply by 1.25 instead.
    never2 = shift(feats["never"], 2, "never_prev2")
    sothis1 = shift(feats["sothis"], 1, "sothis_prev1")
    special2 = mul(never2, sothis1, "never_so_d2")
    without_doubt2 = mul(shift(feats["without"], 2, "without_prev2"), shift(feats["doubt"], 1, "doubt_prev1"),
                         "without_doubt_d2")
    has3 = mul(shift(mask, 3, "has_prev3"), sub(one, shift(feats["lex"], 3, "lex_prev3"), "not_lex3"), "block3")
    never_so3 = mul(shift(feats["never"], 3, "never_prev3"), shift(feats["sothis"], 2, "sothis_prev2"), "never_so_d3")
    special3 = mul(has3, g.op("Min", [add(never_so3, sothis1, "so_any_d3"), one], name="so_d3"), "special_d3")
    doubt12 = g.op("Min", [add(shift(feats["doubt"], 2, "doubt_prev2"), shift(feats["doubt"], 1, "doubt_prev1b"),
                               "doubt_12"), one], name="doubt_any_12")
    without_doubt3 = mul(shift(feats["without"], 3, "without_prev3"), doubt12, "without_doubt_d3")
    corr3 = mul(shift(feats["neg"], 3, "neg_prev3"),
                g.op("Min", [add(special3, without_doubt3, "skip3_sum"), one], name="skip3"), "neg_skip_d3")
    corr2 = add(special2, without_doubt2, "neg_skip_d2")
    win_neg = sub(sub(win_neg, corr2, "neg_window_c2"), corr3, "neg_window_c3")
    emph = mul(add(one, mul(special2, g.f(0.25), "so_emph2_d"), "so_emph2"),
               add(one, mul(special3, g.f(0.25), "so_emph3_d"), "so_emph3"), "so_emphasis")
    cs_no = g.op("CumSum", [feats["no"], axis1], name="no_cumsum")
    win_no = sub(shift(cs_no, 1, "no_cs_prev1"), shift(cs_no, 3, "no_cs_prev3"), "no_window")
    no_any = g.op("Min", [win_no, one], name="no_any")
    not_at_very = sub(one, shift(feats["atvery"], 2, "atvery_prev2"), "not_at_very")
    least_neg = mul(shift(feats["least"], 1, "least_prev1"), not_at_very, "least_negates")
    count = add(add(win_neg, no_any, "neg_count_a"), least_neg, "neg_count")
    count = g.op("Min", [count, g.f(float(MAX_NEG_COUNT))], name="neg_count_clamped")
    count_i = g.op("Cast", [count], name="neg_count_i64", to=TensorProto.INT64)
    powers = np.array([vs.N_SCALAR ** i for i in range(MAX_NEG_COUNT + 1)], dtype=np.float32)
    neg_factor = g.op("Gather", [g.init("negation_factors", powers), count_i], name="negation_factor", axis=0)
    v3 = mul(mul(v2, neg_factor, "valence_negated_raw"), emph, "valence_negated")

    # 4. "kind of" / "sort of" right before a lexicon word: += B_DECR (VADER's bigram rule)
    bigram = mul(shift(feats["kindsort"], 2, "kindsort_prev2"), shift(feats["of"], 1, "of_prev1"), "kind_of")
    bigram = mul(bigram, applies, "kind_of_applied")
    v4 = add(v3, mul(bigram, g.f(vs.B_DECR), "kind_of_damp"), "valence_damped")

    # 5. contrastive "but": x0.5 before the first "but", x1.5 after it
    cs_but = g.op("CumSum", [feats["but"], axis1], name="but_cumsum")
    after_but = g.op("Min", [cs_but, one], name="after_but")
    axes1 = g.i64([1])
    has_but = g.op("Min", [g.op("ReduceSum", [feats["but"], axes1], name="but_total", keepdims=1), one],
                   name="has_but")
    but_factor = add(one, mul(has_but, sub(after_but, g.f(0.5), "after_but_m05"), "but_delta"), "but_factor")
    v5 = mul(v4, but_factor, "valence_final")

    # 6. sum over the sequence + punctuation emphasis
    s = g.op("ReduceSum", [mul(v5, mask, "valence_masked"), axes1], name="valence_sum", keepdims=1)
    excl = g.op("ReduceSum", [feats["excl"], axes1], name="excl_count", keepdims=1)
    ep = mul(g.op("Min", [excl, g.f(4.0)], name="excl_clamped"), g.f(0.292), "excl_amp")
    qm = g.op("ReduceSum", [feats["qm"], axes1], name="qm_count", keepdims=1)
    qm_amp = g.op(
        "Where",
        [g.op("Greater", [qm, g.f(3.0)], name="qm_gt3"), g.f(0.96), mul(qm, g.f(0.18), "qm_scaled")],
        name="qm_amp_raw",
    )
    qm_amp = g.op("Where", [g.op("Greater", [qm, one], name="qm_gt1"), qm_amp, g.f(0.0)], name="qm_amp")
    amp = add(ep, qm_amp, "punct_amp")
    signed_amp = g.op(
        "Where",
        [g.op("Greater", [s, g.f(0.0)], name="sum_pos"), amp,
         g.op("Where", [g.op("Less", [s, g.f(0.0)], name="sum_neg"), g.op("Neg", [amp], name="amp_neg"),
                        g.f(0.0)], name="amp_if_neg")],
        name="signed_amp",
    )
    s2 = add(s, signed_amp, "valence_sum_emph")

    # 7. VADER normalisation and logits
    denom = g.op("Sqrt", [add(mul(s2, s2, "sum_sq"), g.f(ALPHA), "sum_sq_alpha")], name="norm_denom")
    compound = g.op("Div", [s2, denom], name="compound")
    k = g.f(LOGIT_SCALE)
    thr = g.f(THRESHOLD)
    neg_logit = mul(sub(g.op("Neg", [compound], name="compound_neg"), thr, "neg_margin"), k, "logit_negative")
    pos_logit = mul(sub(compound, thr, "pos_margin"), k, "logit_positive")
    neu_logit = mul(sub(thr, g.op("Abs", [compound], name="compound_abs"), "neu_margin"), k, "logit_neutral")
    logits = g.op("Concat", [neg_logit, neu_logit, pos_logit], name="logits_concat", axis=1)
    return make_model(g, "vader_lexicon_sentiment", logits, doc=__doc__.strip().splitlines()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output bundle directory")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    vocab, pattern, tables, stats = build_vocab_and_tables()
    tok = make_tokenizer(vocab, pattern)
    tok.save(os.path.join(args.out, "tokenizer.json"), pretty=True)

    model = build_graph(tables)
    save_model(model, args.out)

    id2label, label2id = label_maps()
    write_json(
        os.path.join(args.out, "config.json"),
        {
            "_name_or_path": MODEL_NAME,
            "architectures": ["VaderLexiconForSequenceClassification"],
            "model_type": "vader-lexicon",
            "id2label": id2label,
            "label2id": label2id,
            "pad_token_id": 0,
            "unk_token_id": 1,
            "vocab_size": len(vocab),
            "max_position_embeddings": MAX_LEN,
            "problem_type": "single_label_classification",
            "vader_version": "3.3.2",
            "logit_scale": LOGIT_SCALE,
            "neutral_threshold": THRESHOLD,
        },
    )
    write_tokenizer_config(
        args.out,
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "pad_token": PAD,
            "unk_token": UNK,
            "do_lower_case": True,
        },
        model_max_length=MAX_LEN,
    )
    write_canaries(args.out)
    print(
        f"wrote {args.out}: vocab {stats['vocab_size']} "
        f"(lexicon {stats['lexicon_entries']}, skipped {len(stats['lexicon_skipped'])}: "
        f"{stats['lexicon_skipped']}, emoji tokens {stats['emoji_tokens']})"
    )


if __name__ == "__main__":
    main()
