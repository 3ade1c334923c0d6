#!/usr/bin/env python3
"""PostHog's 2026 sentiment pipeline rebuilt on ONNX Runtime, for `make bench`:

    python models/posthog_bench.py --model DIR --stream FILE [--batch 32] [--threads 1]

For every `$ai_generation` of the stream: the last user message only (the
plugin's extraction rules, models/ort_bench.py), cut PostHog's way when over
1000 characters (the first 300, "\\n...\\n", the last 695), then classified in
batches of 32 generations in stream order, each batch padded to its longest
text (truncated to the model's limit). No cache: every message is run.
Prints one JSON object: the counts, the classification's CPU seconds
(`time.process_time`, after the session is made), and per generation
uuid the argmax label and the softmax scores.
"""

import argparse
import json
import os
import time

from ort_bench import Seed, user_texts

MAX_CHARS = 1000
HEAD_CHARS = 300
SEPARATOR = "\n...\n"


def last_user_message(ai_input):
    """The last non-blank user message of `$ai_input`, or None."""
    texts = user_texts(ai_input)
    return texts[-1] if texts else None


def head_tail(text):
    if len(text) <= MAX_CHARS:
        return text
    tail = MAX_CHARS - HEAD_CHARS - len(SEPARATOR)
    return text[:HEAD_CHARS] + SEPARATOR + text[-tail:]


def posthog_work(stream):
    """`(generations, [(uuid, text)])`: the stream's `$ai_generation` events
    and, for each that has one, its last user message cut PostHog's way."""
    work = []
    generations = 0
    with open(stream, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            event = json.loads(line)
            generations += 1
            props = event.get("properties") or {}
            if isinstance(props, str):
                props = json.loads(props)
            if event.get("event") != "$ai_generation" or props.get("$ai_input") is None:
                continue
            text = last_user_message(props["$ai_input"])
            if text is not None:
                work.append((event["uuid"], head_tail(text)))
    return generations, work


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--stream", required=True, help="JSON lines of $ai_generation events")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    with open(os.path.join(args.model, "config.json"), encoding="utf-8") as fh:
        id2label = {int(k): v.lower() for k, v in json.load(fh)["id2label"].items()}
    generations, work = posthog_work(args.stream)

    seed = Seed(args.model, args.threads)
    labels = {}
    start = time.process_time()
    for i in range(0, len(work), args.batch):
        batch = work[i:i + args.batch]
        logits = seed.classify([t for _, t in batch])
        for (uuid, _), row in zip(batch, logits):
            row = [float(v) for v in row]
            top = max(row)
            exps = [pow(2.718281828459045, v - top) for v in row]
            total = sum(exps)
            scores = {id2label[j]: e / total for j, e in enumerate(exps)}
            labels[uuid] = {"label": id2label[row.index(top)], "scores": scores}
    cpu = time.process_time() - start
    print(json.dumps({"generations": generations, "messages": len(work), "distinct": len({t for _, t in work}),
                      "batch": args.batch, "threads": args.threads, "classify_cpu": cpu,
                      "load_cpu": seed.load_cpu, "labels": labels}))


if __name__ == "__main__":
    main()
