#!/usr/bin/env python3
"""The seed's way, measured for `make bench`: ONNX Runtime from Python.

    python models/ort_bench.py --model DIR --threads N --inputs DIR [--reps N]
        [--budget SECONDS] [--stats] [--batch-size 8]

--inputs is the directory models/gen_stream.py wrote (grid.json, sample.jsonl,
stream.jsonl). --threads 1 is one core; 0 lets ONNX Runtime use every core.

Measures, in this order, and prints one JSON object:

* load: InferenceSession creation (parse + graph optimisation), seconds;
* grid: per length and batch size, the wall and CPU time of each call
  (tokenize, pad to the longest, run), after a warm-up call (CPU: this
  thread's with one thread, the process's with more);
* stream: every user message of every generation of sample.jsonl classified
  one at a time (the seed's pipeline: extract, then tokenize + run per
  message), wall and CPU seconds;
* rss: resident set (VmRSS/VmHWM) before the session, after it, at the end.

With --stats it also reports, from the tokenizer alone (no inference), what
the whole stream (stream.jsonl) and the sample look like: message and token
counts, the hit rate a cache keyed by exact text would have, and the padded
(batch, length) shapes that several batching strategies would run.

Extraction mirrors the plugin's rules (plugin/src/extract.rs), which mirror
the seed's: user messages only, tool-result-only turns skipped, blocks joined
with one space, whitespace-only texts dropped, the last 50 messages and the
last 2000 characters of each kept.
"""

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

MAX_MESSAGES = 50
MAX_CHARS = 2000


# ---------------------------------------------------------------- extraction

def _block_text(block):
    if isinstance(block, str):
        return block
    if isinstance(block, dict):
        inner = block["text"] if "text" in block else block.get("content")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, list):
            return _join(inner)
    return None


def _join(blocks):
    return " ".join(t for t in (_block_text(b) for b in blocks) if t is not None)


def _user_text(message):
    if not isinstance(message, dict) or message.get("role") != "user" or "content" not in message:
        return None
    content = message["content"]
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        if content and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return None
        return _join(content)
    return None


def user_texts(ai_input):
    """The non-blank user messages of `$ai_input`, uncut."""
    if isinstance(ai_input, str):
        t = ai_input.lstrip()
        if t.startswith("[") or t.startswith("{"):
            try:
                decoded = json.loads(ai_input)
            except ValueError:
                decoded = None
            if isinstance(decoded, (list, dict)):
                return user_texts(decoded)
        texts = [ai_input]
    elif isinstance(ai_input, dict):
        texts = [t for t in [_user_text(ai_input)] if t is not None]
    elif isinstance(ai_input, list):
        texts = [t for t in (_user_text(m) for m in ai_input) if t is not None]
    else:
        texts = []
    return [t for t in texts if t.strip()]


def extract(ai_input):
    texts = user_texts(ai_input)[-MAX_MESSAGES:]
    return [t[-MAX_CHARS:] if len(t) > MAX_CHARS else t for t in texts]


def generations(path):
    """The user texts of every `$ai_generation` of a JSONL stream."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            event = json.loads(line)
            props = event.get("properties") or {}
            if isinstance(props, str):
                props = json.loads(props)
            if event.get("event", "$ai_generation") != "$ai_generation" or props.get("$ai_input") is None:
                out.append([])
                continue
            out.append(extract(props["$ai_input"]))
    return out


# ---------------------------------------------------------------- runtime

def rss():
    vals = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                vals[key.rstrip(":")] = int(kb) * 1024
    return vals


class Seed:
    """The bundle in ONNX Runtime, the way the seed runs it."""

    def __init__(self, model_dir, threads):
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as fh:
            config = json.load(fh)
        tc = {}
        tc_path = os.path.join(model_dir, "tokenizer_config.json")
        if os.path.exists(tc_path):
            with open(tc_path, encoding="utf-8") as fh:
                tc = json.load(fh)
        self.max_length = int(tc.get("model_max_length", 512))
        self.pad_id = int(config.get("pad_token_id", 1))
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        c, t = time.process_time(), time.perf_counter()
        self.session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), sess_options=so,
                                            providers=["CPUExecutionProvider"])
        self.load_seconds = time.perf_counter() - t
        self.load_cpu = time.process_time() - c
        self.input_names = [i.name for i in self.session.get_inputs()]

    def ids(self, text):
        return self.tokenizer.encode(text).ids

    def classify(self, texts):
        """Tokenize, pad to the longest, run: the logits."""
        rows = [self.ids(t) for t in texts]
        width = max(1, max(len(r) for r in rows))
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
            mask[i, :len(r)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        (logits,) = self.session.run(["logits"], feed)
        return logits


def timed_calls(fn, cpu, reps, min_reps, budget, warm_cutoff):
    """Wall and CPU times of calls to fn: the first call is a warm-up unless
    it is slow (then it counts); as many calls as fit in `budget` (wall),
    within [min_reps, reps]. llma-bench and the native bench use the same rule."""
    c, t = cpu(), time.perf_counter()
    fn()
    first, first_cpu = time.perf_counter() - t, cpu() - c
    times, cpus = ([], []) if first < warm_cutoff else ([first], [first_cpu])
    # A call slower than 4 budgets is measured once.
    n = 1 if first >= 4 * budget else max(min_reps, min(reps, math.ceil(budget / max(first, 1e-6))))
    while len(times) < n:
        c, t = cpu(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        cpus.append(cpu() - c)
    return times, cpus


# ---------------------------------------------------------------- stream stats

def chunk_shapes(lengths, batch, sort):
    """(n, padded length) of each classify call for one generation."""
    ls = sorted(lengths) if sort else list(lengths)
    return [(len(ls[i:i + batch]), max(ls[i:i + batch])) for i in range(0, len(ls), batch)]


def pipeline_shapes(lengths, chars, batch):
    """The host pipeline's batches (host/src/pipeline.rs `plan_batches`):
    sorted by characters, a batch closes when full or when the next text is
    over 10% (+4) longer than its shortest."""
    order = sorted(range(len(lengths)), key=lambda i: chars[i])
    calls, current = [], []
    for i in order:
        if current and (len(current) >= batch or chars[i] * 10 > chars[current[0]] * 11 + 40):
            calls.append(current)
            current = []
        current.append(i)
    if current:
        calls.append(current)
    return [(len(c), max(lengths[i] for i in c)) for c in calls]


def stats(seed, gens, batch):
    """Counts, cache hit rate and batch shapes of a stream (tokenizer only)."""
    cache_len = {}
    seen = set()
    # seed: 1 at a time; asis: batches in message order; bucket: sorted by
    # tokens; distinct / char_bucket: the host pipeline without a cache (each
    # distinct text of a generation once, sorted by characters; token_bucket:
    # the same rule on token counts); cache_*: the
    # misses of an exact-text cache (cache_real: their real tokens).
    shapes = {"seed": {}, "asis": {}, "bucket": {}, "distinct": {}, "char_bucket": {}, "token_bucket": {},
              "cache": {}, "cache_bucket": {}, "cache_char_bucket": {}, "cache_real": {}}
    lengths_all = []
    msgs = hits = tokens = hit_tokens = 0
    unique_len = []

    def add(name, shape_list):
        for n, length in shape_list:
            key = f"{n},{length}"
            shapes[name][key] = shapes[name].get(key, 0) + 1

    for texts in gens:
        if not texts:
            continue
        ls = []
        for t in texts:
            if t not in cache_len:
                cache_len[t] = len(seed.ids(t))
            ls.append(cache_len[t])
        misses, miss_chars = [], []
        distinct = {}
        for t, length in zip(texts, ls):
            distinct.setdefault(t, length)
            msgs += 1
            tokens += length
            if t in seen:
                hits += 1
                hit_tokens += length
            else:
                seen.add(t)
                misses.append(length)
                miss_chars.append(len(t))
                unique_len.append(length)
        lengths_all.extend(ls)
        add("seed", [(1, length) for length in ls])
        add("asis", chunk_shapes(ls, batch, False))
        add("bucket", chunk_shapes(ls, batch, True))
        d_len = list(distinct.values())
        add("distinct", [(1, length) for length in d_len])
        add("char_bucket", pipeline_shapes(d_len, [len(t) for t in distinct], batch))
        add("token_bucket", pipeline_shapes(d_len, d_len, batch))
        if misses:
            add("cache", chunk_shapes(misses, batch, False))
            add("cache_bucket", chunk_shapes(misses, batch, True))
            add("cache_char_bucket", pipeline_shapes(misses, miss_chars, batch))
            add("cache_real", [(1, length) for length in misses])

    def pct(values, p):
        s = sorted(values)
        return s[min(len(s) - 1, int(round((len(s) - 1) * p)))] if s else 0

    padded = {name: sum(int(k.split(",")[0]) * int(k.split(",")[1]) * c for k, c in sh.items())
              for name, sh in shapes.items()}
    return {
        "generations": sum(1 for g in gens if g),
        "messages": msgs,
        "unique_messages": len(seen),
        "hit_rate": hits / msgs if msgs else 0.0,
        "tokens": tokens,
        "token_hit_rate": hit_tokens / tokens if tokens else 0.0,
        "tokens_p50": pct(lengths_all, 0.5),
        "tokens_p90": pct(lengths_all, 0.9),
        "tokens_p99": pct(lengths_all, 0.99),
        "tokens_max": max(lengths_all) if lengths_all else 0,
        "under_40": sum(1 for x in lengths_all if x < 40) / len(lengths_all) if lengths_all else 0.0,
        "unique_tokens_p50": pct(unique_len, 0.5),
        "unique_under_40": sum(1 for x in unique_len if x < 40) / len(unique_len) if unique_len else 0.0,
        "padded_tokens": padded,
        "shapes": shapes,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads; 0 = all cores")
    ap.add_argument("--inputs", required=True, help="directory written by gen_stream.py")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--min-reps", type=int, default=2)
    ap.add_argument("--budget", type=float, default=5.0, help="seconds per grid cell")
    ap.add_argument("--warm-cutoff", type=float, default=2.0)
    ap.add_argument("--no-stream", action="store_true")
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--batch-size", type=int, default=8, help="our pipeline's batch size, for --stats")
    args = ap.parse_args()

    out = {"runtime": "onnxruntime", "version": ort.__version__, "threads": args.threads,
           "cores": os.cpu_count(), "rss_start": rss()}
    seed = Seed(args.model, args.threads)
    out["load_seconds"] = seed.load_seconds
    out["load_cpu"] = seed.load_cpu
    out["rss_loaded"] = rss()

    with open(os.path.join(args.inputs, "grid.json"), encoding="utf-8") as fh:
        grid = json.load(fh)
    # One thread runs on this thread; more also burn CPU in ORT's pool.
    cpu = time.thread_time if args.threads == 1 else time.process_time
    cells = []
    for length, entry in grid["lengths"].items():
        for batch in [int(b) for b in args.batches.split(",") if b]:
            texts = entry["texts"][:batch]
            times, cpus = timed_calls(lambda: seed.classify(texts), cpu, args.reps, args.min_reps, args.budget,
                                      args.warm_cutoff)
            cells.append({"tokens": int(length), "batch": batch, "times": times, "cpu": cpus})
    out["grid"] = cells

    if not args.no_stream:
        gens = generations(os.path.join(args.inputs, "sample.jsonl"))
        messages = 0
        c0, t0 = cpu(), time.perf_counter()
        for texts in gens:
            for t in texts:  # the seed: one message at a time
                seed.classify([t])
                messages += 1
        out["stream"] = {"generations": sum(1 for g in gens if g), "messages": messages,
                         "wall": time.perf_counter() - t0, "cpu": cpu() - c0}
    out["rss_end"] = rss()

    if args.stats:
        out["stats"] = {
            "stream": stats(seed, generations(os.path.join(args.inputs, "stream.jsonl")), args.batch_size),
            "sample": stats(seed, generations(os.path.join(args.inputs, "sample.jsonl")), args.batch_size),
        }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
